/**
 * The output.redis section and the one-output rule: Beats' defaults, every host form, bad values
 * refused naming the setting (never a host's text: a URL may hold a password), and the redaction of
 * the password, the user name and a URL's credentials in what `export config` shows.
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {loadServerConfig} from '../../src/server/config/load.js'
import {MAX_REDIS_HOSTS} from '../../src/server/config/redis.js'
import {ConfigError, LoadOptions} from '../../src/server/config/server-config.js'
import {makeTempDir} from '../helpers/cli.js'
import {assertKeystoreError, CHEAP_KDF, noPasswordExpected, passwordOf} from '../helpers/keystore.js'

const SECRET = 'Redis-Secret-Pa55'

describe('server/config: output.redis', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir('apm-config-redis-')
  })
  afterEach(() => tmp.cleanup())

  const load = (yaml: string, options: Partial<LoadOptions> = {}) => {
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), yaml)
    return loadServerConfig({cwd: tmp.dir, env: {}, flags: {}, overrides: [], password: noPasswordExpected(), ...options})
  }

  const problems = async (yaml: string): Promise<string[]> => {
    const error = await assertKeystoreError(load(yaml), 'ECONFIG')
    assert.ok(error instanceof ConfigError)
    for (const line of error.problems) assert.ok(!line.includes(SECRET), `the password in: ${line}`)
    return error.problems
  }

  it("takes Beats' defaults: port 6379, key apm-server, list, 5 s, 2048, backoff 1 s to 60 s, 3 retries, loadbalance", async () => {
    const {config} = await load('output.redis.hosts: [localhost]\n')
    assert.deepEqual(config.output.redis, {
      backoff: {initMs: 1000, maxMs: 60_000},
      bulkMaxSize: 2048,
      datatype: 'list',
      db: 0,
      hosts: [{host: 'localhost', label: 'localhost:6379', port: 6379}],
      key: 'apm-server',
      loadbalance: true,
      maxRetries: 3,
      ssl: {certificateAuthorities: [], enabled: false, verificationMode: 'full'},
      timeoutMs: 5000,
    })
  })

  it('reads every option and every host form (host, host:port, [v6]:port, redis:// and rediss:// with credentials)', async () => {
    writeFileSync(path.join(tmp.dir, 'ca.pem'), 'a CA')
    const {config} = await load(
      [
        'output.redis:',
        '  hosts: ["a.example", "b.example:6380", "[::1]:7000", "redis://u1:p%40ss@c.example:6381", "rediss://d.example"]',
        '  port: 6400',
        '  username: apm',
        `  password: ${SECRET}`,
        '  db: 2',
        '  key: events',
        '  datatype: channel',
        '  timeout: 2',
        '  bulk_max_size: 100',
        '  backoff: {init: 500ms, max: 5s}',
        '  max_retries: -1',
        '  loadbalance: false',
        '  ssl: {certificate_authorities: [ca.pem], verification_mode: certificate}',
        '',
      ].join('\n'),
    )
    const redis = config.output.redis!
    assert.deepEqual(redis.hosts, [
      {host: 'a.example', label: 'a.example:6400', port: 6400},
      {host: 'b.example', label: 'b.example:6380', port: 6380},
      {host: '::1', label: '[::1]:7000', port: 7000},
      {host: 'c.example', label: 'redis://c.example:6381', password: 'p@ss', port: 6381, tls: false, username: 'u1'},
      {host: 'd.example', label: 'rediss://d.example:6400', port: 6400, tls: true},
    ])
    assert.deepEqual(
      {...redis, hosts: undefined},
      {
        backoff: {initMs: 500, maxMs: 5000},
        bulkMaxSize: 100,
        datatype: 'channel',
        db: 2,
        hosts: undefined,
        key: 'events',
        loadbalance: false,
        maxRetries: -1,
        password: SECRET,
        ssl: {certificateAuthorities: [path.join(tmp.dir, 'ca.pem')], enabled: true, verificationMode: 'certificate'},
        timeoutMs: 2000,
        username: 'apm',
      },
    )
  })

  const bad: Array<[string, RegExp]> = [
    ['output.file.path: out\noutput.redis.hosts: [localhost]\n', /^output\.file and output\.redis are both enabled; exactly one output may be enabled/],
    ['output.redis: {hosts: [localhost], enabled: false}\n', /^no output is enabled \(output\.redis has enabled: false\)/],
    ['output.file.enabled: false\n', /^no output is enabled \(output\.file has enabled: false\)/],
    ['output.redis.key: x\n', /output\.redis\.hosts: needs at least one Redis host/],
    [`output.redis.hosts: ["http://:${SECRET}@h"]\n`, /output\.redis\.hosts: item 1 has a scheme other than redis:\/\/ or rediss:\/\//],
    [`output.redis.hosts: ["redis://:${SECRET}@h/3"]\n`, /output\.redis\.hosts: item 1 has a path, query or fragment, which is not used; set the database with output\.redis\.db/],
    [`output.redis.hosts: ["${SECRET}:x:y"]\n`, /output\.redis\.hosts: item 1 is not host, host:port or a redis:\/\/ or rediss:\/\/ URL/],
    ['output.redis: {hosts: [h], datatype: set}\n', /output\.redis\.datatype: must be list \(RPUSH\) or channel \(PUBLISH\)/],
    ['output.redis: {hosts: [h], timeout: 0}\n', /output\.redis\.timeout: must be a duration above 0/],
    ['output.redis: {hosts: [h], backoff: {init: 10s, max: 1s}}\n', /output\.redis\.backoff\.max: must not be shorter than output\.redis\.backoff\.init/],
    ['output.redis: {hosts: [h], key: "%{[fields.list]}"}\n', /output\.redis\.key: format strings/],
    ['output.redis: {hosts: [h], key: a, index: b}\n', /output\.redis\.index: cannot be used with output\.redis\.key/],
    ['output.redis: {hosts: [h], username: apm}\n', /output\.redis\.username: needs output\.redis\.password/],
    ['output.redis: {hosts: [h], ssl.verification_mode: lax}\n', /output\.redis\.ssl\.verification_mode: must be one of full, strict, certificate, none/],
    ['output.redis: {hosts: [h], ssl.certificate: c.pem}\n', /output\.redis\.ssl\.key: a client certificate needs both/],
    ['output.redis: {hosts: ["rediss://h"], ssl.certificate_authorities: [missing.pem]}\n', /output\.redis\.ssl\.certificate_authorities: cannot read .*missing\.pem: ENOENT/],
    ['output.redis: {hosts: [h], port: 70000}\n', /output\.redis\.port: must be a whole number from 1 to 65535/],
    [`output.redis.hosts: [${Array.from({length: MAX_REDIS_HOSTS + 1}, (_, i) => `h${i}`).join(', ')}]\n`, /output\.redis\.hosts: lists 65 hosts, over the 64 the output connects to; list fewer/],
  ]
  for (const [yaml, expected] of bad) {
    it(`refuses ${JSON.stringify(yaml.trim())}`, async () => {
      const found = await problems(yaml)
      assert.ok(
        found.some((problem) => expected.test(problem.replace(/^.*?\.yml:\d+: /, ''))),
        found.join('\n'),
      )
    })
  }

  it("reads APM Server's apm-server.shutdown_timeout (the bound a stop retries unacknowledged events for), at most 1h", async () => {
    assert.equal((await load('apm-server.shutdown_timeout: 5s\n')).config.shutdownTimeoutMs, 5000)
    assert.equal((await load('apm-server.host: "127.0.0.1:0"\n')).config.shutdownTimeoutMs, undefined)
    assert.match((await problems('apm-server.shutdown_timeout: 2h\n'))[0], /apm-server\.shutdown_timeout: must be a duration of at most 1h/)
  })

  it('a disabled file section leaves the Redis output; -E can switch outputs', async () => {
    assert.equal((await load('output.file: {enabled: false, path: out}\noutput.redis.hosts: [h]\n')).config.output.redis?.hosts[0].host, 'h')
    const switched = await load('output.file.path: out\n', {overrides: ['output.file.enabled=false', 'output.redis.hosts=[h2]']})
    assert.equal(switched.config.output.redis?.hosts[0].host, 'h2')
  })

  it('redacts the password and the user name from the keystore, the user name and a URL password written in the file too', async () => {
    const file = path.join(tmp.dir, 'data', 'apm-server.keystore')
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF})
    await updateKeystore(file, {password: passwordOf('')}, (keystore) => {
      keystore.set('REDIS_PASSWORD', Buffer.from(SECRET))
      keystore.set('REDIS_USER', Buffer.from('apm-writer'))
    })
    const {config, redacted} = await load(
      ['output.redis:', '  hosts: ["redis://ops:url-Pa55@h1:6379", "h2"]', '  username: "${REDIS_USER}"', '  password: "${REDIS_PASSWORD}"', ''].join('\n'),
    )
    assert.equal(config.output.redis?.password, SECRET)
    assert.deepEqual(redacted, {output: {redis: {hosts: ['redis://[redacted]@h1:6379', 'h2'], password: '[redacted]', username: '[redacted]'}}})
    const plain = await load('output.redis: {hosts: [h], username: apm-writer, password: written-Pa55}\n')
    assert.deepEqual(plain.redacted, {output: {redis: {hosts: ['h'], password: '[redacted]', username: '[redacted]'}}})
  })
})
