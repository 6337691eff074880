import assert from 'node:assert/strict'
import path from 'node:path'

import {createKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {ALL_BYTES, assertFailure, assertRun, defaultKeystore} from '../helpers/keystore.js'

describe('apm-server keystore show', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(() => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
  })
  afterEach(() => tmp.cleanup())

  it('writes exactly the stored bytes (no newline added off a terminal); --json gives size and times, never the value', async () => {
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => {
      keystore.set('BIN', ALL_BYTES)
      keystore.set('TRAILING', Buffer.from('line\n'))
      keystore.set('TOKEN', Buffer.from('tok-secret-123'))
    })
    const [bin, trailing, json] = await Promise.all([ks(['show', 'BIN']), ks(['show', 'TRAILING']), ks(['show', 'TOKEN', '--json'])])
    assertRun(bin, {code: 0, stderr: ''})
    assert.deepEqual(bin.stdoutBytes, ALL_BYTES)
    assertRun(trailing, {code: 0, stderr: '', stdout: 'line\n'})
    assertRun(json, {code: 0, stderr: ''})
    const {created, updated} = (await openKeystore(file)).describe('TOKEN')
    assert.deepEqual(JSON.parse(json.stdout), {
      bytes: 14,
      created: new Date(created).toISOString(),
      expires: null,
      key: 'TOKEN',
      updated: new Date(updated).toISOString(),
    })
    assert.doesNotMatch(json.stdout, /tok-secret-123/)
  })

  it('a missing key: exit 1 naming key, path and the fix; a bad name: exit 2; no keystore: exit 1', async () => {
    await createKeystore(file, {format: 'native'})
    const [missing, missingJson, bad, none] = await Promise.all([
      ks(['show', 'NOPE']),
      ks(['show', 'NOPE', '--json']),
      ks(['show', 'no pe']),
      ks(['show', 'A', '--path.data', 'elsewhere']),
    ])
    const message = `key NOPE not found in ${file}; "apm-server keystore list" shows the keys`
    assertFailure(missing, 1, 'ENOKEY', message)
    assertFailure(missingJson, 1, 'ENOKEY', message, true)
    assertFailure(bad, 2, 'EBADKEY', 'invalid key name "no pe": key names are 1 to 255 characters from A-Z a-z 0-9 _ . -')
    const elsewhere = path.join(tmp.dir, 'elsewhere', 'apm-server.keystore')
    assertFailure(none, 1, 'ENOKEYSTORE', `no keystore at ${elsewhere}; create one with "apm-server keystore create"`)
  })

  it('needs exactly one key', async () => {
    const [zero, two] = await Promise.all([ks(['show']), ks(['show', 'A', 'B'])])
    for (const run of [zero, two]) {
      assert.equal(run.code, 2, run.stderr)
      assert.match(run.stderr, /^error: .*; see --help\n$/)
      assert.equal(run.stdout, '')
    }
  })
})
