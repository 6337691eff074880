import assert from 'node:assert/strict'
import {chmodSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {splitLines, stripOneNewline} from '../../src/cli/secrets.js'
import {createKeystore, inspectKeystore, KeystoreFormat, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {
  ALL_BYTES,
  assertFailure,
  assertRun,
  CHEAP_KDF,
  defaultKeystore,
  modeOf,
  namesIn,
  passwordOf,
  runCliStdinOpen,
} from '../helpers/keystore.js'

const RULE = 'key names are 1 to 255 characters from A-Z a-z 0-9 _ . -'

describe('apm-server keystore add', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  const valueOf = async (name: string, password?: string) => (await openKeystore(file, {password: passwordOf(password ?? '')})).get(name)
  beforeEach(() => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
  })
  afterEach(() => tmp.cleanup())

  it('all 256 byte values through `add --stdin` and `show`: native and beats-v1, with and without a password', async () => {
    const cases: Array<[string, KeystoreFormat, string | undefined]> = [
      ['native-plain', 'native', undefined],
      ['native-password', 'native', 'pw'],
      ['beats-v1', 'beats-v1', undefined],
    ]
    await Promise.all(
      cases.map(async ([name, format, password]) => {
        const data = path.join(tmp.dir, name)
        const at = path.join(data, 'apm-server.keystore')
        await createKeystore(at, {format, kdfParams: CHEAP_KDF, password: password ? Buffer.from(password) : undefined})
        const env = {APM_SERVER_KEYSTORE_PASSWORD: password}
        // one trailing newline is stripped; every other byte, 0x0a and 0x0d included, is kept
        const add = await ks(['add', 'ALL_BYTES', '--stdin', '--path.data', data], {env, input: Buffer.concat([ALL_BYTES, Buffer.from('\n')])})
        assertRun(add, {code: 0, stderr: '', stdout: `Added ALL_BYTES to ${at}.\n`})
        const show = await ks(['show', 'ALL_BYTES', '--path.data', data], {env})
        assertRun(show, {code: 0, stderr: ''})
        assert.deepEqual(show.stdoutBytes, ALL_BYTES, name)
        assert.deepEqual((await openKeystore(at, {password: passwordOf(password ?? '')})).get('ALL_BYTES'), ALL_BYTES, name)
        assert.deepEqual(await inspectKeystore(at), {format, passwordProtected: password !== undefined}, name)
        assert.equal(modeOf(at), 0o600, name)
      }),
    )
  })

  describe('--stdin', () => {
    it('strips exactly one trailing \\n or \\r\\n (table, through the helper)', () => {
      const table: Array<[string, string]> = [
        ['v', 'v'],
        ['v\n', 'v'],
        ['v\r\n', 'v'],
        ['v\n\n', 'v\n'],
        ['v\r\n\r\n', 'v\r\n'],
        ['v\r', 'v\r'],
        ['v\n\r', 'v\n\r'],
        [' v \n', ' v '],
        ['\n', ''],
        ['', ''],
      ]
      for (const [input, stored] of table) assert.deepEqual(stripOneNewline(Buffer.from(input)), Buffer.from(stored), JSON.stringify(input))
    })

    it('splits one line per key (table, through the helper)', () => {
      const table: Array<[string, string[]]> = [
        ['a\nb\n', ['a', 'b']],
        ['a\r\nb\r\n', ['a', 'b']],
        ['a\nb', ['a', 'b']],
        ['a\n\nb\n', ['a', '', 'b']],
        ['a\rb\n', ['a\rb']],
        ['', []],
      ]
      for (const [input, lines] of table) {
        assert.deepEqual(
          splitLines(Buffer.from(input)).map((line) => line.toString()),
          lines,
          JSON.stringify(input),
        )
      }
    })

    it('one key: the whole of stdin minus ONE trailing newline, through the CLI', async () => {
      await createKeystore(file, {format: 'native'})
      const inputs: Record<string, string> = {CRLF_TWICE: 'v\r\n\r\n', LF_TWICE: 'v\n\n', LINES: 'a\nb\n', NONE: 'v'}
      const runs = await Promise.all(Object.entries(inputs).map(([name, input]) => ks(['add', name, '--stdin'], {input})))
      for (const run of runs) assertRun(run, {code: 0, stderr: ''})
      const keystore = await openKeystore(file)
      assert.deepEqual(
        Object.fromEntries(keystore.keys().map((name) => [name, keystore.get(name).toString()])),
        {CRLF_TWICE: 'v\r\n', LF_TWICE: 'v\n', LINES: 'a\nb', NONE: 'v'},
      )
    })

    it('several keys: one line per key; a wrong line count is a usage error and changes nothing', async () => {
      await createKeystore(file, {format: 'native'})
      assertRun(await ks(['add', 'A', 'B', 'C', '--stdin'], {input: 'a\r\nb b\nc'}), {code: 0, stderr: '', stdout: `Added A, B, C to ${file}.\n`})
      assert.deepEqual((await valueOf('B')).toString(), 'b b')
      assert.deepEqual((await valueOf('A')).toString(), 'a')
      assert.deepEqual((await valueOf('C')).toString(), 'c')
      const before = readFileSync(file)
      const [tooFew, tooMany, emptyLine] = await Promise.all([
        ks(['add', 'D', 'E', 'F', '--stdin'], {input: 'd\ne\n'}),
        ks(['add', 'D', 'E', '--stdin'], {input: 'd\ne\nf\n'}),
        ks(['add', 'D', 'E', '--stdin'], {input: 'd\n\n'}),
      ])
      assertFailure(tooFew, 2, 'EUSAGE', 'stdin has 2 lines for 3 keys; give one line per key')
      assertFailure(tooMany, 2, 'EUSAGE', 'stdin has 3 lines for 2 keys; give one line per key')
      assertFailure(emptyLine, 1, 'EBADVALUE', 'empty value for key E; give a non-empty value')
      assert.deepEqual(readFileSync(file), before)
    })

    it('an empty value is refused: exit 1, nothing written', async () => {
      await createKeystore(file, {format: 'native'})
      const before = readFileSync(file)
      const [empty, crlf] = await Promise.all([ks(['add', 'E', '--stdin'], {input: ''}), ks(['add', 'E', '--stdin', '--json'], {input: '\r\n'})])
      assertFailure(empty, 1, 'EBADVALUE', 'empty value for key E; give a non-empty value')
      assertFailure(crlf, 1, 'EBADVALUE', 'empty value for key E; give a non-empty value', true)
      assert.deepEqual(readFileSync(file), before)
    })
  })

  it('no terminal and no --stdin/--file/--generate: exit 2 at once, without reading stdin (it is left open)', async () => {
    await createKeystore(file, {format: 'native'})
    const result = await runCliStdinOpen(['keystore', 'add', 'A', 'B'], {cwd: tmp.dir})
    assert.equal(result.signal, null, 'the command waited on stdin and had to be killed')
    assertFailure(result, 2, 'EUSAGE', 'no value for A, B: stdin is not a terminal; pipe the value with --stdin, or use --file PATH or --generate')
    assert.deepEqual((await openKeystore(file)).keys(), [])
  })

  it('an existing key: exit 1 without --force (value kept); --force replaces it; --json shapes', async () => {
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('A', Buffer.from('old')))
    const refused = await ks(['add', 'A', 'B', '--stdin'], {input: 'new\nb\n'})
    assertFailure(refused, 1, 'EKEYEXISTS', `key A already exists in ${file}; use --force to overwrite it`)
    assert.deepEqual(await valueOf('A'), Buffer.from('old'))
    assert.equal((await openKeystore(file)).has('B'), false, 'a partial add happened')
    const forced = await ks(['add', 'A', 'B', '--stdin', '--force', '--json'], {input: 'new\nb\n'})
    assertRun(forced, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(forced.stdout), {added: ['B'], path: file, updated: ['A']})
    assert.deepEqual(await valueOf('A'), Buffer.from('new'))
    assertRun(await ks(['add', 'A', '--stdin', '-f'], {input: 'newer'}), {code: 0, stderr: '', stdout: `Replaced A in ${file}.\n`})
    assert.deepEqual(await valueOf('A'), Buffer.from('newer'))
  })

  it('bad key names: exit 2 with the rule, before reading anything; a key named twice: exit 2', async () => {
    await createKeystore(file, {format: 'native'})
    const [space, json, twice] = await Promise.all([
      ks(['add', 'bad name', '--stdin'], {input: 'x'}),
      ks(['add', 'GOOD', 'a=b', '--stdin', '--json'], {input: 'x\ny\n'}),
      ks(['add', 'A', 'A', '--stdin'], {input: 'x\ny\n'}),
    ])
    assertFailure(space, 2, 'EBADKEY', `invalid key name "bad name": ${RULE}`)
    assertFailure(json, 2, 'EBADKEY', `invalid key name "a=b": ${RULE}`, true)
    assertFailure(twice, 2, 'EUSAGE', 'a key is named twice; name each key once')
    assert.deepEqual((await openKeystore(file)).keys(), [])
  })

  it('no keystore: exit 1 without --force; --force creates a native one (0600, 0700 dir) and says so', async () => {
    assertFailure(
      await ks(['add', 'A', '--stdin'], {input: 'a'}),
      1,
      'ENOKEYSTORE',
      `no keystore at ${file}; create one with "apm-server keystore create", or use --force`,
    )
    assert.deepEqual(namesIn(tmp.dir), [])
    const created = await ks(['add', 'A', '--stdin', '--force'], {input: 'a'})
    assertRun(created, {
      code: 0,
      stderr: `warning: created ${file} without a password; run "apm-server keystore passwd" to protect it\n`,
      stdout: `Added A to ${file}.\n`,
    })
    assert.deepEqual(await inspectKeystore(file), {format: 'native', passwordProtected: false})
    assert.deepEqual(await valueOf('A'), Buffer.from('a'))
    assert.equal(modeOf(file), 0o600)
    assert.equal(modeOf(path.dirname(file)), 0o700)
  })

  it('--file stores the bytes exactly (newlines kept); a missing or empty file, or --file with two keys or --stdin, is refused', async () => {
    await createKeystore(file, {format: 'native'})
    const content = Buffer.concat([ALL_BYTES, Buffer.from('\r\n\n')])
    const source = path.join(tmp.dir, 'value.bin')
    writeFileSync(source, content)
    const missing = path.join(tmp.dir, 'missing.bin')
    const emptyFile = path.join(tmp.dir, 'empty.bin')
    writeFileSync(emptyFile, '')
    const [ok, absent, two, empty, withStdin] = await Promise.all([
      ks(['add', 'FILE', '--file', source]),
      ks(['add', 'F2', '--file', missing]),
      ks(['add', 'F2', 'F3', '--file', source]),
      ks(['add', 'F2', '--file', emptyFile]),
      ks(['add', 'F2', '--file', source, '--stdin'], {input: 'x'}),
    ])
    assertRun(ok, {code: 0, stderr: '', stdout: `Added FILE to ${file}.\n`})
    assert.deepEqual(await valueOf('FILE'), content)
    assertFailure(absent, 2, 'EUSAGE', `cannot read --file ${missing}: ENOENT; check the path`)
    assertFailure(two, 2, 'EUSAGE', '--file sets one key; name exactly one')
    assertFailure(empty, 1, 'EBADVALUE', 'empty value for key F2; give a non-empty value')
    assert.equal(withStdin.code, 2, withStdin.stderr)
    assert.match(withStdin.stderr, /^error: .*--stdin.*; see --help\n$/)
    assert.deepEqual((await openKeystore(file)).keys(), ['FILE'])
  })

  it('--generate prints a URL-safe token of the requested length once, and stores it', async () => {
    await createKeystore(file, {format: 'native'})
    const [custom, byDefault, json] = await Promise.all([
      ks(['add', 'TOKEN', '--generate', '--length', '40']),
      ks(['add', 'DEFAULT', '--generate']),
      ks(['add', 'JSON', '--generate', '--length', '16', '--json']),
    ])
    assertRun(custom, {code: 0, stderr: 'Stored a new token in TOKEN; it is shown only this once.\n'})
    assert.match(custom.stdout, /^[A-Za-z0-9_-]{40}\n$/)
    assert.deepEqual(await valueOf('TOKEN'), Buffer.from(custom.stdout.trimEnd()))
    assertRun(byDefault, {code: 0})
    assert.match(byDefault.stdout, /^[A-Za-z0-9_-]{32}\n$/)
    assert.deepEqual(await valueOf('DEFAULT'), Buffer.from(byDefault.stdout.trimEnd()))
    assertRun(json, {code: 0, stderr: ''})
    const result = JSON.parse(json.stdout) as {generated: string}
    assert.match(result.generated, /^[A-Za-z0-9_-]{16}$/)
    assert.deepEqual(result, {added: ['JSON'], generated: result.generated, path: file, updated: []})
    assert.deepEqual(await valueOf('JSON'), Buffer.from(result.generated))
  })

  it('--generate: existing key needs --force; --length out of range or without --generate is a usage error', async () => {
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('TOKEN', Buffer.from('old')))
    const [exists, short, lonely] = await Promise.all([
      ks(['add', 'TOKEN', '--generate']),
      ks(['add', 'T2', '--generate', '--length', '15']),
      ks(['add', 'T2', '--length', '20', '--stdin'], {input: 'x'}),
    ])
    assertFailure(exists, 1, 'EKEYEXISTS', `key TOKEN already exists in ${file}; use --force to overwrite it`)
    for (const run of [short, lonely]) {
      assert.equal(run.code, 2, run.stderr)
      assert.match(run.stderr, /^error: .*; see --help\n$/)
      assert.equal(run.stdout, '')
    }

    assert.deepEqual((await openKeystore(file)).keys(), ['TOKEN'])
    assert.deepEqual(await valueOf('TOKEN'), Buffer.from('old'))
  })

  it('a protected keystore: no password source -> exit 1; wrong password -> exit 1; nothing written', async () => {
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
    const before = readFileSync(file)
    const [none, wrong] = await Promise.all([
      ks(['add', 'A', '--stdin'], {input: 'a'}),
      ks(['add', 'A', '--stdin'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'nope'}, input: 'a'}),
    ])
    assertFailure(
      none,
      1,
      'ENOPASSWORD',
      'the keystore is password protected and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
    )
    assertFailure(wrong, 1, 'EDECRYPT', `${file}: wrong password or keystore file tampered with`)
    assert.deepEqual(readFileSync(file), before)
  })

  it('keeps mode 0600 after an add, and tightens a looser file when strict perms are off', async () => {
    await createKeystore(file, {format: 'native'})
    chmodSync(file, 0o644)
    const {ino} = statSync(file)
    assertRun(await ks(['add', 'A', '--stdin', '--strict.perms=false'], {input: 'a'}), {code: 0, stderr: ''})
    assert.equal(modeOf(file), 0o600)
    assert.notEqual(statSync(file).ino, ino, 'the file was rewritten in place, not replaced atomically')
    assert.deepEqual(namesIn(path.dirname(file)), ['apm-server.keystore', 'apm-server.keystore.audit'])
  })
})
