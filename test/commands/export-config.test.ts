import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {makeTempDir, runCli} from '../helpers/cli.js'
import {assertRun, CHEAP_KDF, defaultKeystore, passwordOf} from '../helpers/keystore.js'

const PASSWORD = 'correct horse'
/** Values stored in the keystore: none may ever be printed. */
const SECRETS: Record<string, string> = {
  APM_TOKEN: 'tok-Sup3r-s3cret-value',
  HOST_SECRET: 'internal-host.example:8200',
  ORIGIN_SECRET: 'https://hidden-origin.example',
  PASSPHRASE: 'key-passphrase-value',
  SIZE_SECRET: '0x1F',
}

describe('apm-server export config', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let cwd: string
  let configFile: string
  const env = {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD, ENV_ORIGIN: 'https://env-origin.example', ENV_TOKEN: 'env-token-value'}
  beforeEach(async () => {
    tmp = makeTempDir('apm-export-config-')
    cwd = tmp.dir
    configFile = path.join(cwd, 'apm-server.yml')
    const file = defaultKeystore(cwd)
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from(PASSWORD)})
    await updateKeystore(file, {password: passwordOf(PASSWORD)}, (keystore) => {
      for (const [name, value] of Object.entries(SECRETS)) keystore.set(name, Buffer.from(value))
    })
  })
  afterEach(() => tmp.cleanup())

  const assertNoSecret = (result: {stdout: string; stderr: string}) => {
    for (const secret of [...Object.values(SECRETS), PASSWORD, env.ENV_TOKEN]) {
      assert.ok(!result.stdout.includes(secret) && !result.stderr.includes(secret), `printed: ${secret}`)
    }
  }

  const CONFIG = [
    'apm-server:',
    '  host: ${HOST_SECRET}',
    '  auth:',
    '    secret_token: ${APM_TOKEN}',
    '  rum:',
    '    enabled: true',
    '    allow_origins: ["${ORIGIN_SECRET}", "${ENV_ORIGIN}", "https://plain.example"]',
    '  ssl.key_passphrase: ${PASSPHRASE}',
    'output.file.path: "${path.data}/events"',
    'custom:',
    '  mixed: "prefix-${APM_TOKEN}"',
    '  from_env: ${ENV_ORIGIN}',
    '  password: ${ENV_TOKEN}', // from the environment, but its name says secret
    '  escaped: "$${APM_TOKEN}"',
    '',
  ].join('\n')

  it('prints the resolved config as YAML with every keystore value (and every secret-named setting) redacted', async () => {
    writeFileSync(configFile, CONFIG)
    const result = await runCli(['export', 'config', '-E', 'apm-server.max_event_size=1000'], {cwd, env})
    assertRun(result, {
      code: 0,
      stderr: [
        `warning: ${configFile}:11: unknown setting custom.mixed is ignored; check its spelling`,
        `warning: ${configFile}:12: unknown setting custom.from_env is ignored; check its spelling`,
        `warning: ${configFile}:13: unknown setting custom.password is ignored; check its spelling`,
        `warning: ${configFile}:14: unknown setting custom.escaped is ignored; check its spelling`,
        '',
      ].join('\n'),
      stdout: [
        'apm-server:',
        '  host: "[redacted]"',
        '  auth:',
        '    secret_token: "[redacted]"',
        '  rum:',
        '    enabled: true',
        '    allow_origins:',
        '      - "[redacted]"',
        '      - https://env-origin.example',
        '      - https://plain.example',
        '  ssl:',
        '    key_passphrase: "[redacted]"',
        '  max_event_size: 1000',
        'output:',
        '  file:',
        `    path: ${path.join(cwd, 'data', 'events')}`,
        'custom:',
        '  mixed: "[redacted]"',
        '  from_env: https://env-origin.example',
        '  password: "[redacted]"',
        '  escaped: ${APM_TOKEN}',
        '',
      ].join('\n'),
    })
    assertNoSecret(result)
  })

  it('prints the same tree with --json', async () => {
    writeFileSync(configFile, CONFIG)
    const result = await runCli(['export', 'config', '--json'], {cwd, env})
    assert.equal(result.code, 0, result.stderr)
    assert.deepEqual(JSON.parse(result.stdout), {
      'apm-server': {
        auth: {secret_token: '[redacted]'},
        host: '[redacted]',
        rum: {allow_origins: ['[redacted]', 'https://env-origin.example', 'https://plain.example'], enabled: true},
        ssl: {key_passphrase: '[redacted]'},
      },
      custom: {escaped: '${APM_TOKEN}', from_env: 'https://env-origin.example', mixed: '[redacted]', password: '[redacted]'},
      output: {file: {path: path.join(cwd, 'data', 'events')}},
    })
    assertNoSecret(result)
  })

  it('prints an empty mapping without a config file', async () => {
    assertRun(await runCli(['export', 'config'], {cwd}), {code: 0, stderr: '', stdout: '{}\n'})
  })

  it('prints problems, never a keystore value, and exits 1', async () => {
    // keystore values that are wrong for their settings: the problems must not show them
    writeFileSync(configFile, 'apm-server.max_event_size: ${SIZE_SECRET}\napm-server.rum.enabled: ${APM_TOKEN}\napm-server.auth.secret_token: ${MISSING}\n')
    const expected = [
      `${configFile}:1: apm-server.max_event_size: must be a whole number from 1 to 9007199254740991`,
      `${configFile}:2: apm-server.rum.enabled: must be true or false`,
      `${configFile}:3: apm-server.auth.secret_token: \${MISSING} is not set in the keystore or the environment; add it with "apm-server keystore add MISSING" or set the environment variable MISSING`,
    ]
    const result = await runCli(['export', 'config'], {cwd, env})
    assertRun(result, {code: 1, stderr: expected.map((line) => `error: ${line}\n`).join(''), stdout: ''})
    assertNoSecret(result)
    const json = await runCli(['export', 'config', '--json'], {cwd, env})
    assert.equal(json.code, 1)
    assert.deepEqual(JSON.parse(json.stdout), {error: {code: 'ECONFIG', message: `3 configuration problems:\n${expected.join('\n')}`, problems: expected}})
    assertNoSecret(json)
  })

  it('with a wrong keystore password: the keystore problem, exit 1, nothing printed on stdout', async () => {
    writeFileSync(configFile, CONFIG)
    const result = await runCli(['export', 'config'], {cwd, env: {...env, APM_SERVER_KEYSTORE_PASSWORD: 'wrong'}})
    assert.equal(result.code, 1)
    assert.equal(result.stdout, '')
    assert.match(result.stderr, /^error: .*: wrong password or keystore file tampered with; check the password in APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE\n$/m)
    assertNoSecret(result)
  })
})
