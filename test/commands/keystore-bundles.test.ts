import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {copyFileSync, mkdirSync, readFileSync, statSync, utimesSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {BUNDLE_OPEN_FAILED_MESSAGE} from '../../src/core/format/bundle.js'
import {createKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {fingerprintOf, parseRecipient} from '../../src/core/recipient.js'
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
    })
    await createKeystore(at(host1), {format: 'native'})
    await createKeystore(at(host2), {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from(PW.APM_SERVER_KEYSTORE_PASSWORD)})
  })
  afterEach(() => tmp.cleanup())

  it('recipient: made once, the same every time, kept through passwd, upgrade and sync, never listed', async () => {
    const first = await ks(['recipient', '--path.data', host1])
    const recipient = first.stdout.trim()
    const fingerprint = fingerprintOf(parseRecipient(recipient))
    assertRun(first, {code: 0, stderr: `Made this host's key pair in ${at(host1)} (fingerprint ${fingerprint}).\n`, stdout: `${recipient}\n`})
    const bytes = readFileSync(at(host1))
    assertRun(await ks(['recipient', '--path.data', host1]), {code: 0, stderr: '', stdout: `${recipient}\n`})
    assert.deepEqual(readFileSync(at(host1)), bytes, 'printing it again writes nothing')
    assertRun(await ks(['recipient', '--path.data', host1, '--json']), {code: 0, stdout: `${JSON.stringify({created: false, fingerprint, path: at(host1), recipient}, null, 2)}\n`})
    const secrets = path.join(tmp.dir, 'secrets')
    mkdirSync(secrets)
    writeFileSync(path.join(secrets, 'A'), 'a')
    for (const step of [['passwd', '--stdin'], ['upgrade'], ['sync', secrets, '--prune'], ['passwd', '--remove']]) {
      const env = {APM_SERVER_KEYSTORE_PASSWORD: step[0] === 'passwd' && step[1] === '--stdin' ? undefined : 'new password'}
      // eslint-disable-next-line no-await-in-loop -- steps build on each other
      const run = await ks([...step, '--path.data', host1], {env, input: 'new password\n'})
      assert.equal(run.code, 0, `${step.join(' ')}: ${run.stderr}`)
      // eslint-disable-next-line no-await-in-loop -- checked after each step
      assertRun(await ks(['recipient', '--path.data', host1], {env: {APM_SERVER_KEYSTORE_PASSWORD: step[1] === '--remove' ? undefined : 'new password'}}), {code: 0, stdout: `${recipient}\n`})
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
    assertRun(sealed, {code: 0, stderr: `Sealed 3 keys to 2 recipients (${fingerprints}).\n`})
    assert.match(sealed.stdout, /^-----BEGIN APM-SERVER SEALED BUNDLE-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END APM-SERVER SEALED BUNDLE-----\n$/)
    for (const secret of ['APM_SECRET_TOKEN', 'the-token', 'TLS_KEY', 'changeme']) assert.ok(!sealed.stdout.includes(secret), secret)
    const bundle = path.join(tmp.dir, 'fleet.bundle')
    writeFileSync(bundle, sealed.stdoutBytes)
    assertRun(await ks(['import', bundle, '--path.data', host1]), {code: 0, stderr: '', stdout: `Imported into ${at(host1)}: added APM_SECRET_TOKEN, ES_PASSWORD, TLS_KEY; 0 unchanged.\n`})
    assertRun(await ks(['import', '-', '--path.data', host2, '--json'], {env: PW, input: sealed.stdoutBytes}), {
      code: 0,
      stderr: '',
      stdout: `${JSON.stringify({added: ['APM_SECRET_TOKEN', 'ES_PASSWORD', 'TLS_KEY'], path: at(host2), unchanged: 0, updated: []}, null, 2)}\n`,
    })
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
    assertRun(await ks(['seal', '--to', r1, 'APM_SECRET_TOKEN', '--out', bundle, '--path.data', work]), {code: 0, stdout: `Sealed 1 key to 1 recipient (${fingerprintOf(parseRecipient(r1))}) in ${bundle}.\n`})
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
      stdout: `${JSON.stringify({keys: ['APM_SECRET_TOKEN', 'ES_PASSWORD', 'TLS_KEY'], out, recipients: [fingerprint]}, null, 2)}\n`,
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
