import assert from 'node:assert/strict'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {assertFailure, assertRun, CHEAP_KDF, defaultKeystore, passwordOf} from '../helpers/keystore.js'

const DECRYPT = 'wrong password or keystore file tampered with'

describe('apm-server keystore list', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(() => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
  })
  afterEach(() => tmp.cleanup())

  it('prints key names sorted, one a line, never values; --json is an array; empty prints nothing', async () => {
    await createKeystore(file, {format: 'native'})
    const empty = path.join(tmp.dir, 'empty')
    await createKeystore(path.join(empty, 'apm-server.keystore'), {format: 'native'})
    await updateKeystore(file, {}, (keystore) => {
      for (const name of ['b.key', 'A_KEY', 'a-key', '0KEY']) keystore.set(name, Buffer.from(`secret-of-${name}`))
    })
    const [plain, json, none, noneJson] = await Promise.all([
      ks(['list']),
      ks(['list', '--json']),
      ks(['list', '--path.data', empty]),
      ks(['list', '--json', '--path.data', empty]),
    ])
    assertRun(plain, {code: 0, stderr: '', stdout: '0KEY\nA_KEY\na-key\nb.key\n'})
    assertRun(json, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(json.stdout), ['0KEY', 'A_KEY', 'a-key', 'b.key'])
    assert.doesNotMatch(json.stdout + plain.stdout, /secret-of/)
    assertRun(none, {code: 0, stderr: '', stdout: ''})
    assertRun(noneJson, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(noneJson.stdout), [])
  })

  it('no keystore: exit 1 naming the path and the fix (plain and --json)', async () => {
    const message = `no keystore at ${file}; create one with "apm-server keystore create"`
    const [plain, json] = await Promise.all([ks(['list']), ks(['list', '--json'])])
    assertFailure(plain, 1, 'ENOKEYSTORE', message)
    assertFailure(json, 1, 'ENOKEYSTORE', message, true)
  })

  it('a protected keystore: password from the env or a file; none -> ENOPASSWORD; empty env counts as unset', async () => {
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
    await updateKeystore(file, {password: passwordOf('pw')}, (keystore) => keystore.set('K', Buffer.from('v')))
    const pwFile = path.join(tmp.dir, 'pw')
    writeFileSync(pwFile, 'pw\r\n')
    const [env, fromFile, none, emptyEnv] = await Promise.all([
      ks(['list'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}}),
      ks(['list'], {env: {APM_SERVER_KEYSTORE_PASSWORD_FILE: pwFile}}),
      ks(['list', '--json']),
      ks(['list'], {env: {APM_SERVER_KEYSTORE_PASSWORD: ''}}),
    ])
    assertRun(env, {code: 0, stderr: '', stdout: 'K\n'})
    assertRun(fromFile, {code: 0, stderr: '', stdout: 'K\n'})
    const message =
      'the keystore is password protected and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE'
    assertFailure(none, 1, 'ENOPASSWORD', message, true)
    assertFailure(emptyEnv, 1, 'ENOPASSWORD', message)
  })

  it('wrong password, bit-flipped ciphertext, truncated, bad magic, unknown version, ELIMITS: each its own code and message', async () => {
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
    await updateKeystore(file, {password: passwordOf('pw')}, (keystore) => keystore.set('K', Buffer.from('v')))
    const good = readFileSync(file)
    // one data directory per variant, all listed at once
    const variant = (name: string, mutate: (data: Buffer) => Buffer): string => {
      const dir = path.join(tmp.dir, name)
      mkdirSync(dir, {mode: 0o700})
      writeFileSync(path.join(dir, 'apm-server.keystore'), mutate(Buffer.from(good)), {mode: 0o600})
      return dir
    }

    const cases: Array<[string, (data: Buffer) => Buffer, string, string, string]> = [
      ['wrong-password', (d) => d, 'nope', 'EDECRYPT', DECRYPT],
      ['flipped', (d) => ((d[d.length - 1] ^= 0x01), d), 'pw', 'EDECRYPT', DECRYPT],
      ['truncated', (d) => d.subarray(0, 40), 'pw', 'EFORMAT', 'keystore file is truncated'],
      ['bad-magic', (d) => ((d[3] = 0x21), d), 'pw', 'EFORMAT', 'not an apm-server keystore (bad magic)'],
      ['version-3', (d) => ((d[8] = 3), d), 'pw', 'EVERSION', 'unsupported keystore format version 3; this build reads versions up to 2, upgrade apm-server'],
      [
        'huge-memory',
        (d) => (d.writeUInt32BE(4 * 1024 * 1024, 10), d),
        'pw',
        'ELIMITS',
        'keystore asks for argon2id memory=4194304KiB iterations=1 parallelism=1, outside the allowed range (memory 8KiB per lane to 1048576KiB, ' +
          'iterations 1-10, parallelism 1-16); the file is damaged or crafted, restore it from a backup',
      ],
    ]
    const runs = await Promise.all(
      cases.map(([name, mutate, password]) => ks(['list', '--json', '--path.data', variant(name, mutate)], {env: {APM_SERVER_KEYSTORE_PASSWORD: password}})),
    )
    cases.forEach(([name, , , code, message], i) => {
      assertFailure(runs[i], 1, code, `${path.join(tmp.dir, name, 'apm-server.keystore')}: ${message}`, true)
    })
  })
})
