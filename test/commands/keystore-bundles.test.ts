import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {copyFileSync, mkdirSync, readFileSync, statSync, utimesSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {armorBundle, BUNDLE_OPEN_FAILED_MESSAGE, sealBundle, sealPayload} from '../../src/core/format/bundle.js'
import {createKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {fingerprintOf, formatSigner, parseRecipient} from '../../src/core/recipient.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {ALL_BYTES, assertFailure, assertRun, CHEAP_KDF, modeOf, namesIn, passwordOf} from '../helpers/keystore.js'
import {runCliAndKill} from '../helpers/kill.js'

function identity(file: string): string {
  const stat = statSync(file, {bigint: true})
  return `${stat.ino}:${stat.mtimeNs}`
}

describe('apm-server keystore recipient, seal, import', () => {
  let tmp: ReturnType<typeof makeTempDir>
  /** the workstation that seals, and two hosts: one without a password, one with */
  let work: string
  let host1: string
  let host2: string
  /** the workstation's signer: its bundles are signed, and the hosts pin it with --from */
  let signer: string
  const PW = {APM_SERVER_KEYSTORE_PASSWORD: 'host2 password'}
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  const at = (home: string) => path.join(home, 'apm-server.keystore')
  const recipientOf = async (home: string, env?: Record<string, string>) => {
    const run = await ks(['recipient', '--path.data', home], {env})
    assert.equal(run.code, 0, run.stderr)
    return run.stdout.trim()
  }

  beforeEach(async () => {
    tmp = makeTempDir()
    ;[work, host1, host2] = ['work', 'host1', 'host2'].map((name) => path.join(tmp.dir, name))
    await createKeystore(at(work), {format: 'native'})
    await updateKeystore(at(work), {}, (keystore) => {
      keystore.set('APM_SECRET_TOKEN', Buffer.from('the-token'))
      keystore.set('TLS_KEY', ALL_BYTES)
      keystore.set('ES_PASSWORD', Buffer.from('changeme\n'))
      keystore.ensureHostKey()
    })
    signer = formatSigner((await openKeystore(at(work))).hostSigningKeyPair()!.publicKey)
    await createKeystore(at(host1), {format: 'native'})
    await createKeystore(at(host2), {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from(PW.APM_SERVER_KEYSTORE_PASSWORD)})
  })
  afterEach(() => tmp.cleanup())

  it('recipient: made once, the same every time, kept through passwd, upgrade and sync, never listed', async () => {
    const first = await ks(['recipient', '--path.data', host1])
    const recipient = first.stdout.trim()
    const fingerprint = fingerprintOf(parseRecipient(recipient))
    const hostSigner = formatSigner((await openKeystore(at(host1))).hostSigningKeyPair()!.publicKey)
    const signerLine = `Signer of the bundles sealed here (for "import --from"): ${hostSigner}\n`
    assertRun(first, {code: 0, stderr: `Made this host's key pair in ${at(host1)} (fingerprint ${fingerprint}).\n${signerLine}`, stdout: `${recipient}\n`})
    const bytes = readFileSync(at(host1))
    assertRun(await ks(['recipient', '--path.data', host1]), {code: 0, stderr: signerLine, stdout: `${recipient}\n`})
    assertRun(await ks(['recipient', '--signer', '--path.data', host1]), {code: 0, stderr: '', stdout: `${hostSigner}\n`})
    assert.deepEqual(readFileSync(at(host1)), bytes, 'printing it again writes nothing')
    assertRun(await ks(['recipient', '--path.data', host1, '--json']), {code: 0, stdout: `${JSON.stringify({created: false, fingerprint, path: at(host1), recipient, signer: hostSigner}, null, 2)}\n`})
    const secrets = path.join(tmp.dir, 'secrets')
    mkdirSync(secrets)
    writeFileSync(path.join(secrets, 'A'), 'a')
    for (const step of [['passwd', '--stdin'], ['upgrade'], ['sync', secrets, '--prune'], ['passwd', '--remove']]) {
      const env = {APM_SERVER_KEYSTORE_PASSWORD: step[0] === 'passwd' && step[1] === '--stdin' ? undefined : 'new password'}
      // eslint-disable-next-line no-await-in-loop -- steps build on each other
      const run = await ks([...step, '--path.data', host1], {env, input: 'new password\n'})
      assert.equal(run.code, 0, `${step.join(' ')}: ${run.stderr}`)
      // eslint-disable-next-line no-await-in-loop -- checked after each step
      assertRun(await ks(['recipient', '--path.data', host1], {env: {APM_SERVER_KEYSTORE_PASSWORD: step[1] === '--remove' ? undefined : 'new password'}}), {code: 0, stderr: signerLine, stdout: `${recipient}\n`})
    }

    assertRun(await ks(['list', '--path.data', host1]), {code: 0, stderr: '', stdout: 'A\n'})
  })

  it('recipient needs a native keystore: Beats v1 and a missing keystore are refused with the fix', async () => {
    const beats = path.join(tmp.dir, 'beats')
    await createKeystore(at(beats), {format: 'beats-v1'})
    const message =
      `keystore ${at(beats)} is in Beats v1 format, which cannot hold this host's key for sealed bundles; run "apm-server keystore upgrade" first ` +
      '(the Go apm-server can then no longer read it), or fill it with "apm-server keystore sync"'
    assertFailure(await ks(['recipient', '--path.data', beats]), 1, 'EUNSUPPORTED', message)
    const missing = path.join(tmp.dir, 'missing')
    assertFailure(await ks(['recipient', '--path.data', missing]), 1, 'ENOKEYSTORE', `no keystore at ${at(missing)}; create one with "apm-server keystore create"`)
    assert.equal(readFileSync(at(beats)).subarray(0, 2).toString(), 'v1')
    assertRun(await ks(['upgrade', '--path.data', beats]), {code: 0})
    assert.equal((await ks(['recipient', '--path.data', beats])).code, 0)
  })

  it('round trip: seal every key to two hosts (one with a password) once, each imports the same bytes', async () => {
    const r1 = await recipientOf(host1)
    const r2 = await recipientOf(host2, PW)
    const sealed = await ks(['seal', '--to', r1, '--to', r2, '--path.data', work])
    const fingerprints = `${fingerprintOf(parseRecipient(r1))}, ${fingerprintOf(parseRecipient(r2))}`
    assertRun(sealed, {code: 0, stderr: `Sealed 3 keys to 2 recipients (${fingerprints}), signed by ${signer}.\n`})
    assert.match(sealed.stdout, /^-----BEGIN APM-SERVER SEALED BUNDLE-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END APM-SERVER SEALED BUNDLE-----\n$/)
    for (const secret of ['APM_SECRET_TOKEN', 'the-token', 'TLS_KEY', 'changeme']) assert.ok(!sealed.stdout.includes(secret), secret)
    const bundle = path.join(tmp.dir, 'fleet.bundle')
    writeFileSync(bundle, sealed.stdoutBytes)
    assertRun(await ks(['import', bundle, '--from', signer, '--path.data', host1]), {code: 0, stderr: '', stdout: `Imported into ${at(host1)}: added APM_SECRET_TOKEN, ES_PASSWORD, TLS_KEY; 0 unchanged.\n`})
    const json = await ks(['import', '-', '--from', signer, '--path.data', host2, '--json'], {env: PW, input: sealed.stdoutBytes})
    assertRun(json, {code: 0, stderr: ''})
    const {created, ...rest} = JSON.parse(json.stdout)
    assert.deepEqual(rest, {added: ['APM_SECRET_TOKEN', 'ES_PASSWORD', 'TLS_KEY'], path: at(host2), signer, unchanged: 0, updated: []})
    assert.match(created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    for (const [home, password] of [
      [host1, ''],
      [host2, PW.APM_SERVER_KEYSTORE_PASSWORD],
    ]) {
      // eslint-disable-next-line no-await-in-loop -- two hosts
      const keystore = await openKeystore(at(home), {password: passwordOf(password)})
      assert.deepEqual(keystore.get('TLS_KEY'), ALL_BYTES)
      assert.deepEqual(keystore.get('ES_PASSWORD'), Buffer.from('changeme\n'))
      assert.deepEqual(keystore.get('APM_SECRET_TOKEN'), Buffer.from('the-token'))
    }
  })

  it('the same bundle again changes nothing and writes nothing; another value needs --force', async () => {
    const r1 = await recipientOf(host1)
    const bundle = path.join(tmp.dir, 'token.bundle')
    assertRun(await ks(['seal', '--to', r1, 'APM_SECRET_TOKEN', '--out', bundle, '--path.data', work]), {code: 0, stdout: `Sealed 1 key to 1 recipient (${fingerprintOf(parseRecipient(r1))}) in ${bundle}, signed by ${signer}.\n`})
    assertRun(await ks(['import', bundle, '--path.data', host1]), {code: 0, stdout: `Imported into ${at(host1)}: added APM_SECRET_TOKEN; 0 unchanged.\n`})
    utimesSync(at(host1), new Date(1_700_000_000_000), new Date(1_700_000_000_000))
    const before = identity(at(host1))
    assertRun(await ks(['import', bundle, '--path.data', host1]), {code: 0, stdout: `Imported into ${at(host1)}: 1 unchanged.\n`})
    assert.equal(identity(at(host1)), before, 'rewritten though nothing changed')
    await updateKeystore(at(work), {}, (keystore) => keystore.set('APM_SECRET_TOKEN', Buffer.from('rotated'), {overwrite: true}))
    assertRun(await ks(['seal', '--to', r1, 'APM_SECRET_TOKEN', 'TLS_KEY', '--out', bundle, '--path.data', work]), {code: 0})
    const bytes = readFileSync(at(host1))
    assertFailure(
      await ks(['import', bundle, '--path.data', host1]),
      1,
      'EKEYEXISTS',
      `key APM_SECRET_TOKEN already exists in ${at(host1)} with another value; use --force to replace it; nothing was imported`,
    )
    assert.deepEqual(readFileSync(at(host1)), bytes, 'all or nothing: TLS_KEY was not added either')
    assertRun(await ks(['import', bundle, '--force', '--path.data', host1]), {code: 0, stdout: `Imported into ${at(host1)}: added TLS_KEY; replaced APM_SECRET_TOKEN; 0 unchanged.\n`})
    assert.equal((await openKeystore(at(host1))).get('APM_SECRET_TOKEN').toString(), 'rotated')
  })

  it('seal --stdin needs no keystore: values as add --stdin takes them', async () => {
    const r1 = await recipientOf(host1)
    const empty = path.join(tmp.dir, 'ci')
    const one = await ks(['seal', '--to', r1, 'ONE', '--stdin', '--path.data', empty], {input: 'value\n'})
    assert.equal(one.code, 0, one.stderr)
    const two = await ks(['seal', '--to', r1, 'A', 'B', '--stdin', '--path.data', empty], {input: Buffer.from('a\r\nb\u0000\n')})
    assert.equal(two.code, 0, two.stderr)
    assert.deepEqual(namesIn(tmp.dir).includes('ci'), false, 'no keystore was made')
    assert.equal((await ks(['import', '-', '--path.data', host1], {input: one.stdoutBytes})).code, 0)
    assert.equal((await ks(['import', '-', '--path.data', host1], {input: two.stdoutBytes})).code, 0)
    const keystore = await openKeystore(at(host1))
    assert.deepEqual(
      keystore.keys().map((name) => [name, keystore.get(name).toString('latin1')]),
      [
        ['A', 'a'],
        ['B', 'b\u0000'],
        ['ONE', 'value'],
      ],
    )
    assertFailure(await ks(['seal', '--to', r1, 'A', 'B', '--stdin'], {input: 'only one\n'}), 2, 'EUSAGE', 'stdin has 1 line for 2 keys; give one line per key')
    assertFailure(await ks(['seal', '--to', r1, '--stdin'], {input: 'x'}), 2, 'EUSAGE', '--stdin seals the keys you name; name them (KEY...)')
    assertFailure(await ks(['seal', '--to', r1, 'A', '--stdin'], {input: '\n'}), 1, 'EBADVALUE', 'empty value for key A; give a non-empty value')
  })

  it('seal refuses a mistyped recipient before anything else (exit 2), a missing key, and --binary without --out', async () => {
    const r1 = await recipientOf(host1)
    const typo = `${r1.slice(0, 30)}${r1[30] === 'q' ? 'p' : 'q'}${r1.slice(31)}`
    const fix = 'copy it again from "apm-server keystore recipient" on its host'
    assertFailure(
      await ks(['seal', '--to', typo, '--path.data', path.join(tmp.dir, 'none')]),
      2,
      'EBADRECIPIENT',
      `recipient ${JSON.stringify(typo)} has a checksum that does not match: a character was mistyped, lost or added; ${fix}`,
    )
    assertFailure(await ks(['seal', '--to', 'age1xyz', '--path.data', work]), 2, 'EBADRECIPIENT', `recipient "age1xyz" does not start with apm-recipient1; ${fix}`)
    assertFailure(await ks(['seal', '--to', r1, 'NOPE', 'NADA', '--path.data', work]), 1, 'ENOKEY', `keys NOPE, NADA not found in ${at(work)}; "apm-server keystore list" shows the keys`)
    const binary = await ks(['seal', '--to', r1, '--binary', '--path.data', work])
    assert.equal(binary.code, 2)
    assert.match(binary.stderr, /^error: the following error occurred: All of the following must be provided when using --binary: --out; see --help\n$/)
  })

  it('seal --json and --binary; import reads the binary form too', async () => {
    const r1 = await recipientOf(host1)
    const fingerprint = fingerprintOf(parseRecipient(r1))
    const json = await ks(['seal', '--to', r1, 'APM_SECRET_TOKEN', '--json', '--path.data', work])
    assert.equal(json.code, 0, json.stderr)
    const parsed = JSON.parse(json.stdout) as {bundle: string; keys: string[]; recipients: string[]}
    assert.deepEqual([parsed.keys, parsed.recipients], [['APM_SECRET_TOKEN'], [fingerprint]])
    assert.match(parsed.bundle, /^-----BEGIN APM-SERVER SEALED BUNDLE-----\n/)
    const out = path.join(tmp.dir, 'token.bin')
    assertRun(await ks(['seal', '--to', r1, '--binary', '--out', out, '--json', '--path.data', work]), {
      code: 0,
      stderr: '',
      stdout: `${JSON.stringify({keys: ['APM_SECRET_TOKEN', 'ES_PASSWORD', 'TLS_KEY'], out, recipients: [fingerprint], signer}, null, 2)}\n`,
    })
    assert.equal(readFileSync(out).subarray(0, 8).toString(), 'APMBUNDL')
    assert.equal(modeOf(out), 0o644 & ~process.umask())
    assertRun(await ks(['import', out, '--path.data', host1]), {code: 0, stdout: `Imported into ${at(host1)}: added APM_SECRET_TOKEN, ES_PASSWORD, TLS_KEY; 0 unchanged.\n`})
    assert.deepEqual(namesIn(tmp.dir).filter((name) => name.includes('tmp')), [], 'no temp file left by --out')
  })

  describe('import refuses, with one line and exit 1, the keystore untouched', () => {
    let bundle: string
    let r1: string
    beforeEach(async () => {
      r1 = await recipientOf(host1)
      bundle = path.join(tmp.dir, 'fleet.bundle')
      assert.equal((await ks(['seal', '--to', r1, '--out', bundle, '--path.data', work])).code, 0)
    })

    it('a bundle sealed to other hosts, naming their fingerprints and this one; a host without a key yet', async () => {
      const fp1 = fingerprintOf(parseRecipient(r1))
      const other = await recipientOf(host2, PW)
      const bytes = readFileSync(at(host2))
      assertFailure(
        await ks(['import', bundle, '--path.data', host2], {env: PW}),
        1,
        'ENOTRECIPIENT',
        `bundle ${bundle} is sealed to 1 host (${fp1}), not to this host (${fingerprintOf(parseRecipient(other))}); have it sealed again to this host's recipient ("apm-server keystore recipient" prints it)`,
      )
      assert.deepEqual(readFileSync(at(host2)), bytes)
      const fresh = path.join(tmp.dir, 'fresh')
      await createKeystore(at(fresh), {format: 'native'})
      assertFailure(
        await ks(['import', bundle, '--path.data', fresh]),
        1,
        'ENOTRECIPIENT',
        `bundle ${bundle} is sealed to 1 host (${fp1}), and this host has no key yet, so it is none of them; run "apm-server keystore recipient" here and have the bundle sealed again to what it prints`,
      )
    })

    it('a Beats v1 keystore', async () => {
      const beats = path.join(tmp.dir, 'beats')
      await createKeystore(at(beats), {format: 'beats-v1'})
      const run = await ks(['import', bundle, '--path.data', beats])
      assertFailure(run, 1, 'EUNSUPPORTED', run.stderr.slice('error: '.length, -1))
      assert.match(run.stderr, /is in Beats v1 format, which cannot hold this host's key for sealed bundles; run "apm-server keystore upgrade" first/)
    })

    it('changed bytes (a sample across the bundle), a cut, an unknown version, a FIFO, not a bundle', async () => {
      const good = readFileSync(bundle)
      const bytes = readFileSync(at(host1))
      const bad = path.join(tmp.dir, 'bad.bundle')
      const positions = Array.from({length: 10}, (_, i) => Math.floor(((i + 0.5) * good.length) / 10))
      for (const position of positions) {
        const changed = Buffer.from(good)
        changed[position] ^= 0x01
        writeFileSync(bad, changed)
        // eslint-disable-next-line no-await-in-loop -- one bundle file
        const run = await ks(['import', bad, '--path.data', host1])
        assert.equal(run.code, 1, `byte ${position}: ${run.stderr}`)
        assert.match(run.stderr, /^error: bundle \S+ [^\n]+\n$/, `byte ${position}`)
      }

      // A changed base64 character that stays base64 reaches decryption: the one vague error.
      const text = good.toString('latin1')
      const at2 = text.indexOf('\n', text.indexOf('\n') + 1) - 5
      writeFileSync(bad, `${text.slice(0, at2)}${text[at2] === 'A' ? 'B' : 'A'}${text.slice(at2 + 1)}`)
      assertFailure(await ks(['import', bad, '--path.data', host1]), 1, 'EDECRYPT', `bundle ${bad} ${BUNDLE_OPEN_FAILED_MESSAGE}`)
      writeFileSync(bad, good.subarray(0, good.length - 1))
      assert.match((await ks(['import', bad, '--path.data', host1])).stderr, /ends without the newline after its END line/)
      const fifo = path.join(tmp.dir, 'fifo')
      execFileSync('mkfifo', [fifo])
      assertFailure(await ks(['import', fifo, '--path.data', host1], {timeoutMs: 20_000}), 2, 'EUSAGE', `bundle ${fifo} is a FIFO, not a regular file; give the bundle file, or - for stdin`)
      assertFailure(await ks(['import', '-', '--path.data', host1], {input: 'hello'}), 1, 'EFORMAT', 'the bundle on stdin is not a sealed bundle (it starts with neither -----BEGIN APM-SERVER SEALED BUNDLE----- nor the binary magic)')
      assert.deepEqual(readFileSync(at(host1)), bytes)
    })
  })

  describe('who sealed it: --from pins the sender, an older bundle cannot roll a value back (F_FORGE)', () => {
    let r1: string
    let bundle: string
    beforeEach(async () => {
      r1 = await recipientOf(host1)
      bundle = path.join(tmp.dir, 'rotate.bundle')
      await updateKeystore(at(host1), {}, (keystore) => keystore.set('APM_SECRET_TOKEN', Buffer.from('the-token')))
    })

    it('a stranger who knows only the recipient: refused with --from, naming what it found; without --from a warning says who could have made it', async () => {
      const bytes = readFileSync(at(host1))
      const forged = await ks(['seal', '--to', r1, 'APM_SECRET_TOKEN', 'NODE_OPTIONS', '--stdin', '--out', bundle, '--path.data', path.join(tmp.dir, 'nobody')], {input: 'stranger-token\n--require=/tmp/evil.js\n'})
      assertRun(forged, {code: 0, stderr: 'warning: the bundle is not signed (--stdin without --sign-with KEYSTORE): hosts that import it with --from refuse it, and the others warn that anyone could have made it\n'})
      assertFailure(
        await ks(['import', bundle, '--force', '--from', signer, '--path.data', host1]),
        1,
        'ESIGNER',
        `bundle ${bundle} is not signed, so anyone who knows this host's recipient could have made it, and --from asks for a bundle signed by ${signer}; have it sealed with "apm-server keystore seal" from the sender's keystore (or seal --stdin --sign-with KEYSTORE); nothing was imported`,
      )
      // A stranger with a keystore of their own signs as themselves, not as the workstation.
      const stranger = path.join(tmp.dir, 'stranger')
      await createKeystore(at(stranger), {format: 'native'})
      await updateKeystore(at(stranger), {}, (keystore) => {
        keystore.set('APM_SECRET_TOKEN', Buffer.from('stranger-token'))
        keystore.ensureHostKey()
      })
      const theirs = formatSigner((await openKeystore(at(stranger))).hostSigningKeyPair()!.publicKey)
      assert.equal((await ks(['seal', '--to', r1, '--out', bundle, '--path.data', stranger])).code, 0)
      assertFailure(
        await ks(['import', bundle, '--force', '--from', signer, '--path.data', host1]),
        1,
        'ESIGNER',
        `bundle ${bundle} is signed by ${theirs}, not by ${signer} (--from); check who sealed it, and add --from ${theirs} only if that sender is trusted; nothing was imported`,
      )
      assert.deepEqual(readFileSync(at(host1)), bytes, 'the keystore is untouched')
      const warned = await ks(['import', bundle, '--force', '--path.data', host1])
      assertRun(warned, {
        code: 0,
        stderr: `warning: bundle ${bundle} is signed by ${theirs}, a sender nobody pinned: anyone with a keystore could have made it; once you know it is the sealing host's, pin it with --from ${theirs}\n`,
      })
      // --from takes several senders; a mistyped one is a usage error before anything is read.
      assert.equal((await ks(['import', bundle, '--from', signer, '--from', theirs, '--path.data', host1])).code, 0)
      assertFailure(
        await ks(['import', bundle, '--from', `${signer.slice(0, -1)}q`, '--path.data', host1]),
        2,
        'EBADRECIPIENT',
        `signer ${JSON.stringify(`${signer.slice(0, -1)}q`)} has a checksum that does not match: a character was mistyped, lost or added; copy it again from "apm-server keystore recipient" on the sealing host (its "signer" line)`,
      )
    })

    it('seal --stdin --sign-with KEYSTORE signs as that keystore (CI); the workstation\'s own bundles import with --from, quietly', async () => {
      const ci = await ks(['seal', '--to', r1, 'ES_PASSWORD', '--stdin', '--sign-with', at(work), '--out', bundle], {input: 'from-ci\n'})
      assertRun(ci, {code: 0, stderr: '', stdout: `Sealed 1 key to 1 recipient (${fingerprintOf(parseRecipient(r1))}) in ${bundle}, signed by ${signer}.\n`})
      assertRun(await ks(['import', bundle, '--from', signer, '--path.data', host1]), {code: 0, stderr: '', stdout: `Imported into ${at(host1)}: added ES_PASSWORD; 0 unchanged.\n`})
      const none = path.join(tmp.dir, 'nokey')
      await createKeystore(at(none), {format: 'native'})
      assertFailure(
        await ks(['seal', '--to', r1, 'A', '--stdin', '--sign-with', at(none)], {input: 'x\n'}),
        2,
        'EUSAGE',
        `keystore ${at(none)} has no signing key yet; run "apm-server keystore recipient" on it once (it makes the host key and prints the signer), then seal again`,
      )
    })

    it('a genuine older bundle replayed with --force is refused, naming the key, unless --allow-older', async () => {
      const old = path.join(tmp.dir, 'old.bundle')
      await updateKeystore(at(work), {}, (keystore) => keystore.set('APM_SECRET_TOKEN', Buffer.from('token-v1'), {overwrite: true}))
      assert.equal((await ks(['seal', '--to', r1, 'APM_SECRET_TOKEN', '--out', old, '--path.data', work])).code, 0)
      assert.equal((await ks(['import', old, '--force', '--from', signer, '--path.data', host1])).code, 0)
      await updateKeystore(at(work), {}, (keystore) => keystore.set('APM_SECRET_TOKEN', Buffer.from('token-v2'), {overwrite: true}))
      assert.equal((await ks(['seal', '--to', r1, 'APM_SECRET_TOKEN', '--out', bundle, '--path.data', work])).code, 0)
      assertRun(await ks(['import', bundle, '--force', '--from', signer, '--path.data', host1]), {code: 0, stderr: '', stdout: `Imported into ${at(host1)}: replaced APM_SECRET_TOKEN; 0 unchanged.\n`})
      const bytes = readFileSync(at(host1))
      const replay = await ks(['import', old, '--force', '--from', signer, '--path.data', host1])
      assert.equal(replay.code, 1)
      assert.match(
        replay.stderr,
        new RegExp(`^error: bundle ${old} was sealed at \\S+Z, before key APM_SECRET_TOKEN was last changed in ${at(host1)} \\(\\S+Z\\): an old bundle replayed would roll it back; have it sealed again, or use --allow-older to restore the older value; nothing was imported\n$`),
      )
      assert.deepEqual(readFileSync(at(host1)), bytes)
      assert.equal((await openKeystore(at(host1))).get('APM_SECRET_TOKEN').toString(), 'token-v2')
      assertRun(await ks(['import', old, '--force', '--allow-older', '--from', signer, '--path.data', host1]), {code: 0, stdout: `Imported into ${at(host1)}: replaced APM_SECRET_TOKEN; 0 unchanged.\n`})
      assert.equal((await openKeystore(at(host1))).get('APM_SECRET_TOKEN').toString(), 'token-v1')
    })

    it('a sealer whose clock runs ahead: its replayed older bundle is still refused; a bundle over 5 minutes ahead is refused (break-new2 3)', async () => {
      // The sealer's clock is 4 minutes ahead of this host's (a laptop without NTP): sealed here with
      // that clock, signed by the workstation, as "keystore seal" on it would.
      const signing = (await openKeystore(at(work))).hostSigningKeyPair()!
      const to = [(await openKeystore(at(host1))).hostKeyPair()!.publicKey]
      const sealAt = (file: string, value: string, created: number) =>
        writeFileSync(file, armorBundle(sealBundle([{name: 'APM_SECRET_TOKEN', value: Buffer.from(value)}], to, {created, signer: signing})))
      const ahead = Date.now() + 4 * 60_000
      const [b, c] = [path.join(tmp.dir, 'b.bundle'), path.join(tmp.dir, 'c.bundle')]
      sealAt(b, 'token-B', ahead)
      sealAt(c, 'token-C', ahead + 5000)
      assert.equal((await ks(['import', b, '--force', '--from', signer, '--path.data', host1])).code, 0)
      assert.equal((await ks(['import', c, '--force', '--from', signer, '--path.data', host1])).code, 0)
      const bytes = readFileSync(at(host1))
      const replay = await ks(['import', b, '--force', '--from', signer, '--path.data', host1])
      assert.equal(replay.code, 1, replay.stdout)
      assert.equal(replay.stderr, `error: bundle ${b} was sealed at ${new Date(ahead).toISOString()}, before key APM_SECRET_TOKEN was last changed in ${at(host1)} (${new Date(ahead + 5000).toISOString()}): an old bundle replayed would roll it back; have it sealed again, or use --allow-older to restore the older value; nothing was imported\n`)
      assert.deepEqual(readFileSync(at(host1)), bytes)
      assert.equal((await openKeystore(at(host1))).get('APM_SECRET_TOKEN').toString(), 'token-C')
      // A rotation made here afterwards (this host's clock is behind the recorded time): the replay of the
      // newest bundle cannot undo it either.
      const local = await ks(['add', 'APM_SECRET_TOKEN', '--stdin', '--force', '--path.data', host1], {input: 'token-local'})
      assert.equal(local.code, 0, local.stderr)
      const undo = await ks(['import', c, '--force', '--from', signer, '--path.data', host1])
      assert.equal(undo.code, 1, undo.stdout)
      assert.match(undo.stderr, /^error: bundle .* before key APM_SECRET_TOKEN was last changed in .*; nothing was imported\n$/)
      assert.equal((await openKeystore(at(host1))).get('APM_SECRET_TOKEN').toString(), 'token-local')
      const rotated = readFileSync(at(host1))
      // Further ahead than 5 minutes: refused before anything is judged, naming the skew and the fix.
      const future = path.join(tmp.dir, 'future.bundle')
      const far = Date.now() + 10 * 60_000
      sealAt(future, 'token-D', far)
      const refused = await ks(['import', future, '--force', '--from', signer, '--path.data', host1])
      assert.equal(refused.code, 1)
      assert.match(
        refused.stderr,
        new RegExp(`^error: bundle ${future} was sealed at ${new Date(far).toISOString()}, \\d+ s ahead of this host's clock \\(\\S+Z\\), more than the 5 minutes allowed: the sealing host's clock runs ahead, or this one's behind; correct the clock that is wrong \\(NTP\\), then seal the bundle again; nothing was imported\n$`),
      )
      assert.deepEqual(readFileSync(at(host1)), rotated)
    })

    it('a version 1 bundle (unsigned, undated) still imports, as unsigned with the warning; it cannot replace a value without --allow-older', async () => {
      const host = (await openKeystore(at(host1))).hostKeyPair()!
      const entries = (name: string, value: string) => {
        const out = Buffer.alloc(4 + 1 + name.length + 4 + value.length)
        out.writeUInt32BE(1)
        out[4] = name.length
        out.write(name, 5, 'latin1')
        out.writeUInt32BE(value.length, 5 + name.length)
        out.write(value, 9 + name.length, 'latin1')
        return out
      }

      writeFileSync(bundle, armorBundle(sealPayload(entries('ES_PASSWORD', 'old-format'), [host.publicKey], {version: 1})))
      assertRun(await ks(['import', bundle, '--path.data', host1]), {
        code: 0,
        stderr: `warning: bundle ${bundle} is not signed: anyone who knows this host's recipient could have made it; pin the sender with --from SIGNER ("apm-server keystore recipient" on the sealing host shows it)\n`,
        stdout: `Imported into ${at(host1)}: added ES_PASSWORD; 0 unchanged.\n`,
      })
      assert.equal((await ks(['import', bundle, '--from', signer, '--path.data', host1])).code, 1)
      writeFileSync(bundle, armorBundle(sealPayload(entries('APM_SECRET_TOKEN', 'v1-token'), [host.publicKey], {version: 1})))
      assertFailure(
        await ks(['import', bundle, '--force', '--path.data', host1]),
        1,
        'ESTALE',
        `bundle ${bundle} is a version 1 bundle, which carries no time, so it cannot show it is newer than key APM_SECRET_TOKEN in ${at(host1)}; have it sealed again with this apm-server, or use --allow-older to replace it anyway; nothing was imported`,
      )
      assert.equal((await ks(['import', bundle, '--force', '--allow-older', '--path.data', host1])).code, 0)
      assert.equal((await openKeystore(at(host1))).get('APM_SECRET_TOKEN').toString(), 'v1-token')
    })
  })

  it("a password keystore's host key is useless without its password", async () => {
    const r2 = await recipientOf(host2, PW)
    const bundle = path.join(tmp.dir, 'fleet.bundle')
    assert.equal((await ks(['seal', '--to', r2, '--out', bundle, '--path.data', work])).code, 0)
    // The keystore file copied away (a stolen backup): without the password its key opens nothing.
    const thief = path.join(tmp.dir, 'thief')
    mkdirSync(thief, {mode: 0o700})
    copyFileSync(at(host2), at(thief))
    assertFailure(
      await ks(['import', bundle, '--path.data', thief]),
      1,
      'ENOPASSWORD',
      'the keystore is password protected and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
    )
    assertFailure(await ks(['import', bundle, '--path.data', thief], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'guess'}}), 1, 'EDECRYPT', `${at(thief)}: wrong password or keystore file tampered with`)
    assertFailure(await ks(['recipient', '--path.data', thief], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'guess'}}), 1, 'EDECRYPT', `${at(thief)}: wrong password or keystore file tampered with`)
    assert.equal((await ks(['import', bundle, '--path.data', host2], {env: PW})).code, 0)
  })

  it('kill -9 during import leaves the old or the new keystore, and the import then completes', async function () {
    this.timeout(120_000)
    const r1 = await recipientOf(host1)
    await updateKeystore(at(work), {}, (keystore) => {
      for (let i = 0; i < 1500; i++) keystore.set(`K${i}`, Buffer.from(`value-${i}`))
    })
    const bundle = path.join(tmp.dir, 'big.bundle')
    assert.equal((await ks(['seal', '--to', r1, '--out', bundle, '--path.data', work])).code, 0)
    const outcomes = {after: 0, before: 0}
    for (let round = 0; round < 6; round++) {
      // eslint-disable-next-line no-await-in-loop -- each round starts from a keystore without the keys
      await updateKeystore(at(host1), {}, (keystore) => keystore.remove(keystore.keys()))
      // eslint-disable-next-line no-await-in-loop -- one kill at a time
      const {killed, result} = await runCliAndKill(['keystore', 'import', bundle, '--path.data', host1], {cwd: tmp.dir}, host1, round % 2 === 0 ? undefined : 250 + round * 50)
      // eslint-disable-next-line no-await-in-loop -- the state after the kill
      const count = (await openKeystore(at(host1))).keys().length
      if (!killed) assert.equal(result.code, 0, result.stderr)
      if (count === 1503) outcomes.after++
      else if (count === 0) outcomes.before++
      else assert.fail(`round ${round}: ${count} keys, neither 0 nor 1503`)
      for (const name of namesIn(host1)) if (name.endsWith('.lock')) utimesSync(path.join(host1, name), new Date(0), new Date(0))
      // eslint-disable-next-line no-await-in-loop -- the import completes
      const again = await ks(['import', bundle, '--path.data', host1])
      assert.equal(again.code, 0, again.stderr)
      assert.deepEqual(namesIn(host1), ['apm-server.keystore', 'apm-server.keystore.audit'])
      // eslint-disable-next-line no-await-in-loop -- the host key survived
      assert.equal(await recipientOf(host1), r1)
    }

    assert.ok(outcomes.before > 0, JSON.stringify(outcomes))
  })
})
