import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {chmodSync, chownSync, mkdirSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {KeystoreError} from '../../src/core/errors.js'
import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {resolvePaths} from '../../src/core/settings.js'
import {MAX_UNKNOWN_WARNINGS} from '../../src/server/config/build.js'
import {loadServerConfig} from '../../src/server/config/load.js'
import {reloadRefusals} from '../../src/server/config/policy.js'
import {ConfigError, LoadOptions, MAX_LISTED_NOTES, ServerConfig} from '../../src/server/config/server-config.js'
import {parseDuration} from '../../src/server/config/settings.js'
import {MAX_CONFIG_BYTES, MAX_SETTINGS} from '../../src/server/config/sources.js'
import {makeTempDir} from '../helpers/cli.js'
import {assertKeystoreError, CHEAP_KDF, noPasswordExpected, passwordOf} from '../helpers/keystore.js'

const PASSWORD = 'correct horse'
const TOKEN_SETTING = 'apm-server.auth.secret_token'

/** Keystore values the tests look for in every output: none may ever appear in a problem or a warning. */
const SECRETS = {
  KS_BOOL: 'true',
  KS_HEX: '0x1F',
  KS_LIST: '1,2',
  KS_SPACED: ' spaced ',
  KS_TOKEN: 'tok-Sup3r-s3cret',
  SHARED: 'from-the-keystore',
}

describe('server/config', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let home: string
  let keystoreFile: string
  beforeEach(() => {
    tmp = makeTempDir('apm-config-test-')
    home = tmp.dir
    keystoreFile = path.join(home, 'data', 'apm-server.keystore')
  })
  afterEach(() => tmp.cleanup())

  const writeConfig = (text: string, name = 'apm-server.yml') => {
    const file = path.join(home, name)
    mkdirSync(path.dirname(file), {recursive: true})
    writeFileSync(file, text)
    return file
  }

  const makeKeystore = async (entries: Record<string, Buffer | string> = SECRETS, password?: string, file = keystoreFile) => {
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, ...(password ? {password: Buffer.from(password)} : {})})
    await updateKeystore(file, {password: passwordOf(password ?? '')}, (keystore) => {
      for (const [name, value] of Object.entries(entries)) keystore.set(name, Buffer.from(value))
    })
  }

  const load = (options: Partial<LoadOptions> = {}) =>
    loadServerConfig({cwd: home, env: {}, flags: {}, overrides: [], password: noPasswordExpected(), ...options})

  const problemsOf = async (options: Partial<LoadOptions> = {}): Promise<ConfigError> => {
    const error = await assertKeystoreError(load(options), 'ECONFIG')
    assert.ok(error instanceof ConfigError)
    for (const line of [...error.problems, ...error.warnings, error.message]) {
      for (const secret of Object.values(SECRETS)) if (secret.length > 4) assert.ok(!line.includes(secret), `a secret in: ${line}`)
    }

    return error
  }

  const defaults = (): ServerConfig => ({
    anonymous: {allowAgent: ['rum-js', 'js-base'], allowService: [], enabled: false, rateLimit: {eventLimit: 300, ipLimit: 1000}},
    host: 'localhost:8200',
    maxEventSize: 307_200,
    output: {filename: 'apm-server', numberOfFiles: 7, path: path.join(home, 'data', 'apm-server'), rotateEveryKb: 10_240},
    paths: {config: home, data: path.join(home, 'data'), home, logs: path.join(home, 'logs')},
    rum: {allowOrigins: ['*'], enabled: false},
    secretTokenGracePeriodMs: 0,
    ssl: {enabled: false},
  })

  it('without a config file: the defaults, no warnings, and the keystore is not opened', async () => {
    await makeKeystore(SECRETS, PASSWORD)
    const loaded = await load()
    assert.deepEqual(loaded, {config: defaults(), file: path.join(home, 'apm-server.yml'), fileState: 'missing', keystore: keystoreFile, keystoreKeys: [], redacted: {}, references: [], warnings: []})
  })

  it('reads every known setting, nested or dotted', async () => {
    mkdirSync(path.join(home, 'conf'))
    writeFileSync(path.join(home, 'conf', 'cert.pem'), 'cert')
    writeFileSync(path.join(home, 'conf', 'key.pem'), 'key')
    const file = writeConfig(
      [
        'apm-server:',
        '  host: "127.0.0.1:0"',
        '  auth:',
        '    secret_token: abc',
        '    secret_token_grace_period: 1m30s',
        '    anonymous:',
        '      enabled: false',
        '      allow_agent: [rum-js]',
        '      allow_service: [shop, cart]',
        '      rate_limit: {event_limit: 10, ip_limit: 20}',
        '  ssl.enabled: true',
        '  ssl.certificate: cert.pem',
        '  ssl.key: key.pem',
        '  ssl.key_passphrase: "007"',
        '  rum: {enabled: true, allow_origins: ["https://shop.example"]}',
        '  max_event_size: 1000',
        'output.file:',
        '  path: out',
        '  filename: events',
        '  rotate_every_kb: 100',
        '  number_of_files: 2',
        'path.config: conf',
        'logging.level: debug',
        '',
      ].join('\n'),
    )
    const {config, file: found, warnings} = await load()
    assert.equal(found, file)
    assert.deepEqual(warnings, [])
    assert.deepEqual(config, {
      anonymous: {allowAgent: ['rum-js'], allowService: ['shop', 'cart'], enabled: false, rateLimit: {eventLimit: 10, ipLimit: 20}},
      host: '127.0.0.1:0',
      logLevel: 'debug',
      maxEventSize: 1000,
      output: {filename: 'events', numberOfFiles: 2, path: path.join(home, 'out'), rotateEveryKb: 100},
      paths: {config: path.join(home, 'conf'), data: path.join(home, 'data'), home, logs: path.join(home, 'logs')},
      rum: {allowOrigins: ['https://shop.example'], enabled: true},
      secretToken: 'abc',
      secretTokenGracePeriodMs: 90_000,
      ssl: {certificate: path.join(home, 'conf', 'cert.pem'), enabled: true, key: path.join(home, 'conf', 'key.pem'), keyPassphrase: '007'},
    })
  })

  it('turns on anonymous access by default when RUM and a secret token are both on, as Elastic does', async () => {
    writeConfig('apm-server.rum.enabled: true\napm-server.auth.secret_token: abc\n')
    assert.equal((await load()).config.anonymous.enabled, true)
    writeConfig('apm-server.rum.enabled: true\n')
    assert.equal((await load()).config.anonymous.enabled, false)
  })

  describe('references', () => {
    it('resolves from the keystore, then the environment; keystore values are never coerced', async () => {
      await makeKeystore(SECRETS, PASSWORD)
      writeConfig(
        [
          'apm-server.auth.secret_token: ${KS_HEX}', // 0x1F stays "0x1F", not 31
          'apm-server.auth.anonymous.allow_agent: ${KS_LIST}', // one item, never split on the comma
          'apm-server.auth.anonymous.allow_service: ["${KS_SPACED}"]', // never trimmed
          'apm-server.rum.enabled: ${KS_BOOL}', // "true" read by a boolean setting
          'apm-server.ssl.key_passphrase: "${SHARED}"', // in the keystore and the environment: the keystore wins
          'logging.level: ${LEVEL}', // only in the environment
          'apm-server.host: "${EMPTY:localhost}:${PORT:8201}"', // an empty variable counts as unset
          'output.file.path: ${path.data}/events',
          '',
        ].join('\n'),
      )
      const {config, redacted} = await load({env: {EMPTY: '', LEVEL: 'warning', SHARED: 'from-the-environment'}, password: passwordOf(PASSWORD)})
      assert.equal(config.secretToken, '0x1F')
      assert.deepEqual(config.anonymous.allowAgent, ['1,2'])
      assert.deepEqual(config.anonymous.allowService, [' spaced '])
      assert.equal(config.rum.enabled, true)
      assert.equal(config.ssl.keyPassphrase, 'from-the-keystore')
      assert.equal(config.logLevel, 'warning')
      assert.equal(config.host, 'localhost:8201')
      assert.equal(config.output.path, path.join(home, 'data', 'events'))
      assert.deepEqual(redacted, {
        'apm-server': {
          auth: {anonymous: {allow_agent: '[redacted]', allow_service: ['[redacted]']}, secret_token: '[redacted]'},
          host: 'localhost:8201',
          rum: {enabled: '[redacted]'},
          ssl: {key_passphrase: '[redacted]'},
        },
        logging: {level: 'warning'},
        output: {file: {path: path.join(home, 'data', 'events')}},
      })
    })

    it('keeps a whole-scalar reference a string, and plain YAML numbers in string settings as written', async () => {
      writeConfig('apm-server.auth.secret_token: 00123\napm-server.max_event_size: ${SIZE}\ncustom.size: ${SIZE}\n')
      const {config, redacted} = await load({env: {SIZE: '2048'}})
      assert.equal(config.secretToken, '00123')
      assert.equal(config.maxEventSize, 2048)
      assert.deepEqual(redacted, {'apm-server': {auth: {secret_token: '[redacted]'}, max_event_size: '2048'}, custom: {size: '2048'}})
    })

    it('reports every unresolved reference at once, with file, line and setting', async () => {
      await makeKeystore(SECRETS)
      const file = writeConfig(
        [
          'apm-server:',
          '  auth.secret_token: ${APM_TOKEN}',
          '  host: "${HOST}:${PORT:?set PORT to the port to listen on}"',
          '  rum:',
          '    allow_origins:',
          '      - https://ok.example',
          '      - ${ORIGIN}',
          'output.file.filename: ${A_${KS_TOKEN}}',
          'custom.broken: "${UNCLOSED"',
          'custom.empty: ${}',
          '',
        ].join('\n'),
      )
      const error = await problemsOf()
      assert.deepEqual(error.problems, [
        `${file}:2: apm-server.auth.secret_token: \${APM_TOKEN} is not set in the keystore or the environment; add it with "apm-server keystore add APM_TOKEN" or set the environment variable APM_TOKEN`,
        `${file}:3: apm-server.host: \${HOST} is not set in the keystore or the environment; add it with "apm-server keystore add HOST" or set the environment variable HOST`,
        `${file}:3: apm-server.host: set PORT to the port to listen on (\${PORT:?set PORT to the port to listen on} is not set)`,
        `${file}:7: apm-server.rum.allow_origins[1]: \${ORIGIN} is not set in the keystore or the environment; add it with "apm-server keystore add ORIGIN" or set the environment variable ORIGIN`,
        `${file}:8: output.file.filename: \${A_\${KS_TOKEN}} is not set in the keystore or the environment; check the keys its name is built from`,
        `${file}:9: custom.broken: unclosed reference at character 1; add the closing "}" (write "$$" for a literal "$")`,
        `${file}:10: custom.empty: reference at character 1 has no key name; write \${KEY}`,
      ])
      assert.equal(error.message, `7 configuration problems:\n${error.problems.join('\n')}`)
      assert.deepEqual(error.warnings, [`${file}:9: unknown setting custom.broken is ignored; check its spelling`, `${file}:10: unknown setting custom.empty is ignored; check its spelling`])
    })

    it('resolves path settings from the environment and ${path.*} only, before the keystore', async () => {
      await makeKeystore({DATA_DIR: '/nowhere'})
      writeConfig('path.data: ${DATA_DIR}\nkeystore.path: ${path.data}/ks\n')
      assert.equal((await load({env: {DATA_DIR: path.join(home, 'd')}})).keystore, path.join(home, 'd', 'ks'))
      const file = path.join(home, 'apm-server.yml')
      assert.deepEqual((await problemsOf()).problems, [
        `${file}:1: path.data: \${DATA_DIR} is not set in the environment (path settings are resolved before the keystore is opened); set the environment variable DATA_DIR`,
      ])
    })

    it('finds the config file and the keystore where the keystore commands do', async () => {
      mkdirSync(path.join(home, 'etc'))
      writeConfig('keystore.path: ${path.data}/secrets/ks\npath.data: var\n', 'etc/custom.yml')
      writeConfig('path.home: elsewhere\n')
      const cases: LoadOptions['flags'][] = [{}, {'path.home': 'h'}, {'path.config': 'etc', config: 'custom.yml'}, {'path.home': '.', 'path.data': 'd'}, {config: 'etc/custom.yml'}]
      for (const flags of cases) {
        // eslint-disable-next-line no-await-in-loop -- one case at a time
        const [ours, theirs] = await Promise.all([load({flags}), resolvePaths(flags, home)])
        assert.equal(ours.file, theirs.configFile, JSON.stringify(flags))
        assert.equal(ours.keystore, theirs.keystore, JSON.stringify(flags))
        assert.deepEqual([ours.config.paths.home, ours.config.paths.config, ours.config.paths.data], [theirs.home, theirs.config, theirs.data], JSON.stringify(flags))
      }
    })
  })

  describe('the keystore', () => {
    it('is opened only when a reference needs it, and then once', async () => {
      await makeKeystore(SECRETS, PASSWORD)
      writeConfig('apm-server.host: localhost:8200\noutput.file.path: ${path.data}/x\n')
      await load() // noPasswordExpected: the keystore is never opened
      writeConfig('apm-server.auth.secret_token: ${KS_TOKEN}\napm-server.ssl.key_passphrase: ${SHARED}\nlogging.level: ${LEVEL:info}\n')
      let asked = 0
      const {config} = await load({
        password: async () => {
          asked++
          return Buffer.from(PASSWORD)
        },
      })
      assert.equal(asked, 1)
      assert.equal(config.secretToken, SECRETS.KS_TOKEN)
    })

    // fix-net L3: output.file.path "<shared>/loot/${APM_SECRET_TOKEN}" made the token a directory name others could list.
    it('never takes output.file.path or output.file.filename from the keystore: the server creates those names; the environment is fine', async () => {
      await makeKeystore(SECRETS)
      const file = writeConfig('output.file.path: /tmp/loot/${KS_TOKEN}\noutput.file.filename: "${SHARED}"\n')
      const fix = 'takes a value from the keystore, but the server creates that name in the file system, where other users may list it; write the path in the config file or the environment instead'
      assert.deepEqual((await problemsOf()).problems, [`${file}:1: output.file.path: ${fix}`, `${file}:2: output.file.filename: ${fix}`])
      const {config} = await load({env: {KS_TOKEN_DIR: 'events'}, overrides: ['output.file.path=${path.data}/${KS_TOKEN_DIR}', 'output.file.filename=apm']})
      assert.deepEqual([config.output.path, config.output.filename], [path.join(home, 'data', 'events'), 'apm'])
    })

    it('a missing keystore holds no keys: references fall through to the environment', async () => {
      writeConfig('apm-server.auth.secret_token: ${APM_TOKEN}\n')
      assert.equal((await load({env: {APM_TOKEN: 'from-env'}})).config.secretToken, 'from-env')
    })

    it('keeps a value exactly as stored, byte-order mark included; a value that is not UTF-8 is a problem', async () => {
      await makeKeystore({BINARY: Buffer.from([0xff, 0xfe, 0x00]), BOM: Buffer.from('\uFEFFtok', 'utf8')})
      const file = writeConfig('apm-server.auth.secret_token: ${BOM}\noutput.file.filename: ${BINARY}\n')
      assert.deepEqual((await problemsOf()).problems, [
        `${file}:2: output.file.filename: \${BINARY}: the keystore value of BINARY is not UTF-8 text; store the value as text`,
      ])
      writeConfig('apm-server.auth.secret_token: ${BOM}\n')
      assert.equal((await load()).config.secretToken, '\uFEFFtok')
    })
  })

  describe('fails closed', () => {
    // fix-net L3: a planted ./apm-server.yml (another user, a directory they can write) was trusted by run.
    for (const mode of [0o664, 0o646, 0o666]) {
      it(`refuses a config file of mode 0${mode.toString(8)} (writable by group or others) under strict perms, naming the fix`, async () => {
        const file = writeConfig('apm-server.host: "127.0.0.1:0"\n')
        chmodSync(file, mode)
        assert.deepEqual((await problemsOf()).problems, [
          `config file ${file} has mode 0${mode.toString(8)}, writable by group or others; run "chmod go-w ${file}" (--strict.perms=false disables this check)`,
        ])
        assert.equal((await load({strictPerms: false})).config.host, '127.0.0.1:0')
        assert.equal((await load({env: {BEAT_STRICT_PERMS: 'false'}})).config.host, '127.0.0.1:0')
        assert.equal((await load({flags: {'strict.perms': false}})).config.host, '127.0.0.1:0')
      })
    }

    it('refuses a config file owned by another user (not root) under strict perms, naming the owner', async function () {
      if (process.getuid?.() !== 0) this.skip()
      const file = writeConfig('apm-server.host: "127.0.0.1:0"\n')
      chownSync(file, 12_345, 12_345)
      assert.deepEqual((await problemsOf()).problems, [
        `config file ${file} is owned by uid 12345, not by the current user (uid 0) or root, and a config file decides where the keystore is and what is written where; check its contents, then run "chown 0 ${file}" (--strict.perms=false disables this check)`,
      ])
      assert.equal((await load({strictPerms: false})).config.host, '127.0.0.1:0')
    })

    it('fails a reload when the config file became writable by others', async () => {
      const file = writeConfig('apm-server.host: "127.0.0.1:0"\n')
      const running = await load()
      chmodSync(file, 0o666)
      assert.match((await problemsOf({reloadOf: running})).problems[0], /has mode 0666, writable by group or others/)
    })

    const table: Array<{title: string; yaml: string; overrides?: string[]; where: string; name: string}> = [
      {name: 'apm-server.auth.secret_token', title: 'an empty token', where: ':1', yaml: 'apm-server.auth.secret_token: ""\n'},
      {name: 'apm-server.auth.secret_token', title: 'a null token', where: ':2', yaml: 'apm-server.auth:\n  secret_token:\n'},
      {name: 'apm-server.auth.secret_token', title: 'a token resolving to an empty default', where: ':1', yaml: 'apm-server.auth.secret_token: ${APM_TOKEN:}\n'},
      {name: 'apm-server.auth.secret_token', overrides: ['apm-server.auth.secret_token='], title: 'an empty token from -E', where: '-E apm-server.auth.secret_token', yaml: 'apm-server.auth.secret_token: good\n'},
      {name: 'apm-server.secret_token', title: 'an empty legacy token', where: ':1', yaml: 'apm-server.secret_token: ""\n'},
    ]
    for (const {name, overrides = [], title, where, yaml} of table) {
      it(`refuses ${title}`, async () => {
        const file = writeConfig(yaml)
        const error = await problemsOf({overrides})
        assert.deepEqual(error.problems, [
          `${where.startsWith(':') ? file : ''}${where}: ${name}: is set but empty, so the server would accept data without authentication; give it a token (e.g. "\${APM_SECRET_TOKEN}" from the keystore) or remove the setting`,
        ])
      })
    }

    // stat, then readFile: a FIFO put at the path in between blocked the start (or a reload) for ever.
    it('refuses a config file that is a FIFO or a character device at once, naming what it is', async () => {
      const fifo = path.join(home, 'apm-server.yml')
      execFileSync('mkfifo', [fifo])
      assert.deepEqual((await problemsOf()).problems, [`config file ${fifo} is a FIFO, not a regular file; point -c/--config at a file`])
      assert.deepEqual((await problemsOf({flags: {config: '/dev/zero'}})).problems, [
        'config file /dev/zero is a character device, not a regular file; point -c/--config at a file',
      ])
    })

    it('refuses a token that does not resolve (one problem, not two)', async () => {
      const file = writeConfig('apm-server.auth.secret_token: ${APM_TOKEN}\n')
      assert.deepEqual((await problemsOf({env: {APM_TOKEN: ''}})).problems, [
        `${file}:1: apm-server.auth.secret_token: \${APM_TOKEN} is not set in the keystore or the environment; add it with "apm-server keystore add APM_TOKEN" or set the environment variable APM_TOKEN`,
      ])
    })

    const keystoreCases: Array<[string, () => Promise<void>, Partial<LoadOptions>, string, string]> = [
      [
        'a wrong keystore password',
        () => makeKeystore(SECRETS, PASSWORD),
        {password: passwordOf('wrong')},
        'EDECRYPT',
        '<ks>: wrong password or keystore file tampered with; check the password in APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
      ],
      [
        'no password for a protected keystore',
        () => makeKeystore(SECRETS, PASSWORD),
        {password: undefined},
        'ENOPASSWORD',
        'keystore <ks> is password protected; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
      ],
      [
        'a corrupted keystore',
        async () => {
          mkdirSync(path.dirname(keystoreFile), {recursive: true})
          writeFileSync(keystoreFile, 'this is not a keystore', {mode: 0o600})
        },
        {},
        'EFORMAT',
        '<ks>: not an apm-server keystore (bad magic)',
      ],
      [
        'a keystore open to others',
        async () => {
          await makeKeystore(SECRETS)
          chmodSync(keystoreFile, 0o644)
        },
        {},
        'EPERMS',
        'keystore <ks> has mode 0644, open to group or others; run "chmod 600 <ks>" (--strict.perms=false disables this check)',
      ],
    ]
    for (const [title, setup, options, code, message] of keystoreCases) {
      it(`refuses to start with ${title}, reporting the keystore problem as such`, async () => {
        await setup()
        const file = writeConfig('apm-server.auth.secret_token: ${KS_TOKEN}\napm-server.host: ${HOST:localhost:8200}\ncustom.x: "${BROKEN"\n')
        const error = await problemsOf(options)
        assert.equal(error.keystoreCode, code)
        assert.ok(error.cause instanceof KeystoreError)
        // what the keystore would have resolved is unknown: only the problems that do not depend on it, and the keystore's
        assert.deepEqual(error.problems, [
          `${file}:3: custom.x: unclosed reference at character 1; add the closing "}" (write "$$" for a literal "$")`,
          message.replaceAll('<ks>', keystoreFile),
        ])
      })
    }

    it('a keystore problem does not matter when no reference needs it', async () => {
      mkdirSync(path.dirname(keystoreFile), {recursive: true})
      writeFileSync(keystoreFile, 'this is not a keystore', {mode: 0o600})
      writeConfig('apm-server.auth.secret_token: literal-token\n')
      assert.equal((await load()).config.secretToken, 'literal-token')
    })

    it('passes a canceled password prompt through as ECANCELED', async () => {
      await makeKeystore(SECRETS, PASSWORD)
      writeConfig('apm-server.auth.secret_token: ${KS_TOKEN}\n')
      await assertKeystoreError(
        load({
          password: async () => {
            throw new KeystoreError('ECANCELED', 'canceled; nothing was changed')
          },
        }),
        'ECANCELED',
      )
    })
  })

  describe('the legacy apm-server.secret_token', () => {
    it('is honoured with a deprecation warning when apm-server.auth.secret_token is absent', async () => {
      const file = writeConfig('apm-server:\n  secret_token: old-token\n')
      const {config, redacted, warnings} = await load()
      assert.equal(config.secretToken, 'old-token')
      assert.deepEqual(warnings, [
        `${file}:2: apm-server.secret_token is deprecated (Elastic's apm-server 8 ignores it and runs without authentication); move it to apm-server.auth.secret_token`,
      ])
      assert.deepEqual(redacted, {'apm-server': {secret_token: '[redacted]'}})
    })

    it('is ignored, with a warning, when apm-server.auth.secret_token is set', async () => {
      const file = writeConfig('apm-server.secret_token: old-token\napm-server.auth.secret_token: new-token\n')
      const {config, warnings} = await load()
      assert.equal(config.secretToken, 'new-token')
      assert.deepEqual(warnings, [`${file}:1: apm-server.secret_token is ignored because apm-server.auth.secret_token is set; remove it`])
    })
  })

  describe('-E overrides and flags', () => {
    it('override the file; values are YAML and may hold references; a mapping is merged into the section', async () => {
      await makeKeystore(SECRETS)
      writeConfig('apm-server:\n  host: localhost:1\n  rum: {enabled: false, allow_origins: [a]}\noutput.file.path: /tmp/x\n')
      const {config, redacted} = await load({
        env: {ORIGIN: 'https://o.example'},
        overrides: [
          'apm-server.host=0.0.0.0:8200',
          'apm-server.rum={enabled: true}',
          'apm-server.max_event_size=1000',
          'apm-server.auth.secret_token=${KS_TOKEN}',
          'apm-server.auth.anonymous.allow_origins_typo=x',
          'apm-server.rum.allow_origins=["${ORIGIN}", "b=c"]',
        ],
      })
      assert.equal(config.host, '0.0.0.0:8200')
      assert.deepEqual(config.rum, {allowOrigins: ['https://o.example', 'b=c'], enabled: true})
      assert.equal(config.maxEventSize, 1000)
      assert.equal(config.secretToken, SECRETS.KS_TOKEN)
      assert.deepEqual(redacted, {
        'apm-server': {
          auth: {anonymous: {allow_origins_typo: 'x'}, secret_token: '[redacted]'},
          host: '0.0.0.0:8200',
          max_event_size: 1000,
          rum: {allow_origins: ['https://o.example', 'b=c'], enabled: true},
        },
        output: {file: {path: '/tmp/x'}},
      })
    })

    it('flags beat -E, which beats the file, for path settings too (and the keystore moves with them)', async () => {
      // --path.home decides where the file is found
      writeConfig('path.home: from-file\npath.data: from-file\npath.logs: from-file\n', 'from-flag/apm-server.yml')
      const {config, keystore, redacted} = await load({flags: {'path.home': 'from-flag'}, overrides: ['path.data=from-E', 'path.home=from-E']})
      assert.deepEqual(config.paths, {config: path.join(home, 'from-flag'), data: path.join(home, 'from-E'), home: path.join(home, 'from-flag'), logs: path.join(home, 'from-file')})
      assert.equal(keystore, path.join(home, 'from-E', 'apm-server.keystore'))
      assert.deepEqual(redacted, {path: {data: 'from-E', home: 'from-flag', logs: 'from-file'}})
    })

    it('name the -E in problems and warnings', async () => {
      const error = await problemsOf({overrides: ['apm-server.max_event_size=abc', 'apm-server.host=[unclosed', 'custom=${NOPE}']})
      assert.deepEqual(error.problems, ['-E apm-server.host: the value is not valid YAML (Flow sequence must end with a ]); quote it'])
      const second = await problemsOf({overrides: ['apm-server.max_event_size=abc', 'custom=${NOPE}']})
      // in the order the -E were given
      assert.deepEqual(second.problems, [
        '-E apm-server.max_event_size: apm-server.max_event_size: must be a whole number from 1 to 9007199254740991',
        '-E custom: custom: ${NOPE} is not set in the keystore or the environment; add it with "apm-server keystore add NOPE" or set the environment variable NOPE',
      ])
      assert.deepEqual(second.warnings, ['-E custom: unknown setting custom is ignored; check its spelling'])
    })

    const malformed = ['no-equals-sign', '=value', 'bad key=1', '.leading.dot=1', 'apm-server.auth.secret_token']
    for (const override of malformed) {
      it(`refuses -E ${JSON.stringify(override)} as a usage error, without echoing it`, async () => {
        await assertKeystoreError(load({overrides: ['a=1', override]}), 'EUSAGE', '-E number 2 is not key=value; write -E setting.name=value (e.g. -E apm-server.host=localhost:8200)')
      })
    }
  })

  describe('validation', () => {
    const table: Array<[string, string]> = [
      ['apm-server.host: localhost', 'apm-server.host: must be host:port with a port from 0 to 65535 (0 picks a free port), e.g. localhost:8200'],
      ['apm-server.host: "localhost:70000"', 'apm-server.host: must be host:port with a port from 0 to 65535 (0 picks a free port), e.g. localhost:8200'],
      ['apm-server.host: [a]', 'apm-server.host: must be a string'],
      ['apm-server.max_event_size: 0', 'apm-server.max_event_size: must be a whole number from 1 to 9007199254740991'],
      ['apm-server.max_event_size: 1.5', 'apm-server.max_event_size: must be a whole number from 1 to 9007199254740991'],
      ['apm-server.max_event_size: "-1"', 'apm-server.max_event_size: must be a whole number from 1 to 9007199254740991'],
      ['output.file.number_of_files: 1', 'output.file.number_of_files: must be a whole number from 2 to 1024'],
      ['output.file.rotate_every_kb: "0x10"', 'output.file.rotate_every_kb: must be a whole number from 1 to 9007199254740991'],
      ['apm-server.rum.enabled: yes', 'apm-server.rum.enabled: must be true or false'],
      ['apm-server.rum.allow_origins: [{a: 1}]', 'apm-server.rum.allow_origins: must be a list of strings'],
      ['apm-server.auth.secret_token_grace_period: 60', 'apm-server.auth.secret_token_grace_period: must be a duration such as 60s, 10m, 1h or 500ms (or 0)'],
      ['apm-server.auth.secret_token_grace_period: 10 minutes', 'apm-server.auth.secret_token_grace_period: must be a duration such as 60s, 10m, 1h or 500ms (or 0)'],
      ['apm-server.auth.secret_token: [a, b]', 'apm-server.auth.secret_token: must be a string'],
      ['logging.level: verbose', 'logging.level: must be one of debug, info, warning, error'],
      ['output.file.filename: a/b', 'output.file.filename: must be a file name without a directory; put the directory in output.file.path'],
      ['apm-server.ssl.key: "-----BEGIN PRIVATE KEY-----"', 'apm-server.ssl.key: inline PEM content is not supported; write the PEM to a file and give its path'],
      ['path.data: ""', 'path.data: must be a non-empty path'],
      ['custom: *anchor', 'YAML'],
    ]
    for (const [yaml, problem] of table) {
      it(`${yaml} -> ${problem}`, async () => {
        if (problem === 'YAML') {
          const file = writeConfig(`a: &anchor 1\n${yaml}\n`)
          assert.deepEqual((await problemsOf()).problems, [`${file}:2: custom: YAML aliases are not supported; write the value out`])
          return
        }

        const file = writeConfig(`# a comment\n${yaml}\n`)
        const problems = (await problemsOf()).problems.filter((line) => !line.includes('apm-server.ssl.enabled: TLS needs'))
        assert.deepEqual(problems, [`${file}:2: ${problem}`])
      })
    }

    it('needs a readable certificate and key when TLS is on, resolved against path.config', async () => {
      const file = writeConfig('apm-server.ssl:\n  enabled: true\n  certificate: missing.pem\n', 'conf/apm-server.yml')
      assert.deepEqual((await problemsOf({flags: {'path.config': 'conf'}})).problems, [
        `${file}:2: apm-server.ssl.enabled: TLS needs apm-server.ssl.key; set it, or set apm-server.ssl.enabled: false`,
        `${file}:3: apm-server.ssl.certificate: cannot read ${path.join(home, 'conf', 'missing.pem')}: ENOENT; check the path and its permissions`,
      ])
    })

    it('does not show a certificate path that came from the keystore', async () => {
      await makeKeystore({CERT: '/secret/place/cert.pem', KEY: '/secret/place/key.pem'})
      const file = writeConfig('apm-server.ssl.certificate: ${CERT}\napm-server.ssl.key: ${KEY}\n')
      assert.deepEqual((await problemsOf()).problems, [
        `${file}:1: apm-server.ssl.certificate: cannot read the file it names: ENOENT; check the path and its permissions`,
        `${file}:2: apm-server.ssl.key: cannot read the file it names: ENOENT; check the path and its permissions`,
      ])
    })

    it('reports YAML errors with their line, a setting written twice, and a file that is not a mapping', async () => {
      let file = writeConfig('a: 1\nb: [\n')
      assert.deepEqual((await problemsOf()).problems, [`${file}:3: Flow sequence in block collection must be sufficiently indented and end with a ]; fix the YAML`])
      file = writeConfig('apm-server.host: a:1\napm-server:\n  host: b:2\n')
      assert.deepEqual((await problemsOf()).problems, [`${file}:3: apm-server.host is also set at ${file}:1 (as apm-server.host); keep one`])
      file = writeConfig('apm-server:\n  rum:\napm-server.rum.enabled: true\n')
      assert.deepEqual((await problemsOf()).problems, [`${file}:3: apm-server.rum.enabled is also set at ${file}:2 (as apm-server.rum); keep one`])
      file = writeConfig('- a\n- b\n')
      assert.deepEqual((await problemsOf()).problems, [`${file}:1: the config file is not a mapping of settings; fix the YAML`])
    })

    it('reports a missing -c file, and an empty file is the defaults', async () => {
      await assertKeystoreError(load({flags: {config: 'nope.yml'}}), 'ECONFIG', `config file ${path.join(home, 'nope.yml')} does not exist; check the -c/--config path`)
      writeConfig('# nothing here\n')
      assert.deepEqual((await load()).config, defaults())
    })

    it('warns about unknown settings, once each, but not about empty known sections', async () => {
      const file = writeConfig('apm-server:\n  rum:\n  hots: x\noutput.elasticsearch:\n  hosts: [a, b]\n  password: p\n')
      const {redacted, warnings} = await load()
      assert.deepEqual(warnings, [
        `${file}:3: unknown setting apm-server.hots is ignored; check its spelling`,
        `${file}:5: unknown setting output.elasticsearch.hosts is ignored; check its spelling`,
        `${file}:6: unknown setting output.elasticsearch.password is ignored; check its spelling`,
      ])
      assert.deepEqual(redacted, {'apm-server': {hots: 'x', rum: null}, output: {elasticsearch: {hosts: ['a', 'b'], password: '[redacted]'}}})
    })
  })

  // fix-net finding 6 (break-local F4): a config of 60,000 settings (589 KB) loaded in quadratic time, 63 s
  // on the event loop at a reload, and logged 60,000 warning lines each time.
  describe('a big config file', () => {
    const settings = (count: number, name = (i: number) => `x${i}`) => Array.from({length: count}, (_, i) => `${name(i)}: 1\n`).join('')

    it(`is refused past ${MAX_SETTINGS.toLocaleString('en')} settings, naming the count`, async () => {
      const file = writeConfig(`apm-server.host: "127.0.0.1:0"\n${settings(20_000)}`)
      assert.deepEqual((await problemsOf()).problems, [`config file ${file} holds 20001 settings, over the 10,000 a configuration may hold; it is not an apm-server.yml`])
    })

    it(`is refused over ${MAX_CONFIG_BYTES / 1024 / 1024} MiB, unread`, async () => {
      const file = writeConfig(`# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`)
      assert.deepEqual((await problemsOf()).problems, [`config file ${file} is over 1 MiB; it is not an apm-server.yml`])
    })

    it(`names the first ${MAX_UNKNOWN_WARNINGS} unknown settings and counts the rest`, async () => {
      const file = writeConfig(settings(5000))
      const {warnings} = await load()
      assert.equal(warnings.length, MAX_UNKNOWN_WARNINGS + 1)
      assert.equal(warnings[0], `${file}:1: unknown setting x0 is ignored; check its spelling`)
      assert.equal(warnings.at(-1), `${5000 - MAX_UNKNOWN_WARNINGS} more unknown settings are ignored; check the config file`)
    })

    it(`lists the first ${MAX_LISTED_NOTES} problems and counts the rest`, async () => {
      writeConfig(settings(200, (i) => `secret_token_${i}`))
      const error = await problemsOf()
      assert.equal(error.count, 200)
      assert.equal(error.problems.length, MAX_LISTED_NOTES + 1)
      assert.equal(error.problems.at(-1), `... and ${200 - MAX_LISTED_NOTES} more problems`)
    })

    // After the merge of main: the references log and the reload's allow-list rule compared each item with every other.
    it('a value of 80,000 references, and a reload between allow lists of 200,000 names, are judged in linear time', async () => {
      const references = Array.from({length: 80_000}, (_, i) => `\${K${i}:}`).join('')
      writeConfig(`apm-server.rum.allow_origins: ["${references}"]\n`)
      const {references: seen} = await load()
      assert.equal(seen.length, 80_000)
      const names = Array.from({length: 200_000}, (_, i) => `agent-${i}`)
      const running = {...defaults(), anonymous: {...defaults().anonymous, allowAgent: names, enabled: true}}
      const next = {...running, anonymous: {...running.anonymous, allowAgent: [...names].reverse()}}
      assert.deepEqual(reloadRefusals(running, next), [])
    })

    it('still finds a key written twice in one mapping, at any depth, in the file and in an -E', async () => {
      let file = writeConfig('apm-server:\n  host: "a:1"\napm-server:\n  rum.enabled: true\n')
      assert.deepEqual((await problemsOf()).problems, [`${file}:3: apm-server is written twice in one mapping (also at ${file}:1); keep one`])
      file = writeConfig('apm-server.rum.allow_origins: [{a: 1, a: 2}]\n')
      assert.deepEqual((await problemsOf()).problems, [`${file}:1: a is written twice in one mapping (also at ${file}:1); keep one`])
      writeConfig('')
      assert.deepEqual((await problemsOf({overrides: ['apm-server.auth={secret_token: a, secret_token: b}']})).problems, ['-E apm-server.auth: the value has the key secret_token twice; keep one'])
    })
  })

  // Issue 11, defect 9: -E 'apm-server.auth={anonymous: {enabled: false}}' replaced the whole section, token included.
  describe('overrides never drop authentication unseen', () => {
    const FILE = 'apm-server.auth:\n  secret_token: file-token\n  secret_token_grace_period: 1m\n  anonymous.allow_service: [shop]\n'

    it('merges a mapping into the section, as Beats does: only the settings it names change', async () => {
      writeConfig(FILE)
      const {config, redacted} = await load({overrides: ['apm-server.auth={anonymous: {enabled: false}}', 'apm-server.auth={}', 'apm-server.rum={}']})
      assert.equal(config.secretToken, 'file-token')
      assert.equal(config.secretTokenGracePeriodMs, 60_000)
      assert.deepEqual([config.anonymous.enabled, config.anonymous.allowService], [false, ['shop']])
      assert.deepEqual(redacted, {'apm-server': {auth: {anonymous: {allow_service: ['shop'], enabled: false}, secret_token: '[redacted]', secret_token_grace_period: '1m'}}})
    })

    const removals: Array<[string, string]> = [
      ['apm-server.auth=null', 'apm-server.auth.secret_token'],
      ['apm-server=~', 'apm-server.auth.secret_token'],
      ['apm-server.auth="x"', 'apm-server.auth.secret_token'],
      ['apm-server.auth=[a]', 'apm-server.auth.secret_token'],
      ['apm-server={auth: null}', 'apm-server.auth.secret_token'],
      ['apm-server.auth.anonymous=null', 'apm-server.auth.anonymous.allow_service'],
    ]
    for (const [override, removed] of removals) {
      it(`refuses -E ${override}: it would remove ${removed} from the file`, async () => {
        const file = writeConfig(FILE)
        const name = override.slice(0, override.indexOf('=')).replace('={auth', '')
        const where = override.startsWith('apm-server={') ? '-E apm-server' : `-E ${name}`
        const line = removed === TOKEN_SETTING ? 2 : 4
        const hint = removed === TOKEN_SETTING ? ` (-E ${TOKEN_SETTING}=null turns the secret token off on purpose)` : ''
        const problems = (await problemsOf({overrides: [override]})).problems
        assert.ok(problems.includes(`${where}: would remove ${removed} (set at ${file}:${line}); override ${removed} itself${hint}`), problems.join('\n'))
      })
    }

    it('lets an override remove a section that holds no authentication setting', async () => {
      writeConfig(`${FILE}apm-server.rum: {enabled: true, allow_origins: [a]}\napm-server.auth.anonymous.enabled: false\n`)
      assert.deepEqual((await load({overrides: ['apm-server.rum=null']})).config.rum, {allowOrigins: ['*'], enabled: false})
    })

    it('turns the secret token off only when -E sets it to null, and says by which -E', async () => {
      writeConfig(FILE)
      for (const value of ['null', '~', 'Null']) {
        // eslint-disable-next-line no-await-in-loop -- one case at a time
        const loaded = await load({overrides: [`${TOKEN_SETTING}=${value}`]})
        assert.equal(loaded.config.secretToken, undefined)
        assert.equal(loaded.tokenOffBy, `-E ${TOKEN_SETTING}`)
      }

      assert.equal((await load()).tokenOffBy, undefined)
      // an empty -E value and a null token in the file are mistakes (see "fails closed")
      assert.match((await problemsOf({overrides: [`${TOKEN_SETTING}=`]})).problems[0], /is set but empty/)
      const file = writeConfig(`${FILE}apm-server.secret_token: legacy\n`)
      assert.deepEqual((await problemsOf({overrides: [`${TOKEN_SETTING}=null`]})).problems, [
        `${file}:5: apm-server.secret_token: still sets a token while -E ${TOKEN_SETTING}=null turns it off; remove it, or add -E apm-server.secret_token=null`,
      ])
    })

    it('refuses an -E that turns anonymous access on unseen (RUM with a token in the file), unless it is said', async () => {
      writeConfig('apm-server.auth.secret_token: file-token\n')
      assert.deepEqual((await problemsOf({overrides: ['apm-server.rum.enabled=true']})).problems, [
        '-E apm-server.rum.enabled: turns on anonymous access (with a secret token, enabling RUM lets anonymous RUM agents in by default); say so with -E apm-server.auth.anonymous.enabled=true, or keep it off with -E apm-server.auth.anonymous.enabled=false',
      ])
      const on = await load({overrides: ['apm-server.rum={enabled: true}', 'apm-server.auth.anonymous.enabled=true']})
      assert.deepEqual([on.config.rum.enabled, on.config.anonymous.enabled], [true, true])
      const off = await load({overrides: ['apm-server.rum.enabled=true', 'apm-server.auth.anonymous.enabled=false']})
      assert.deepEqual([off.config.rum.enabled, off.config.anonymous.enabled], [true, false])
      // RUM already on in the file: the -E changes nothing
      writeConfig('apm-server.auth.secret_token: file-token\napm-server.rum.enabled: true\n')
      assert.equal((await load({overrides: ['apm-server.rum.enabled=true']})).config.anonymous.enabled, true)
    })

    it('refuses the same setting twice within one -E mapping', async () => {
      assert.deepEqual((await problemsOf({overrides: ['apm-server={auth.secret_token: a, auth: {secret_token: b}}']})).problems, [
        `-E apm-server: ${TOKEN_SETTING} is also set at -E apm-server (as ${TOKEN_SETTING}); keep one`,
      ])
    })
  })

  describe('the secret token is a string, or nothing', () => {
    const table: Array<{title: string; yaml?: string; overrides?: string[]; problem: string}> = [
      {problem: `${TOKEN_SETTING}: must be a string, not a mapping (${TOKEN_SETTING}.x is set under it); write ${TOKEN_SETTING}: <value>`, title: 'a mapping in the file', yaml: `${TOKEN_SETTING}: {x: 1, y: 2}`},
      {overrides: [`${TOKEN_SETTING}.x=1`], problem: `${TOKEN_SETTING}: must be a string, not a mapping (${TOKEN_SETTING}.x is set under it); write ${TOKEN_SETTING}: <value>`, title: 'a mapping from -E'},
      {problem: 'apm-server.host: must be host:port, not a mapping (apm-server.host.x is set under it); write apm-server.host: <value>', title: 'any known setting as a mapping', yaml: 'apm-server.host.x: 1'},
      {problem: `${TOKEN_SETTING}: must be a string`, title: 'a list', yaml: `${TOKEN_SETTING}: [a]`},
      {problem: `${TOKEN_SETTING}: must be a string`, title: 'an empty mapping', yaml: `${TOKEN_SETTING}: {}`},
      ...['!!binary aGVsbG8=', '!foo abc', '!!null abc', '!!int "123"'].map((value) => ({
        problem: `${TOKEN_SETTING}: must be a string without a YAML tag (a tag changes what the token is); remove the tag and quote the value`,
        title: `a tagged value (${value.split(' ')[0]})`,
        yaml: `${TOKEN_SETTING}: ${value}`,
      })),
      {problem: `${TOKEN_SETTING}: is only whitespace, which no agent can send (HTTP trims it); give it a token (e.g. "\${APM_SECRET_TOKEN}" from the keystore)`, title: 'whitespace', yaml: `${TOKEN_SETTING}: " \\t "`},
      {problem: 'apm-server.auth: is a section of settings, not a value; set the settings in it (e.g. apm-server.auth.anonymous.allow_agent)', title: 'its section as a value', yaml: 'apm-server.auth: abc'},
      {problem: 'YAML merge keys (<<) are not supported; write the settings out', title: 'a YAML merge key', yaml: 'apm-server.auth:\n  <<: {secret_token: abc}'},
      {problem: `apm-server.auth.secret-token is not a known setting and no secret token is set, so the server would accept data without authentication; write it as ${TOKEN_SETTING}`, title: 'a misspelt token', yaml: 'apm-server.auth.secret-token: abc'},
      {problem: `apm_server.auth.secret_token is not a known setting and no secret token is set, so the server would accept data without authentication; write it as ${TOKEN_SETTING}`, title: 'a misspelt section', yaml: 'apm_server.auth.secret_token: abc'},
    ]
    for (const {overrides = [], problem, title, yaml = ''} of table) {
      it(`refuses ${title}, naming the setting`, async () => {
        writeConfig(`${yaml}\n`)
        const {problems} = await problemsOf({overrides})
        assert.equal(problems.length, 1, problems.join('\n'))
        assert.ok(problems[0].endsWith(problem), problems[0])
      })
    }

    it('takes a YAML number or boolean as written, with a warning: Go would read 0x1F as 31', async () => {
      const file = writeConfig(`${TOKEN_SETTING}: 0x1F\n`)
      const {config, warnings} = await load()
      assert.equal(config.secretToken, '0x1F')
      assert.deepEqual(warnings, [`${file}:1: ${TOKEN_SETTING} is a YAML number: it is used as written, but other YAML readers (Elastic's apm-server) may read another value; quote it`])
      writeConfig(`${TOKEN_SETTING}: !!str 0x1F\n`)
      assert.deepEqual((await load()).warnings, [])
      assert.equal((await load({overrides: [`${TOKEN_SETTING}=true`]})).config.secretToken, 'true')
    })

    it('only warns about a misspelt token when a token is set', async () => {
      const file = writeConfig(`${TOKEN_SETTING}: abc\napm-server.auth.secret-token: abc\n`)
      assert.deepEqual((await load()).warnings, [`${file}:2: unknown setting apm-server.auth.secret-token is ignored; check its spelling`])
    })
  })

  // Issue 11, defect 2: a reload caught the file moved away or truncated and ran on the defaults, open.
  describe('a reload', () => {
    const reloadOf = (loaded: Awaited<ReturnType<typeof load>>) => ({config: loaded.config, fileState: loaded.fileState, keystoreKeys: loaded.keystoreKeys})

    it('fails when the file it ran from is gone or holds no settings, with -c, --path.config or neither', async () => {
      for (const flags of [{}, {config: 'conf/apm-server.yml'}, {'path.config': 'conf'}] as LoadOptions['flags'][]) {
        const name = flags.config || flags['path.config'] ? 'conf/apm-server.yml' : 'apm-server.yml'
        const file = writeConfig(`${TOKEN_SETTING}: abc\n`, name)
        // eslint-disable-next-line no-await-in-loop -- one case at a time
        const running = reloadOf(await load({flags}))
        assert.equal(running.fileState, 'read')
        for (const text of ['', '\n  \n', '# all commented out\n']) {
          writeFileSync(file, text)
          // eslint-disable-next-line no-await-in-loop -- one case at a time
          const error = await problemsOf({flags, reloadOf: running})
          assert.deepEqual(error.problems, [`config file ${file} holds no settings (is it being rewritten?); write the configuration into it, then reload again`])
        }

        rmSync(file)
        const expected = flags.config
          ? `config file ${file} does not exist; check the -c/--config path`
          : `config file ${file} does not exist any more (only a start without one runs on the defaults); put it back, then reload again`
        // eslint-disable-next-line no-await-in-loop -- one case at a time
        assert.deepEqual((await problemsOf({flags, reloadOf: running})).problems, [expected])
      }
    })

    it('runs on the defaults again when it started so (no file, or an empty one)', async () => {
      const started = reloadOf(await load({overrides: ['apm-server.auth.secret_token=from-E']}))
      assert.equal(started.fileState, 'missing')
      assert.equal((await load({overrides: ['apm-server.auth.secret_token=from-E'], reloadOf: started})).config.secretToken, 'from-E')
      writeConfig('# nothing yet\n')
      const empty = reloadOf(await load())
      assert.equal(empty.fileState, 'empty')
      assert.deepEqual((await load({reloadOf: empty})).config, defaults())
    })

    it('never takes from the environment a value the keystore gave, and records which keys the keystore gave', async () => {
      await makeKeystore({KS_TOKEN: 'from-keystore', OTHER: 'x'})
      const file = writeConfig('apm-server.auth.secret_token: ${KS_TOKEN}\noutput.file.filename: ${NAME:events}\n')
      const env = {KS_TOKEN: 'stale-token-in-the-environment'}
      const started = await load({env})
      assert.equal(started.config.secretToken, 'from-keystore')
      assert.deepEqual(started.keystoreKeys, ['KS_TOKEN'])
      const fix = 'a reload never takes it from the environment instead: add it back with "apm-server keystore add KS_TOKEN", or restart the server to take it from the environment on purpose'
      await updateKeystore(keystoreFile, {password: noPasswordExpected()}, (keystore) => keystore.remove(['KS_TOKEN']))
      assert.deepEqual((await problemsOf({env, reloadOf: reloadOf(started)})).problems, [
        `${file}:1: ${TOKEN_SETTING}: \${KS_TOKEN}: KS_TOKEN came from the keystore and the keystore ${keystoreFile} no longer holds KS_TOKEN; ${fix}`,
      ])
      rmSync(keystoreFile)
      assert.deepEqual((await problemsOf({env, reloadOf: reloadOf(started)})).problems, [
        `${file}:1: ${TOKEN_SETTING}: \${KS_TOKEN}: KS_TOKEN came from the keystore and the keystore ${keystoreFile} is gone; ${fix}`,
      ])
      // a start (not a reload) takes it from the environment, as before
      assert.equal((await load({env})).config.secretToken, 'stale-token-in-the-environment')
    })

    it('is refused when the result is less protected; applied when not', async () => {
      writeConfig(`${TOKEN_SETTING}: abc\napm-server.rum.enabled: true\napm-server.auth.anonymous.allow_service: [shop]\n`)
      const running = reloadOf(await load())
      assert.equal(running.config.anonymous.enabled, true)
      writeConfig(`${TOKEN_SETTING}: abc\napm-server.auth.anonymous.allow_service: [shop, cart]\napm-server.rum.enabled: true\n`)
      assert.deepEqual((await problemsOf({reloadOf: running})).problems, [
        'apm-server.auth.anonymous.allow_service: a reload cannot let more services in anonymously; restart the server to do that on purpose',
      ])
      writeConfig(`${TOKEN_SETTING}: new\napm-server.auth.secret_token_grace_period: 1h\n`)
      assert.equal((await load({reloadOf: running})).config.secretToken, 'new')
    })
  })

  describe('reloadRefusals', () => {
    const token = (config: ServerConfig, secretToken?: string): ServerConfig => ({...config, ...(secretToken === undefined ? {} : {secretToken})})
    const withAnonymous = (config: ServerConfig, anonymous: Partial<ServerConfig['anonymous']>): ServerConfig => ({...config, anonymous: {...config.anonymous, enabled: true, ...anonymous}})
    const refusal = (setting: string, what: string) => `${setting}: a reload cannot ${what}; restart the server to do that on purpose`
    const cases: Array<[string, (base: ServerConfig) => [ServerConfig, ServerConfig], string[]]> = [
      ['removing the token', (base) => [token(base, 'a'), base], [refusal(TOKEN_SETTING, 'remove the secret token (the server would accept data from anyone)')]],
      [
        'RUM turning anonymous access on',
        (base) => [token(base, 'a'), {...withAnonymous(token(base, 'a'), {}), rum: {allowOrigins: ['*'], enabled: true}}],
        [refusal('apm-server.auth.anonymous.enabled', 'turn on anonymous access (enabling RUM turns it on by default: set apm-server.auth.anonymous.enabled: false to keep it off)')],
      ],
      ['anonymous access on', (base) => [token(base, 'a'), withAnonymous(token(base, 'a'), {})], [refusal('apm-server.auth.anonymous.enabled', 'turn on anonymous access')]],
      [
        'more agents, every service, higher limits',
        (base) => [
          withAnonymous(token(base, 'a'), {allowService: ['shop']}),
          withAnonymous(token(base, 'a'), {allowAgent: ['rum-js', 'js-base', 'java'], allowService: [], rateLimit: {eventLimit: 301, ipLimit: 1001}}),
        ],
        [
          refusal('apm-server.auth.anonymous.allow_agent', 'let more agents in anonymously'),
          refusal('apm-server.auth.anonymous.allow_service', 'let more services in anonymously'),
          refusal('apm-server.auth.anonymous.rate_limit.event_limit', 'raise the anonymous event rate limit'),
          refusal('apm-server.auth.anonymous.rate_limit.ip_limit', 'raise the number of anonymous clients limited apart'),
        ],
      ],
      ['TLS off', (base) => [{...base, ssl: {enabled: true}}, base], [refusal('apm-server.ssl.enabled', 'turn TLS off')]],
      ['a new token, a longer grace period, new origins', (base) => [token(base, 'a'), {...token(base, 'b'), rum: {allowOrigins: ['https://x'], enabled: false}, secretTokenGracePeriodMs: 3_600_000}], []],
      ['fewer agents and services, lower limits', (base) => [withAnonymous(token(base, 'a'), {}), withAnonymous(token(base, 'a'), {allowAgent: ['rum-js'], allowService: ['shop'], rateLimit: {eventLimit: 10, ipLimit: 10}})], []],
      ['anonymous access off, RUM off', (base) => [{...withAnonymous(token(base, 'a'), {}), rum: {allowOrigins: ['*'], enabled: true}}, token(base, 'a')], []],
      ['anything, from a server without a token', (base) => [base, withAnonymous(base, {allowService: []})], []],
      ['a token where there was none', (base) => [base, token(base, 'a')], []],
    ]
    for (const [title, make, expected] of cases) {
      it(`${title}: ${expected.length === 0 ? 'applied' : 'refused'}`, () => {
        const [running, next] = make(defaults())
        assert.deepEqual(reloadRefusals(running, next), expected)
      })
    }

    // An empty list lets every agent (service) in: a reload may only narrow what is let in (fix-net finding 3).
    const lists: Array<[string, string[], string[], boolean]> = [
      ['[] -> []', [], [], false],
      ['[] -> [a]', [], ['a'], false],
      ['[] -> [a, b]', [], ['a', 'b'], false],
      ['[a] -> []', ['a'], [], true],
      ['[a] -> [a]', ['a'], ['a'], false],
      ['[a] -> [b]', ['a'], ['b'], true],
      ['[a] -> [a, b]', ['a'], ['a', 'b'], true],
      ['[a, b] -> [a]', ['a', 'b'], ['a'], false],
      ['[a, b] -> [b, a]', ['a', 'b'], ['b', 'a'], false],
      ['[a, b] -> []', ['a', 'b'], [], true],
    ]
    for (const [setting, field, what] of [
      ['apm-server.auth.anonymous.allow_agent', 'allowAgent', 'let more agents in anonymously'],
      ['apm-server.auth.anonymous.allow_service', 'allowService', 'let more services in anonymously'],
    ] as const) {
      for (const [title, before, after, widens] of lists) {
        it(`${setting}: ${title} is ${widens ? 'refused' : 'applied'}`, () => {
          const base = token(defaults(), 'a')
          const running = withAnonymous(base, {[field]: before})
          const next = withAnonymous(base, {[field]: after})
          assert.deepEqual(reloadRefusals(running, next), widens ? [refusal(setting, what)] : [])
        })
      }
    }
  })

  describe('parseDuration', () => {
    const good: Array<[string, number]> = [['0', 0], ['500ms', 500], ['60s', 60_000], ['10m', 600_000], ['1h', 3_600_000], ['1h30m', 5_400_000], ['1.5s', 1500], ['2m0s', 120_000]]
    for (const [text, ms] of good) it(`${text} = ${ms} ms`, () => assert.equal(parseDuration(text), ms))
    for (const text of ['', '60', '10x', '-1s', 's', '1m ', ' 1m', '1.s', '1e3s', '0s1', '10 m']) {
      it(`refuses ${JSON.stringify(text)}`, () => assert.equal(parseDuration(text), undefined))
    }
  })
})
