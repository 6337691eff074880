import assert from 'node:assert/strict'
import {chmodSync, readFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, inspectKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {ALL_BYTES, assertFailure, assertRun, CHEAP_KDF, defaultKeystore, modeOf, namesIn, passwordOf} from '../helpers/keystore.js'

describe('apm-server keystore upgrade', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(() => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
  })
  afterEach(() => tmp.cleanup())

  it('beats-v1 -> native keeps every entry byte for byte; 0600 after', async () => {
    await createKeystore(file, {format: 'beats-v1'})
    await updateKeystore(file, {}, (keystore) => {
      keystore.set('ALL_BYTES', ALL_BYTES)
      keystore.set('es.password', Buffer.from('changeme\n'))
    })
    assertRun(await ks(['upgrade']), {code: 0, stderr: '', stdout: `Upgraded ${file} from beats-v1 to native.\n`})
    assert.deepEqual(await inspectKeystore(file), {format: 'native', passwordProtected: false})
    const keystore = await openKeystore(file)
    assert.deepEqual(keystore.keys(), ['ALL_BYTES', 'es.password'])
    assert.deepEqual(keystore.get('ALL_BYTES'), ALL_BYTES)
    assert.deepEqual(keystore.get('es.password'), Buffer.from('changeme\n'))
    assert.equal(modeOf(file), 0o600)
    assert.deepEqual(namesIn(path.dirname(file)), ['apm-server.keystore', 'apm-server.keystore.audit'])
  })

  it('native: rewritten with a fresh salt and nonce, password and entries kept; --json shape', async () => {
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
    await updateKeystore(file, {password: passwordOf('pw')}, (keystore) => keystore.set('A', Buffer.from('a')))
    chmodSync(file, 0o600)
    const before = readFileSync(file)
    const result = await ks(['upgrade', '--json'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}})
    assertRun(result, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(result.stdout), {from: 'native', path: file, to: 'native'})
    const after = readFileSync(file)
    assert.notDeepEqual(after, before)
    assert.deepEqual(after.subarray(0, 20), before.subarray(0, 20), 'the KDF parameters changed')
    const keystore = await openKeystore(file, {password: passwordOf('pw')})
    assert.equal(keystore.passwordProtected, true)
    assert.deepEqual(keystore.get('A'), Buffer.from('a'))
    assert.equal(modeOf(file), 0o600)
  })

  it('a native keystore says it was already native', async () => {
    await createKeystore(file, {format: 'native'})
    assertRun(await ks(['upgrade']), {code: 0, stderr: '', stdout: `Keystore ${file} is already native; rewritten.\n`})
  })

  it('failures: no keystore, a protected one without its password, a damaged one; nothing written', async () => {
    const protectedDir = path.join(tmp.dir, 'protected')
    const protectedFile = path.join(protectedDir, 'apm-server.keystore')
    await createKeystore(protectedFile, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
    const before = readFileSync(protectedFile)
    const [none, noPassword] = await Promise.all([ks(['upgrade']), ks(['upgrade', '--path.data', protectedDir])])
    assertFailure(none, 1, 'ENOKEYSTORE', `no keystore at ${file}; create one with "apm-server keystore create"`)
    assertFailure(
      noPassword,
      1,
      'ENOPASSWORD',
      'the keystore is password protected and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
    )
    assert.deepEqual(readFileSync(protectedFile), before)
  })
})
