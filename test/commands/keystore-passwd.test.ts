import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, inspectKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {ALL_BYTES, assertFailure, assertKeystoreError, assertRun, CHEAP_KDF, defaultKeystore, modeOf, namesIn, passwordOf} from '../helpers/keystore.js'

describe('apm-server keystore passwd', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(async () => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('ALL_BYTES', ALL_BYTES))
  })
  afterEach(() => tmp.cleanup())

  it('set (--stdin, first line), change (current from env, then from a file), remove: entries kept, 0600 each time', async () => {
    const set = await ks(['passwd', '--stdin'], {input: 'first\r\nignored second line\n'})
    assertRun(set, {code: 0, stderr: '', stdout: `Password of ${file} set.\n`})
    assert.equal(modeOf(file), 0o600)
    assert.deepEqual((await openKeystore(file, {password: passwordOf('first')})).get('ALL_BYTES'), ALL_BYTES)

    const change = await ks(['passwd', '--stdin', '--json'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'first'}, input: 'second'})
    assertRun(change, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(change.stdout), {passwordProtected: true, path: file})
    assert.equal(modeOf(file), 0o600)
    await assertKeystoreError(openKeystore(file, {password: passwordOf('first')}), 'EDECRYPT')
    assert.deepEqual((await openKeystore(file, {password: passwordOf('second')})).get('ALL_BYTES'), ALL_BYTES)

    const pwFile = path.join(tmp.dir, 'current')
    writeFileSync(pwFile, 'second\n')
    const change2 = await ks(['passwd', '--stdin'], {env: {APM_SERVER_KEYSTORE_PASSWORD_FILE: pwFile}, input: 'third\n'})
    assertRun(change2, {code: 0, stderr: '', stdout: `Password of ${file} changed.\n`})
    assert.deepEqual((await openKeystore(file, {password: passwordOf('third')})).get('ALL_BYTES'), ALL_BYTES)

    const remove = await ks(['passwd', '--remove'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'third'}})
    assertRun(remove, {code: 0, stderr: '', stdout: `Password removed from ${file}; it is now obfuscated only.\n`})
    assert.deepEqual(await inspectKeystore(file), {format: 'native', passwordProtected: false})
    assert.deepEqual((await openKeystore(file)).get('ALL_BYTES'), ALL_BYTES)
    assert.equal(modeOf(file), 0o600)
    assert.deepEqual(namesIn(path.dirname(file)), ['apm-server.keystore', 'apm-server.keystore.audit'])
  })

  it('--remove: --json shape; on a keystore without a password it is a no-op that says so', async () => {
    await updateKeystore(file, {}, (keystore) => keystore.setPassword(Buffer.from('pw'), CHEAP_KDF))
    const removed = await ks(['passwd', '--remove', '--json'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}})
    assertRun(removed, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(removed.stdout), {passwordProtected: false, path: file})
    const before = readFileSync(file)
    assertRun(await ks(['passwd', '--remove']), {code: 0, stderr: '', stdout: `Keystore ${file} has no password; nothing to remove.\n`})
    assert.deepEqual(readFileSync(file), before)
  })

  it('failures change nothing: wrong or missing current password, empty new password, no terminal, both flags', async () => {
    await updateKeystore(file, {}, (keystore) => keystore.setPassword(Buffer.from('pw'), CHEAP_KDF))
    const before = readFileSync(file)
    const [wrong, noCurrent, empty, emptyLine, noTerminal, both, removeWrong] = await Promise.all([
      ks(['passwd', '--stdin'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'bad'}, input: 'new\n'}),
      ks(['passwd', '--stdin'], {input: 'new\n'}),
      ks(['passwd', '--stdin'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}, input: ''}),
      ks(['passwd', '--stdin', '--json'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}, input: '\nsecond\n'}),
      ks(['passwd'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}}),
      ks(['passwd', '--stdin', '--remove'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}}),
      ks(['passwd', '--remove'], {env: {APM_SERVER_KEYSTORE_PASSWORD: 'bad'}}),
    ])
    assertFailure(wrong, 1, 'EDECRYPT', `${file}: wrong password or keystore file tampered with`)
    assertFailure(
      noCurrent,
      1,
      'ENOPASSWORD',
      'the keystore is password protected and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
    )
    assertFailure(empty, 1, 'EPASSWORD', 'the new password on stdin is empty; give it as the first line')
    assertFailure(emptyLine, 1, 'EPASSWORD', 'the new password on stdin is empty; give it as the first line', true)
    assertFailure(noTerminal, 2, 'EUSAGE', 'no terminal to ask for the new password; give it with --stdin, or use --remove')
    assert.equal(both.code, 2, both.stderr)
    assert.match(both.stderr, /^error: .*--remove.*; see --help\n$/)
    assertFailure(removeWrong, 1, 'EDECRYPT', `${file}: wrong password or keystore file tampered with`)
    assert.deepEqual(readFileSync(file), before)
  })

  it('beats-v1: EUNSUPPORTED pointing at upgrade; no keystore: ENOKEYSTORE', async () => {
    const beats = path.join(tmp.dir, 'beats')
    await createKeystore(path.join(beats, 'apm-server.keystore'), {format: 'beats-v1'})
    const [onBeats, none] = await Promise.all([
      ks(['passwd', '--stdin', '--path.data', beats], {input: 'pw\n'}),
      ks(['passwd', '--stdin', '--path.data', 'none'], {input: 'pw\n'}),
    ])
    assertFailure(
      onBeats,
      1,
      'EUNSUPPORTED',
      `keystore ${path.join(beats, 'apm-server.keystore')} is in Beats v1 format, which cannot hold a password; run "apm-server keystore upgrade" first`,
    )
    assertFailure(
      none,
      1,
      'ENOKEYSTORE',
      `no keystore at ${path.join(tmp.dir, 'none', 'apm-server.keystore')}; create one with "apm-server keystore create --password"`,
    )
  })
})
