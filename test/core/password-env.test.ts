import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {generateToken} from '../../src/core/crypto.js'
import {kdfParamsFromEnvironment, passwordFromEnvironment} from '../../src/core/password-env.js'
import {makeTempDir} from '../helpers/cli.js'
import {assertKeystoreError} from '../helpers/keystore.js'

describe('core/password-env', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => tmp.cleanup())

  it('APM_SERVER_KEYSTORE_PASSWORD wins; empty counts as unset; nothing set gives undefined', async () => {
    const file = path.join(tmp.dir, 'pw')
    writeFileSync(file, 'from-file\n')
    assert.deepEqual(await passwordFromEnvironment({APM_SERVER_KEYSTORE_PASSWORD: 'direct', APM_SERVER_KEYSTORE_PASSWORD_FILE: file}), Buffer.from('direct'))
    assert.deepEqual(await passwordFromEnvironment({APM_SERVER_KEYSTORE_PASSWORD: '', APM_SERVER_KEYSTORE_PASSWORD_FILE: file}), Buffer.from('from-file'))
    assert.equal(await passwordFromEnvironment({}), undefined)
    assert.equal(await passwordFromEnvironment({APM_SERVER_KEYSTORE_PASSWORD: '', APM_SERVER_KEYSTORE_PASSWORD_FILE: ''}), undefined)
  })

  it('the password file loses exactly one trailing \\n or \\r\\n', async () => {
    const file = path.join(tmp.dir, 'pw')
    const table: Array<[string, string]> = [
      ['pw', 'pw'],
      ['pw\n', 'pw'],
      ['pw\r\n', 'pw'],
      ['pw\n\n', 'pw\n'],
      ['pw\r', 'pw\r'],
      [' pw \n', ' pw '],
    ]
    for (const [content, expected] of table) {
      writeFileSync(file, content)
      // eslint-disable-next-line no-await-in-loop -- a table
      assert.deepEqual(await passwordFromEnvironment({APM_SERVER_KEYSTORE_PASSWORD_FILE: file}), Buffer.from(expected), JSON.stringify(content))
    }
  })

  it('a missing or empty password file is ENOPASSWORD naming the file', async () => {
    const missing = path.join(tmp.dir, 'missing')
    await assertKeystoreError(
      passwordFromEnvironment({APM_SERVER_KEYSTORE_PASSWORD_FILE: missing}),
      'ENOPASSWORD',
      `cannot read the password file ${missing} named by APM_SERVER_KEYSTORE_PASSWORD_FILE: ENOENT; check the path and its permissions`,
    )
    const empty = path.join(tmp.dir, 'empty')
    for (const content of ['', '\n', '\r\n']) {
      writeFileSync(empty, content)
      // eslint-disable-next-line no-await-in-loop -- a table
      await assertKeystoreError(
        passwordFromEnvironment({APM_SERVER_KEYSTORE_PASSWORD_FILE: empty}),
        'ENOPASSWORD',
        `the password file ${empty} named by APM_SERVER_KEYSTORE_PASSWORD_FILE is empty; write the password into it`,
      )
    }
  })

  it('APM_SERVER_KEYSTORE_KDF_PARAMS: parsed, unset, or EUSAGE', () => {
    assert.deepEqual(kdfParamsFromEnvironment({APM_SERVER_KEYSTORE_KDF_PARAMS: 'm=1024,t=1,p=1'}), {iterations: 1, memoryKiB: 1024, parallelism: 1})
    assert.equal(kdfParamsFromEnvironment({}), undefined)
    for (const bad of ['m=1024', 'm=1,t=1,p=1,x=1', 't=1,m=1024,p=1', 'm=-1,t=1,p=1', 'm=1 t=1 p=1']) {
      assert.throws(() => kdfParamsFromEnvironment({APM_SERVER_KEYSTORE_KDF_PARAMS: bad}), {
        code: 'EUSAGE',
        message: 'APM_SERVER_KEYSTORE_KDF_PARAMS must look like "m=65536,t=3,p=4" (memory KiB, iterations, parallelism)',
      })
    }
  })

  it('generateToken: URL-safe, the requested length, different every time', () => {
    for (const length of [16, 17, 31, 32, 33, 1024]) {
      const token = generateToken(length)
      assert.equal(token.length, length)
      assert.match(token, /^[A-Za-z0-9_-]+$/)
    }

    assert.notEqual(generateToken(32), generateToken(32))
  })
})
