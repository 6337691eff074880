/**
 * Where each ${KEY} came from (issue 16), and what follows from it: a key in both the keystore and the
 * environment, secrets that expire soon or have expired (an expired secret token stops run and fails a
 * reload, closed). In-process, with the clock given as LoadOptions.now.
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {loadServerConfig} from '../../src/server/config/load.js'
import {ConfigError, LoadOptions} from '../../src/server/config/server-config.js'
import {makeTempDir} from '../helpers/cli.js'
import {assertKeystoreError, CHEAP_KDF, passwordOf} from '../helpers/keystore.js'

const PASSWORD = 'provenance password'
const NOW = Date.parse('2026-11-27T10:00:00Z')
const DAY = 86_400_000
const VALUES = {ES_PASS: 'es-Secret-value', SHARED: 'shared-keystore-value', TOKEN: 'tok-Secret-value'}

describe('server/config: where each ${KEY} came from, and expiry', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let home: string
  let configFile: string
  beforeEach(() => {
    tmp = makeTempDir('apm-provenance-')
    home = tmp.dir
    configFile = path.join(home, 'apm-server.yml')
  })
  afterEach(() => tmp.cleanup())

  async function keystore(expires: Partial<Record<keyof typeof VALUES, number>> = {}): Promise<void> {
    const file = path.join(home, 'data', 'apm-server.keystore')
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from(PASSWORD)})
    await updateKeystore(file, {password: passwordOf(PASSWORD)}, (ks) => {
      for (const [name, value] of Object.entries(VALUES)) ks.set(name, Buffer.from(value))
      for (const [name, at] of Object.entries(expires)) ks.setExpiry(name, at)
    })
  }

  const config = [
    'apm-server:',
    '  host: "${HOST:localhost:8200}"',
    '  auth.secret_token: "${TOKEN}"',
    '  rum.allow_origins: ["${ORIGIN}", "https://${SHARED}.example"]',
    'output.file.path: "${path.data}/out"',
    'apm-server.ssl.key_passphrase: "${ES_PASS}"',
    '',
  ].join('\n')
  const load = (options: Partial<LoadOptions> = {}) =>
    loadServerConfig({cwd: home, env: {ORIGIN: 'https://o.example', SHARED: 'from-env'}, flags: {}, now: NOW, overrides: [], password: passwordOf(PASSWORD), ...options})
  const noValueIn = (lines: string[]) => {
    for (const line of lines) for (const value of Object.values(VALUES)) assert.equal(line.includes(value), false, line)
  }

  it('names every reference: setting, file:line and source; a key in both wins from the keystore, with a warning', async () => {
    await keystore()
    writeFileSync(configFile, config)
    const loaded = await load()
    const at = (line: number) => `${configFile}:${line}`
    assert.deepEqual(loaded.references, [
      {alsoInEnvironment: false, expires: null, key: 'HOST', setting: 'apm-server.host', source: 'default', where: at(2)},
      {alsoInEnvironment: false, expires: null, key: 'TOKEN', setting: 'apm-server.auth.secret_token', source: 'keystore', where: at(3)},
      {alsoInEnvironment: false, expires: null, key: 'ORIGIN', setting: 'apm-server.rum.allow_origins[0]', source: 'environment', where: at(4)},
      {alsoInEnvironment: true, expires: null, key: 'SHARED', setting: 'apm-server.rum.allow_origins[1]', source: 'keystore', where: at(4)},
      {alsoInEnvironment: false, expires: null, key: 'path.data', setting: 'output.file.path', source: 'path', where: at(5)},
      {alsoInEnvironment: false, expires: null, key: 'ES_PASS', setting: 'apm-server.ssl.key_passphrase', source: 'keystore', where: at(6)},
    ])
    assert.deepEqual(loaded.warnings, [
      `${at(4)}: apm-server.rum.allow_origins[1]: \${SHARED} is set in both the keystore and the environment; the keystore's value is used (as in Beats): remove the one you do not mean`,
    ])
    assert.deepEqual(loaded.config.rum.allowOrigins, ['https://o.example', `https://${VALUES.SHARED}.example`])
    noValueIn([...loaded.warnings, JSON.stringify(loaded.references)])
  })

  it('a missing reference is named as missing in the error (for test config --explain)', async () => {
    await keystore()
    writeFileSync(configFile, config)
    const error = await assertKeystoreError(load({env: {SHARED: 'x'}}), 'ECONFIG')
    assert.ok(error instanceof ConfigError)
    assert.deepEqual(
      error.references?.map((reference) => [reference.key, reference.source]),
      [['HOST', 'default'], ['TOKEN', 'keystore'], ['ORIGIN', 'missing'], ['SHARED', 'keystore'], ['path.data', 'path'], ['ES_PASS', 'keystore']],
    )
    assert.equal(error.keystore, path.join(home, 'data', 'apm-server.keystore'))
  })

  it('warns 14 days ahead of an expiry; an expired secret token is a problem naming both fixes, another expired secret a warning', async () => {
    await keystore({ES_PASS: NOW - DAY, TOKEN: NOW + 3 * DAY})
    writeFileSync(configFile, config)
    const soon = await load({env: {ORIGIN: 'o'}})
    assert.deepEqual(soon.warnings, [
      `${configFile}:3: apm-server.auth.secret_token: \${TOKEN} in the keystore expires on 2026-11-30T10:00:00.000Z (in 3 days); rotate it ("apm-server keystore add TOKEN --generate --force", then give the new value to whoever uses it) or extend it ("apm-server keystore add TOKEN --force --expires 90d", with its current value)`,
      `${configFile}:6: apm-server.ssl.key_passphrase: \${ES_PASS} in the keystore expired on 2026-11-26T10:00:00.000Z (1 day ago); rotate it ("apm-server keystore add ES_PASS --generate --force", then give the new value to whoever uses it) or extend it ("apm-server keystore add ES_PASS --force --expires 90d", with its current value)`,
    ])
    assert.equal(soon.references[1].expires, '2026-11-30T10:00:00.000Z')
    // 15 days ahead: no warning.
    assert.equal((await load({env: {ORIGIN: 'o'}, now: NOW - 12 * DAY})).warnings.length, 1)

    const expired = await assertKeystoreError(load({env: {ORIGIN: 'o'}, now: NOW + 3 * DAY}), 'ECONFIG')
    assert.ok(expired instanceof ConfigError)
    assert.deepEqual(expired.problems, [
      `${configFile}:3: apm-server.auth.secret_token: the secret token \${TOKEN} in the keystore expired on 2026-11-30T10:00:00.000Z (less than an hour ago); rotate it ("apm-server keystore add TOKEN --generate --force", then give the new value to whoever uses it) or extend it ("apm-server keystore add TOKEN --force --expires 90d", with its current value)`,
    ])
    noValueIn([...expired.problems, ...expired.warnings, ...soon.warnings])
  })

  it('a reload with an expired secret token fails, closed', async () => {
    await keystore({TOKEN: NOW + DAY})
    writeFileSync(configFile, config)
    const running = await load({env: {ORIGIN: 'o'}})
    const reload = await assertKeystoreError(load({env: {ORIGIN: 'o'}, now: NOW + 2 * DAY, reloadOf: running}), 'ECONFIG')
    assert.match(reload.message, /the secret token \$\{TOKEN\} in the keystore expired on/)
  })

  it('APM_SERVER_TEST_NOW in the environment fixes the clock, with a warning saying so', async () => {
    await keystore({TOKEN: NOW + DAY})
    writeFileSync(configFile, config)
    const loaded = await load({env: {APM_SERVER_TEST_NOW: '2026-11-01T10:00:00Z', ORIGIN: 'o'}, now: undefined})
    assert.deepEqual(loaded.warnings, ['APM_SERVER_TEST_NOW is set: expiry is judged as of 2026-11-01T10:00:00.000Z; it is for tests only, unset it'])
  })
})
