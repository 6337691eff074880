import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, inspectKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {
  assertFailure,
  assertRun,
  defaultKeystore,
  modeOf,
  namesIn,
  NO_PASSWORD_WARNING,
  noPasswordExpected,
  passwordOf,
} from '../helpers/keystore.js'

describe('apm-server keystore create', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(() => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
  })
  afterEach(() => tmp.cleanup())

  it('creates an empty native keystore without a password: 0600 in a new 0700 data dir, and warns', async () => {
    assertRun(await ks(['create']), {code: 0, stderr: NO_PASSWORD_WARNING, stdout: `Created native keystore at ${file}.\n`})
    assert.equal(modeOf(file), 0o600)
    assert.equal(modeOf(path.dirname(file)), 0o700)
    assert.deepEqual(await inspectKeystore(file), {format: 'native', passwordProtected: false})
    assert.deepEqual((await openKeystore(file, {password: noPasswordExpected()})).keys(), [])
  })

  it('--json: {format, passwordProtected, path}', async () => {
    const result = await ks(['create', '--json'])
    assertRun(result, {code: 0})
    assert.deepEqual(JSON.parse(result.stdout), {format: 'native', passwordProtected: false, path: file})
  })

  it('an existing keystore without --force and no terminal: exit 1, nothing changed; --force replaces it', async () => {
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('KEEP', Buffer.from('me')))
    const before = readFileSync(file)
    const message = `keystore ${file} already exists; use --force to overwrite it`
    const [plain, json] = await Promise.all([ks(['create']), ks(['create', '--json'])])
    assertFailure(plain, 1, 'EEXISTS', message)
    assertFailure(json, 1, 'EEXISTS', message, true)
    assert.deepEqual(readFileSync(file), before)
    assertRun(await ks(['create', '--force']), {code: 0, stdout: `Created native keystore at ${file}.\n`})
    assert.deepEqual((await openKeystore(file)).keys(), [])
    assert.equal(modeOf(file), 0o600)
  })

  it('a damaged file also counts as existing', async () => {
    await createKeystore(file, {format: 'native'})
    writeFileSync(file, 'garbage')
    assertFailure(await ks(['create']), 1, 'EEXISTS', `keystore ${file} already exists; use --force to overwrite it`)
    assert.equal(readFileSync(file, 'utf8'), 'garbage')
  })

  it('--password from APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE, with the KDF cost from the env', async () => {
    const pwFile = path.join(tmp.dir, 'pw.txt')
    writeFileSync(pwFile, 'from-file\n')
    const other = path.join(tmp.dir, 'other')
    const [direct, fromFile] = await Promise.all([
      ks(['create', '--password'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'sekret'}}),
      ks(['create', '--password', '--json', '--path.data', other], {env: {APM_SERVER_KEYSTORE_PASSWORD_FILE: pwFile}}),
    ])
    assertRun(direct, {code: 0, stderr: '', stdout: `Created native keystore at ${file}, password protected.\n`})
    assertRun(fromFile, {code: 0, stderr: ''})
    const otherFile = path.join(other, 'apm-server.keystore')
    assert.deepEqual(JSON.parse(fromFile.stdout), {format: 'native', passwordProtected: true, path: otherFile})
    assert.deepEqual((await openKeystore(file, {password: passwordOf('sekret')})).keys(), [])
    assert.deepEqual((await openKeystore(otherFile, {password: passwordOf('from-file')})).keys(), [])
    // the documented test knob: m=1024,t=1,p=1 lands in the header
    const header = readFileSync(file)
    assert.deepEqual([header[9], header.readUInt32BE(10), header.readUInt32BE(14), header[18]], [1, 1024, 1, 1])
    assert.equal(modeOf(file), 0o600)
    assert.equal(modeOf(otherFile), 0o600)
  })

  it('--password with no password source and no terminal: exit 1 at once, no file', async () => {
    assertFailure(
      await ks(['create', '--password']),
      1,
      'ENOPASSWORD',
      '--password needs a password and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
    )
    assert.deepEqual(namesIn(tmp.dir), [])
  })

  it('usage errors exit 2: beats-v1 with --password, an unknown format', async () => {
    const [beatsPassword, unknown] = await Promise.all([
      ks(['create', '--format', 'beats-v1', '--password'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'x'}}),
      ks(['create', '--format', 'pkcs12']),
    ])
    assertFailure(
      beatsPassword,
      2,
      'EUSAGE',
      '--format beats-v1 cannot have a password (the Go apm-server always opens it with an empty one); drop --password or use --format native',
    )
    assertRun(unknown, {code: 2, stderr: 'error: expected --format=pkcs12 to be one of: native, beats-v1; see --help\n', stdout: ''})
    assert.deepEqual(namesIn(tmp.dir), [])
  })

  it('APM_SERVER_KEYSTORE_KDF_PARAMS beyond the caps: a usage error (exit 2, like a malformed value) naming the variable, not blaming a file', async () => {
    const result = await ks(['create', '--password', '--json'], {
      env: {APM_SERVER_KEYSTORE_KDF_PARAMS: 'm=4194304,t=1,p=1', APM_SERVER_KEYSTORE_PASSWORD: 'x'},
    })
    assert.equal(result.code, 2, result.stderr)
    assert.match(result.stderr, /^error: APM_SERVER_KEYSTORE_KDF_PARAMS.*\n$/)
    assert.doesNotMatch(result.stderr, /file is damaged or crafted|restore it from a backup/)
    assert.equal(JSON.parse(result.stdout).error.code, 'EUSAGE')
    assert.deepEqual(namesIn(tmp.dir), [])
  })
})
