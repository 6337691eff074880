import assert from 'node:assert/strict'
import {chmodSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {makeTempDir, runCli} from '../helpers/cli.js'
import {assertRun, CHEAP_KDF, defaultKeystore, passwordOf} from '../helpers/keystore.js'

const TOKEN = 'tok-Sup3r-s3cret-value'
const PASSWORD = 'correct horse'

describe('apm-server test config', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let cwd: string
  let configFile: string
  beforeEach(() => {
    tmp = makeTempDir('apm-test-config-')
    cwd = tmp.dir
    configFile = path.join(cwd, 'apm-server.yml')
  })
  afterEach(() => tmp.cleanup())

  const makeKeystore = async (password?: string) => {
    const file = defaultKeystore(cwd)
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, ...(password ? {password: Buffer.from(password)} : {})})
    await updateKeystore(file, {password: passwordOf(password ?? '')}, (keystore) => keystore.set('APM_TOKEN', Buffer.from(TOKEN)))
  }

  const assertNoSecret = (result: {stdout: string; stderr: string}) => {
    assert.ok(!result.stdout.includes(TOKEN) && !result.stderr.includes(TOKEN), 'the token was printed')
    assert.ok(!result.stdout.includes(PASSWORD) && !result.stderr.includes(PASSWORD), 'the password was printed')
  }

  it('prints "Config OK" without a config file', async () => {
    assertRun(await runCli(['test', 'config'], {cwd}), {code: 0, stderr: '', stdout: 'Config OK\n'})
  })

  it('resolves a token from a password-protected keystore and prints "Config OK", warnings on stderr', async () => {
    await makeKeystore(PASSWORD)
    writeFileSync(configFile, 'apm-server:\n  secret_token: ${APM_TOKEN}\n  hots: typo\n')
    const result = await runCli(['test', 'config'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD}})
    assertRun(result, {
      code: 0,
      stderr:
        `warning: ${configFile}:2: apm-server.secret_token is deprecated (Elastic's apm-server 8 ignores it and runs without authentication); move it to apm-server.auth.secret_token\n` +
        `warning: ${configFile}:3: unknown setting apm-server.hots is ignored; check its spelling\n`,
      stdout: 'Config OK\n',
    })
    const json = await runCli(['test', 'config', '--json'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD}})
    assert.equal(json.code, 0)
    assert.deepEqual(JSON.parse(json.stdout), {
      ok: true,
      problems: [],
      warnings: [
        `${configFile}:2: apm-server.secret_token is deprecated (Elastic's apm-server 8 ignores it and runs without authentication); move it to apm-server.auth.secret_token`,
        `${configFile}:3: unknown setting apm-server.hots is ignored; check its spelling`,
      ],
    })
  })

  it('prints every problem, one per line on stderr, and exits 1', async () => {
    await makeKeystore()
    writeFileSync(
      configFile,
      'apm-server.auth.secret_token: "${APM_TOKEN}${SUFFIX}"\napm-server.max_event_size: ${APM_TOKEN}\napm-server.auth.secret_token_grace_period: 10x\n',
    )
    const expected = [
      `${configFile}:1: apm-server.auth.secret_token: \${SUFFIX} is not set in the keystore or the environment; add it with "apm-server keystore add SUFFIX" or set the environment variable SUFFIX`,
      `${configFile}:2: apm-server.max_event_size: must be a whole number from 1 to 9007199254740991`,
      `${configFile}:3: apm-server.auth.secret_token_grace_period: must be a duration such as 60s, 10m, 1h or 500ms (or 0)`,
      '-E apm-server.host: apm-server.host: must be host:port with a port from 0 to 65535 (0 picks a free port), e.g. localhost:8200',
    ]
    const result = await runCli(['test', 'config', '-E', 'apm-server.host=nohost'], {cwd})
    assertRun(result, {code: 1, stderr: expected.map((line) => `error: ${line}\n`).join(''), stdout: ''})
    assertNoSecret(result)
    const json = await runCli(['test', 'config', '-E', 'apm-server.host=nohost', '--json'], {cwd})
    assert.equal(json.code, 1)
    assert.deepEqual(JSON.parse(json.stdout), {ok: false, problems: expected, warnings: []})
    assertNoSecret(json)
  })

  it('reports keystore password problems as such', async () => {
    await makeKeystore(PASSWORD)
    writeFileSync(configFile, 'apm-server.auth.secret_token: ${APM_TOKEN}\n')
    const keystore = defaultKeystore(cwd)
    const wrong = await runCli(['test', 'config'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: 'wrong'}})
    assertRun(wrong, {
      code: 1,
      stderr: `error: ${keystore}: wrong password or keystore file tampered with; check the password in APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE\n`,
      stdout: '',
    })
    const none = await runCli(['test', 'config'], {cwd})
    assertRun(none, {
      code: 1,
      stderr: 'error: the keystore is password protected and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE\n',
      stdout: '',
    })
    assertNoSecret(wrong)
  })

  it('fails closed on an empty token, and honours --strict.perms', async () => {
    await makeKeystore()
    chmodSync(defaultKeystore(cwd), 0o640)
    writeFileSync(configFile, 'apm-server.auth.secret_token: ${APM_TOKEN}\n')
    const open = await runCli(['test', 'config'], {cwd})
    assert.equal(open.code, 1)
    assert.match(open.stderr, /^error: keystore .* has mode 0640, open to group or others/)
    assertRun(await runCli(['test', 'config', '--strict.perms=false'], {cwd}), {code: 0, stderr: '', stdout: 'Config OK\n'})
    assertRun(await runCli(['test', 'config', '-E', 'apm-server.auth.secret_token='], {cwd}), {
      code: 1,
      stderr:
        'error: -E apm-server.auth.secret_token: apm-server.auth.secret_token: is set but empty, so the server would accept data without authentication; ' +
        'give it a token (e.g. "${APM_SECRET_TOKEN}" from the keystore) or remove the setting\n',
      stdout: '',
    })
  })

  it('treats a malformed -E as a usage error (exit 2)', async () => {
    assertRun(await runCli(['test', 'config', '-E', 'apm-server.host'], {cwd}), {
      code: 2,
      stderr: 'error: -E number 1 is not key=value; write -E setting.name=value (e.g. -E apm-server.host=localhost:8200)\n',
      stdout: '',
    })
  })

  it('reads the file named by -c and the overrides given with --E', async () => {
    writeFileSync(path.join(cwd, 'other.yml'), 'apm-server.host: ${HOST}\n')
    assertRun(await runCli(['test', 'config', '-c', 'other.yml', '--E', 'apm-server.rum.enabled=true', '-E', 'logging.level=debug'], {cwd, env: {HOST: 'localhost:0'}}), {
      code: 0,
      stderr: '',
      stdout: 'Config OK\n',
    })
    assertRun(await runCli(['test', 'config', '-c', 'missing.yml'], {cwd}), {
      code: 1,
      stderr: `error: config file ${path.join(cwd, 'missing.yml')} does not exist; check the -c/--config path\n`,
      stdout: '',
    })
  })

  it('--explain: the keystore (path, format, protection, owner, mode) and every ${KEY} with its setting, file:line and source; never a value', async () => {
    await makeKeystore(PASSWORD)
    writeFileSync(configFile, 'apm-server:\n  host: "${HOST:localhost:8200}"\n  auth.secret_token: "${APM_TOKEN}"\n  rum.allow_origins: ["${ORIGIN}"]\n  ssl.key_passphrase: "${NOWHERE}"\n')
    const keystore = defaultKeystore(cwd)
    const uid = process.getuid!()
    const owner = uid === 0 ? 'root (uid 0)' : `${os.userInfo().username} (uid ${uid})`
    const env = {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD, APM_TOKEN: 'env-token', ORIGIN: 'https://o.example'}
    const result = await runCli(['test', 'config', '--explain'], {cwd, env})
    assertRun(result, {
      code: 1,
      stderr:
        `warning: ${configFile}:3: apm-server.auth.secret_token: \${APM_TOKEN} is set in both the keystore and the environment; the keystore's value is used (as in Beats): remove the one you do not mean\n` +
        `error: ${configFile}:5: apm-server.ssl.key_passphrase: \${NOWHERE} is not set in the keystore or the environment; add it with "apm-server keystore add NOWHERE" or set the environment variable NOWHERE\n`,
      stdout: [
        `Keystore ${keystore}: native version 2, password protected, owner ${owner}, mode 0600`,
        `\${HOST} in apm-server.host at ${configFile}:2: from its default (the reference's \${KEY:default})`,
        `\${APM_TOKEN} in apm-server.auth.secret_token at ${configFile}:3: from the keystore (also set in the environment; the keystore wins)`,
        `\${ORIGIN} in apm-server.rum.allow_origins[0] at ${configFile}:4: from the environment`,
        `\${NOWHERE} in apm-server.ssl.key_passphrase at ${configFile}:5: from nowhere (missing)`,
        '',
      ].join('\n'),
    })
    assertNoSecret(result)
    const json = await runCli(['test', 'config', '--explain', '--json'], {cwd, env})
    assert.equal(json.code, 1)
    const {explain} = JSON.parse(json.stdout)
    assert.deepEqual(explain.keystore, {exists: true, format: 'native', mode: '0600', passwordProtected: true, path: keystore, uid, user: owner.split(' ')[0], version: 2})
    assert.deepEqual(explain.references[1], {alsoInEnvironment: true, expires: null, key: 'APM_TOKEN', setting: 'apm-server.auth.secret_token', source: 'keystore', where: `${configFile}:3`})
    assertNoSecret(json)
    assert.equal(json.stdout.includes('env-token'), false)

    const without = await runCli(['test', 'config', '--explain', '--path.data', path.join(cwd, 'none')], {cwd, env: {HOST: 'localhost:0', NOWHERE: 'x', ORIGIN: 'o'}})
    assert.equal(without.stdout.split('\n')[0], `Keystore ${path.join(cwd, 'none', 'apm-server.keystore')}: none (references look in the environment only)`)
  })
})
