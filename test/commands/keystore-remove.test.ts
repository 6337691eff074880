import assert from 'node:assert/strict'
import {readFileSync, statSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {assertFailure, assertRun, CHEAP_KDF, defaultKeystore, modeOf, namesIn, passwordOf} from '../helpers/keystore.js'

describe('apm-server keystore remove', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(async () => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => {
      for (const name of ['A', 'B', 'C', 'D']) keystore.set(name, Buffer.from(name.toLowerCase()))
    })
  })
  afterEach(() => tmp.cleanup())

  it('removes one key, then several at once (duplicates once); 0600 after; --json shape', async () => {
    assertRun(await ks(['remove', 'A']), {code: 0, stderr: '', stdout: `Removed A from ${file}.\n`})
    assert.deepEqual((await openKeystore(file)).keys(), ['B', 'C', 'D'])
    assert.equal(modeOf(file), 0o600)
    const json = await ks(['remove', 'B', 'C', 'B', '--json'])
    assertRun(json, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(json.stdout), {path: file, removed: ['B', 'C']})
    assert.deepEqual((await openKeystore(file)).keys(), ['D'])
    assert.equal(modeOf(file), 0o600)
    assert.deepEqual(namesIn(path.dirname(file)), ['apm-server.keystore', 'apm-server.keystore.audit'])
  })

  it('all or nothing: any missing key -> exit 1 naming the missing ones, and nothing removed', async () => {
    const before = readFileSync(file)
    const {ino} = statSync(file)
    const [one, two, json] = await Promise.all([
      ks(['remove', 'A', 'NOPE', 'B']),
      ks(['remove', 'X', 'A', 'Y']),
      ks(['remove', 'A', 'NOPE', '--json']),
    ])
    assertFailure(one, 1, 'ENOKEY', `key NOPE not found in ${file}; nothing was removed`)
    assertFailure(two, 1, 'ENOKEY', `keys X, Y not found in ${file}; nothing was removed`)
    assertFailure(json, 1, 'ENOKEY', `key NOPE not found in ${file}; nothing was removed`, true)
    assert.deepEqual(readFileSync(file), before)
    assert.equal(statSync(file).ino, ino)
    assert.deepEqual((await openKeystore(file)).keys(), ['A', 'B', 'C', 'D'])
  })

  it('a bad name: exit 2 with the rule, nothing removed; no key: exit 2; no keystore: exit 1', async () => {
    const [bad, none, noKeystore] = await Promise.all([
      ks(['remove', 'A', 'b@d']),
      ks(['remove']),
      ks(['remove', 'A', '--path.data', 'nowhere']),
    ])
    assertFailure(bad, 2, 'EBADKEY', 'invalid key name "b@d": key names are 1 to 255 characters from A-Z a-z 0-9 _ . -')
    assert.equal(none.code, 2, none.stderr)
    assert.match(none.stderr, /^error: .*; see --help\n$/)
    const nowhere = path.join(tmp.dir, 'nowhere', 'apm-server.keystore')
    assertFailure(noKeystore, 1, 'ENOKEYSTORE', `no keystore at ${nowhere}; create one with "apm-server keystore create"`)
    assert.deepEqual((await openKeystore(file)).keys(), ['A', 'B', 'C', 'D'])
  })

  it('a protected keystore keeps its password after a remove; a wrong password removes nothing', async () => {
    await updateKeystore(file, {}, (keystore) => keystore.setPassword(Buffer.from('pw'), CHEAP_KDF))
    const wrong = await ks(['remove', 'A'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'bad'}})
    assertFailure(wrong, 1, 'EDECRYPT', `${file}: wrong password or keystore file tampered with`)
    assertRun(await ks(['remove', 'A'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}}), {code: 0, stderr: ''})
    const keystore = await openKeystore(file, {password: passwordOf('pw')})
    assert.equal(keystore.passwordProtected, true)
    assert.deepEqual(keystore.keys(), ['B', 'C', 'D'])
    assert.equal(modeOf(file), 0o600)
  })
})
