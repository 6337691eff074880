/**
 * Beats v1 compatibility, checked against an independent implementation (test/fixtures/beats_v1.py:
 * stdlib PBKDF2, hand-written AES-256-GCM) rather than against our own decoder.
 */
import assert from 'node:assert/strict'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {
  ALL_BYTES,
  assertFailure,
  assertRun,
  copyFixture,
  defaultKeystore,
  FIXTURES,
  modeOf,
  namesIn,
  NO_PASSWORD_WARNING,
  python3,
  readBeatsV1WithPython,
  writeBeatsV1WithPython,
} from '../helpers/keystore.js'

const SAMPLE = Object.fromEntries(
  Object.entries(JSON.parse(readFileSync(path.join(FIXTURES, 'beats-v1', 'sample.json'), 'utf8')) as Record<string, string>).map(([name, value]) => [
    name,
    Buffer.from(value, 'base64'),
  ]),
)

describe('apm-server keystore: Beats v1 files against the independent Python implementation', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  before(function () {
    if (!python3()) this.skip() // no python3 here: the independent implementation cannot run
  })
  beforeEach(() => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
  })
  afterEach(() => tmp?.cleanup())

  it('the committed fixture (made by the Python writer): list and show give the exact bytes, binary included', async () => {
    mkdirSync(path.dirname(file), {mode: 0o700})
    copyFixture(path.join('beats-v1', 'sample.keystore'), file)
    const [list, binary, newline, dotted, json] = await Promise.all([
      ks(['list']),
      ks(['show', 'ALL_BYTES']),
      ks(['show', 'ES_PASSWORD']),
      ks(['show', 'output.elasticsearch.api-key']),
      ks(['show', 'APM_SECRET_TOKEN', '--json']),
    ])
    assertRun(list, {code: 0, stderr: '', stdout: `${Object.keys(SAMPLE).sort().join('\n')}\n`})
    assertRun(binary, {code: 0, stderr: ''})
    assert.deepEqual(binary.stdoutBytes, SAMPLE.ALL_BYTES)
    assert.deepEqual(binary.stdoutBytes, ALL_BYTES)
    assertRun(newline, {code: 0, stderr: '', stdout: 'changeme\n'})
    assertRun(dotted, {code: 0, stderr: '', stdout: 'id:key'})
    assertRun(json, {code: 0, stderr: ''})
    // Beats v1 records no times
    assert.deepEqual(JSON.parse(json.stdout), {bytes: 12, created: null, expires: null, key: 'APM_SECRET_TOKEN', updated: null})
  })

  it('add and remove on a Python-written file keep it Beats v1, mode 0600, and Python still reads the right contents', async () => {
    mkdirSync(path.dirname(file), {mode: 0o700})
    writeBeatsV1WithPython(file, {KEEP: Buffer.from('kept'), OLD: Buffer.from('old'), GONE: Buffer.from('x')})
    assertRun(await ks(['add', 'NEW_BIN', '--stdin'], {input: ALL_BYTES}), {code: 0, stderr: ''})
    assertRun(await ks(['add', 'OLD', '--stdin', '--force'], {input: 'replaced\n'}), {code: 0, stderr: ''})
    assertRun(await ks(['remove', 'GONE']), {code: 0, stderr: ''})
    assert.equal(readFileSync(file).subarray(0, 2).toString('latin1'), 'v1')
    assert.equal(modeOf(file), 0o600)
    assert.deepEqual(readBeatsV1WithPython(file), {KEEP: Buffer.from('kept'), NEW_BIN: ALL_BYTES, OLD: Buffer.from('replaced')})
    assert.deepEqual(namesIn(path.dirname(file)), ['apm-server.keystore', 'apm-server.keystore.audit'])
  })

  it('create --format beats-v1 writes a file Python reads (empty, then with all 256 byte values); 0600', async () => {
    assertRun(await ks(['create', '--format', 'beats-v1']), {code: 0, stderr: NO_PASSWORD_WARNING, stdout: `Created beats-v1 keystore at ${file}.\n`})
    assert.equal(modeOf(file), 0o600)
    assert.deepEqual(readBeatsV1WithPython(file), {})
    assertRun(await ks(['add', 'ALL_BYTES', 'LINE', '--stdin'], {input: 'line one\nline two\n'}), {code: 0, stderr: ''})
    assertRun(await ks(['add', 'BIN', '--stdin'], {input: Buffer.concat([ALL_BYTES, Buffer.from('\r\n')])}), {code: 0, stderr: ''})
    assert.deepEqual(readBeatsV1WithPython(file), {ALL_BYTES: Buffer.from('line one'), BIN: ALL_BYTES, LINE: Buffer.from('line two')})
    assert.equal(modeOf(file), 0o600)
  })

  it('upgrade of a Python-written file keeps every entry and leaves a native file Python can no longer read', async () => {
    mkdirSync(path.dirname(file), {mode: 0o700})
    writeBeatsV1WithPython(file, SAMPLE)
    const upgrade = await ks(['upgrade', '--json'])
    assertRun(upgrade, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(upgrade.stdout), {from: 'beats-v1', path: file, to: 'native'})
    assert.equal(modeOf(file), 0o600)
    assert.equal(readFileSync(file).subarray(0, 8).toString('latin1'), 'APMKEYS\0')
    const [list, binary] = await Promise.all([ks(['list']), ks(['show', 'ALL_BYTES'])])
    assertRun(list, {code: 0, stdout: `${Object.keys(SAMPLE).sort().join('\n')}\n`})
    assert.deepEqual(binary.stdoutBytes, ALL_BYTES)
  })

  it('a tampered Beats v1 file gets the one EDECRYPT message', async () => {
    mkdirSync(path.dirname(file), {mode: 0o700})
    writeBeatsV1WithPython(file, {A: Buffer.from('a')})
    const data = readFileSync(file)
    const raw = Buffer.from(data.subarray(2).toString('latin1'), 'base64')
    raw[raw.length - 1] ^= 0x01
    writeFileSync(file, `v1${raw.toString('base64')}`, {mode: 0o600})
    assertFailure(await ks(['list', '--json']), 1, 'EDECRYPT', `${file}: wrong password or keystore file tampered with`, true)
  })
})
