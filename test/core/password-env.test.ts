import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {generateToken} from '../../src/core/crypto.js'
import {kdfParamsFromEnvironment, MAX_PASSWORD_BYTES, passwordFromEnvironment, passwordSupplied} from '../../src/core/password-env.js'
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

  it('the password file must be a regular file of at most 4 KiB: a FIFO, a device, a directory or a big file fail at once, naming it', async () => {
    const fifo = path.join(tmp.dir, 'fifo')
    execFileSync('mkfifo', [fifo])
    const big = path.join(tmp.dir, 'big')
    writeFileSync(big, Buffer.alloc(MAX_PASSWORD_BYTES + 1, 0x61))
    const atLimit = path.join(tmp.dir, 'at-limit')
    writeFileSync(atLimit, Buffer.alloc(MAX_PASSWORD_BYTES, 0x61))
    const link = path.join(tmp.dir, 'link')
    symlinkSync('/dev/zero', link)
    const named = (file: string) => `the password file ${file} named by APM_SERVER_KEYSTORE_PASSWORD_FILE`
    const table: Array<[string, string]> = [
      [fifo, `${named(fifo)} is a FIFO, not a regular file; point it at a file holding the password`],
      ['/dev/zero', `${named('/dev/zero')} is a character device, not a regular file; point it at a file holding the password`],
      [link, `${named(link)} is a character device, not a regular file; point it at a file holding the password`],
      [tmp.dir, `${named(tmp.dir)} is a directory, not a regular file; point it at a file holding the password`],
      [big, `${named(big)} is over 4096 bytes, too big for a password; point it at a file holding only the password`],
    ]
    for (const [file, message] of table) {
      // eslint-disable-next-line no-await-in-loop -- a table
      await assertKeystoreError(passwordFromEnvironment({APM_SERVER_KEYSTORE_PASSWORD_FILE: file}), 'ENOPASSWORD', message)
    }

    assert.deepEqual(await passwordFromEnvironment({APM_SERVER_KEYSTORE_PASSWORD_FILE: atLimit}), Buffer.alloc(MAX_PASSWORD_BYTES, 0x61))
  })

  it('APM_SERVER_KEYSTORE_KDF_PARAMS: parsed, unset, or EUSAGE', () => {
    const testMode = {APM_SERVER_KEYSTORE_KDF_TEST_MODE: '1'}
    assert.deepEqual(kdfParamsFromEnvironment({...testMode, APM_SERVER_KEYSTORE_KDF_PARAMS: 'm=1024,t=1,p=1'}), {params: {iterations: 1, memoryKiB: 1024, parallelism: 1}})
    assert.deepEqual(kdfParamsFromEnvironment({}), {})
    for (const bad of ['m=1024', 'm=1,t=1,p=1,x=1', 't=1,m=1024,p=1', 'm=-1,t=1,p=1', 'm=1 t=1 p=1']) {
      assert.throws(() => kdfParamsFromEnvironment({APM_SERVER_KEYSTORE_KDF_PARAMS: bad}), {
        code: 'EUSAGE',
        message: 'APM_SERVER_KEYSTORE_KDF_PARAMS must look like "m=65536,t=3,p=4" (memory KiB, iterations, parallelism)',
      })
    }
  })

  it('APM_SERVER_KEYSTORE_KDF_PARAMS below the default cost is honoured only in test mode; elsewhere the default is used, with a warning', () => {
    const warning = (text: string) =>
      `APM_SERVER_KEYSTORE_KDF_PARAMS=${text} is below the default argon2id cost (m=65536,t=3,p=4), so the default was used; ` +
      'unset it (weaker costs are for test suites, with APM_SERVER_KEYSTORE_KDF_TEST_MODE=1)'
    // less memory, or less memory × passes; fewer lanes cost an attacker nothing, so they do not count
    for (const weak of ['m=8,t=1,p=1', 'm=65536,t=2,p=4', 'm=32768,t=10,p=4', 'm=1024,t=1,p=1']) {
      assert.deepEqual(kdfParamsFromEnvironment({APM_SERVER_KEYSTORE_KDF_PARAMS: weak}), {warning: warning(weak)}, weak)
      assert.deepEqual(kdfParamsFromEnvironment({APM_SERVER_KEYSTORE_KDF_PARAMS: weak, APM_SERVER_KEYSTORE_KDF_TEST_MODE: 'yes'}), {warning: warning(weak)}, weak)
      assert.ok(kdfParamsFromEnvironment({APM_SERVER_KEYSTORE_KDF_PARAMS: weak, APM_SERVER_KEYSTORE_KDF_TEST_MODE: '1'}).params, weak)
    }

    for (const strong of ['m=65536,t=3,p=4', 'm=65536,t=3,p=1', 'm=131072,t=2,p=8', 'm=1048576,t=1,p=16']) {
      const [m, t, p] = strong.match(/\d+/g)!.map(Number)
      assert.deepEqual(kdfParamsFromEnvironment({APM_SERVER_KEYSTORE_KDF_PARAMS: strong}), {params: {iterations: t, memoryKiB: m, parallelism: p}}, strong)
    }
  })

  it('a password is supplied when either variable is set and not empty', () => {
    assert.equal(passwordSupplied({}), false)
    assert.equal(passwordSupplied({APM_SERVER_KEYSTORE_PASSWORD: '', APM_SERVER_KEYSTORE_PASSWORD_FILE: ''}), false)
    assert.equal(passwordSupplied({APM_SERVER_KEYSTORE_PASSWORD: 'x'}), true)
    assert.equal(passwordSupplied({APM_SERVER_KEYSTORE_PASSWORD_FILE: '/run/secrets/ks'}), true)
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
