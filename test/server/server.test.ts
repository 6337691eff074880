import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {promises as fs, readFileSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {gzipSync} from 'node:zlib'

import type {ServerConfig} from '../../src/server/config/server-config.js'
import {createLogger} from '../../src/server/logger.js'
import {AGENT_CONFIG_DISABLED_MESSAGE} from '../../src/server/api/agent-config.js'
import {RUM_DISABLED_MESSAGE} from '../../src/server/api/rum.js'
import {RunningServer, startServer} from '../../src/server/server.js'
import {makeTempDir, runCli} from '../helpers/cli.js'
import {killStartedServers, open, send, SendOptions, startRun} from '../helpers/run-server.js'
import {testServerConfig} from '../helpers/server-config.js'

const TOKEN = 'server-test-token'
const NODE_METADATA = JSON.stringify({metadata: {service: {agent: {name: 'nodejs', version: '4.18.0'}, name: 'svc'}}})
const RUM_METADATA = JSON.stringify({metadata: {service: {agent: {name: 'rum-js', version: '5.16.0'}, name: 'web'}}})
const event = (i: number) => JSON.stringify({transaction: {id: `tx${i}`, name: `GET /${i}`}})
const ndjson = (...lines: string[]) => lines.map((line) => `${line}\n`).join('')
const BODY = ndjson(NODE_METADATA, event(1), event(2))

function serverConfig(dir: string, overrides: Partial<ServerConfig> = {}): ServerConfig {
  return testServerConfig(dir, {secretToken: TOKEN, ...overrides})
}

const bearer = (token = TOKEN) => ({Authorization: `Bearer ${token}`})

async function outputLines(dir: string): Promise<string[]> {
  const text = await fs.readFile(path.join(dir, 'out', 'apm-server'), 'utf8').catch(() => '')
  return text === '' ? [] : text.slice(0, -1).split('\n')
}

function quietLogger() {
  const lines: string[] = []
  return {lines, logger: createLogger({destination: {write: (line: string) => lines.push(line)}})}
}

/** A self-signed certificate for 127.0.0.1 (and the same key encrypted with `passphrase`). */
function makeCertificate(dir: string, passphrase: string): {cert: string; key: string; encryptedKey: string} {
  const cert = path.join(dir, 'cert.pem')
  const key = path.join(dir, 'key.pem')
  const encryptedKey = path.join(dir, 'key-encrypted.pem')
  const quiet = {stdio: 'ignore' as const}
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
    quiet,
  )
  execFileSync('openssl', ['pkey', '-in', key, '-aes256', '-passout', 'env:TEST_KEY_PASS', '-out', encryptedKey], {...quiet, env: {...process.env, TEST_KEY_PASS: passphrase}})
  return {cert, encryptedKey, key}
}

/** A FIFO named cert.fifo in `dir`, which nobody writes to. */
function makeFifo(dir: string): string {
  const fifo = path.join(dir, 'cert.fifo')
  execFileSync('mkfifo', [fifo])
  return fifo
}

describe('server', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let server: RunningServer | undefined
  beforeEach(() => {
    tmp = makeTempDir('apm-server-test-')
  })
  afterEach(async () => {
    await server?.close()
    server = undefined
    tmp.cleanup()
  })

  describe('routes, with a secret token', () => {
    beforeEach(async () => {
      server = await startServer(serverConfig(tmp.dir), quietLogger().logger)
    })

    const table: [string, SendOptions, number, string, Record<string, string>?][] = [
      ['an unknown path', {method: 'GET', path: '/nope'}, 404, '{"error":"404 page not found"}\n'],
      ['an unknown path, JSON accepted', {headers: {Accept: 'application/json'}, method: 'GET', path: '/nope'}, 404, '{\n  "error": "404 page not found"\n}\n'],
      ['the intake path with a trailing slash', {headers: bearer(), path: '/intake/v2/events/'}, 404, '{"error":"404 page not found"}\n'],
      ['agent config with the token', {headers: bearer(), method: 'GET', path: '/config/v1/agents?service.name=svc'}, 403, `${JSON.stringify({error: AGENT_CONFIG_DISABLED_MESSAGE})}\n`],
      ['agent config by POST', {body: '{}', headers: bearer(), path: '/config/v1/agents'}, 403, `${JSON.stringify({error: AGENT_CONFIG_DISABLED_MESSAGE})}\n`],
      ['RUM intake while RUM is off', {body: BODY, headers: bearer(), path: '/intake/v2/rum/events'}, 403, `${JSON.stringify({error: RUM_DISABLED_MESSAGE})}\n`],
      ['intake by GET', {headers: bearer(), method: 'GET', path: '/intake/v2/events'}, 400, '{"accepted":0,"errors":[{"message":"only POST requests are supported"}]}\n', {connection: 'close'}],
      [
        'intake with a JSON content type',
        {body: BODY, headers: {...bearer(), 'Content-Type': 'application/json'}, path: '/intake/v2/events'},
        400,
        `{"accepted":0,"errors":[{"message":"invalid content type: 'application/json'"}]}\n`,
        {connection: 'close'},
      ],
      ['intake, ?verbose', {body: BODY, headers: {...bearer(), 'Content-Type': 'application/x-ndjson'}, path: '/intake/v2/events?verbose'}, 202, '{"accepted":2}\n'],
      ['intake, ?verbose=true, JSON accepted', {body: BODY, headers: {...bearer(), Accept: '*/*'}, path: '/intake/v2/events?verbose=true'}, 202, '{\n  "accepted": 2\n}\n'],
      ['intake', {body: gzipSync(BODY), headers: {...bearer(), 'Content-Encoding': 'gzip'}, path: '/intake/v2/events'}, 202, ''],
      [
        'intake with a bad line',
        {body: ndjson(NODE_METADATA, '{"x": <b>}'), headers: bearer(), path: '/intake/v2/events'},
        400,
        '{"accepted":0,"errors":[{"message":"did not recognize object type: \\"x\\"","document":"{\\"x\\": \\u003cb\\u003e}"}]}\n',
        {connection: 'close'},
      ],
    ]
    for (const [name, options, status, body, headers] of table) {
      it(`${name} -> ${status}`, async () => {
        const reply = await send(server!.url, options)
        assert.deepEqual([reply.status, reply.body], [status, body])
        assert.equal(reply.headers['x-content-type-options'], 'nosniff')
        for (const [header, value] of Object.entries(headers ?? {})) assert.equal(reply.headers[header], value)
      })
    }

    it('answers agent config without the token with 401 first, as the Go server does', async () => {
      const reply = await send(server!.url, {method: 'GET', path: '/config/v1/agents'})
      assert.equal(reply.status, 401)
    })

    it('reads a gzip body streamed in pieces over a chunked request, and stores every event', async () => {
      const data = gzipSync(ndjson(NODE_METADATA, ...[1, 2, 3, 4, 5].map((i) => event(i))))
      const {reply, request} = open(server!.url, {headers: {...bearer(), 'Content-Encoding': 'gzip', 'Content-Type': 'application/x-ndjson'}, path: '/intake/v2/events?verbose'})
      for (let i = 0; i < data.length; i += 16) {
        request.write(data.subarray(i, i + 16))
        await sleep(5) // eslint-disable-line no-await-in-loop -- an agent trickling its request
      }

      request.end()
      assert.deepEqual([(await reply).status, (await reply).body], [202, '{"accepted":5}\n'])
      const lines = await outputLines(tmp.dir)
      assert.deepEqual(
        lines.map((line) => (JSON.parse(line) as {transaction: {id: string}}).transaction.id),
        ['tx1', 'tx2', 'tx3', 'tx4', 'tx5'],
      )
      assert.deepEqual((JSON.parse(lines[0]) as {metadata: unknown}).metadata, JSON.parse(NODE_METADATA).metadata)
      assert.equal(server!.stats().events.accepted, 5)
    })
  })

  describe('the request log', () => {
    it('has one ECS line per request with the Go keyword, and never event data or credentials', async () => {
      const {lines, logger} = quietLogger()
      server = await startServer(serverConfig(tmp.dir), logger)
      await send(server.url, {body: BODY, headers: bearer(), path: '/intake/v2/events'})
      await send(server.url, {body: ndjson(NODE_METADATA, '{"transaction": {"password": "hunter2"'), headers: bearer(), path: '/intake/v2/events'})
      await send(server.url, {body: BODY, headers: bearer('wrong-token-xyz'), path: '/intake/v2/events'})
      const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
      assert.deepEqual(
        logged.map((line) => [line['log.level'], line.message, line['http.response.status_code'], line['error.message']]),
        [
          ['info', 'request accepted', 202, undefined],
          ['error', 'data validation error', 400, 'data read error'],
          ['error', 'unauthorized', 401, 'authentication failed'],
        ],
      )
      for (const secret of [TOKEN, 'hunter2', 'wrong-token-xyz']) assert.equal(lines.join('').includes(secret), false, secret)
    })
  })

  describe('without a secret token', () => {
    it('lets anyone in and shows the server information to anyone', async () => {
      server = await startServer(serverConfig(tmp.dir, {secretToken: undefined}), quietLogger().logger)
      const info = await send(server.url, {method: 'GET', path: '/'})
      assert.equal(info.status, 200)
      assert.equal((JSON.parse(info.body) as {version: string}).version, '8.15.0')
      assert.equal((await send(server.url, {body: BODY, headers: {Authorization: 'Bearer anything'}, path: '/intake/v2/events'})).status, 202)
    })
  })

  describe('RUM', () => {
    let clock = 1_000_000
    const start = (overrides: Partial<ServerConfig> = {}) =>
      startServer(
        serverConfig(tmp.dir, {
          anonymous: {allowAgent: ['rum-js', 'js-base'], allowService: [], enabled: true, rateLimit: {eventLimit: 1, ipLimit: 10}},
          rum: {allowOrigins: ['https://*.example.com'], enabled: true},
          ...overrides,
        }),
        quietLogger().logger,
        {now: () => clock},
      )

    it('answers a CORS preflight with the Go server headers', async () => {
      server = await start()
      const reply = await send(server.url, {headers: {'Access-Control-Request-Method': 'POST', Origin: 'https://app.example.com'}, method: 'OPTIONS', path: '/intake/v2/rum/events'})
      assert.equal(reply.status, 200)
      assert.equal(reply.body, '')
      assert.deepEqual(
        Object.fromEntries(Object.entries(reply.headers).filter(([name]) => name.startsWith('access-control-') || name === 'vary' || name === 'x-content-type-options')),
        {
          'access-control-allow-headers': 'Content-Type, Content-Encoding, Accept',
          'access-control-allow-methods': 'POST, OPTIONS',
          'access-control-allow-origin': 'https://app.example.com',
          'access-control-expose-headers': 'Etag',
          'access-control-max-age': '3600',
          vary: 'Origin',
          'x-content-type-options': 'nosniff',
        },
      )
    })

    it('refuses an origin outside allow_origins', async () => {
      server = await start()
      const reply = await send(server.url, {body: ndjson(RUM_METADATA, event(1)), headers: {Origin: 'https://evil.test'}, path: '/intake/v2/rum/events'})
      assert.deepEqual([reply.status, reply.body], [403, `{"error":"forbidden request: origin: 'https://evil.test' is not allowed"}\n`])
    })

    it('takes anonymous data from an allowed agent, echoing the origin', async () => {
      server = await start()
      const reply = await send(server.url, {body: ndjson(RUM_METADATA, event(1)), headers: {Origin: 'https://app.example.com'}, path: '/intake/v2/rum/events'})
      assert.equal(reply.status, 202)
      assert.equal(reply.headers['access-control-allow-origin'], 'https://app.example.com')
      assert.equal((await outputLines(tmp.dir)).length, 1)
    })

    it('refuses anonymous data from other agents, on the backend path too', async () => {
      server = await start()
      for (const route of ['/intake/v2/rum/events', '/intake/v2/events']) {
        // eslint-disable-next-line no-await-in-loop -- one route at a time
        const reply = await send(server.url, {body: ndjson(NODE_METADATA, event(1)), headers: {Origin: 'https://app.example.com'}, path: route})
        assert.deepEqual([reply.status, reply.body], [403, '{"accepted":0,"errors":[{"message":"unauthorized: anonymous access not permitted for agent \\"nodejs\\""}]}\n'])
      }

      assert.equal((await outputLines(tmp.dir)).length, 0)
    })

    it('rate limits anonymous clients per IP with 429, and lets them in again later', async () => {
      server = await start()
      const post = () => send(server!.url, {body: ndjson(RUM_METADATA, event(1)), headers: {Origin: 'https://app.example.com'}, path: '/intake/v2/rum/events'})
      // event_limit 1: a burst of 3 tokens; each request spends one for itself and one per event.
      assert.equal((await post()).status, 202)
      const second = await post()
      assert.deepEqual([second.status, second.body], [429, '{"accepted":0,"errors":[{"message":"rate limit exceeded"}]}\n'])
      const third = await post()
      assert.deepEqual([third.status, third.body], [429, '{"error":"too many requests: rate limit exceeded"}\n'])
      clock += 10_000
      assert.equal((await post()).status, 202)
    })

    it('a client with the secret token is not rate limited', async () => {
      server = await start()
      for (let i = 0; i < 5; i++) {
        // eslint-disable-next-line no-await-in-loop -- sequential on purpose
        const reply = await send(server.url, {body: ndjson(NODE_METADATA, event(i)), headers: {...bearer(), Origin: 'https://app.example.com'}, path: '/intake/v2/rum/events'})
        assert.equal(reply.status, 202)
      }
    })
  })

  describe('HTTPS', () => {
    it('serves over TLS with a certificate and an encrypted key', async () => {
      const files = makeCertificate(tmp.dir, 'key-pass-1')
      const ca = readFileSync(files.cert)
      server = await startServer(
        serverConfig(tmp.dir, {ssl: {certificate: files.cert, enabled: true, key: files.encryptedKey, keyPassphrase: 'key-pass-1'}}),
        quietLogger().logger,
      )
      assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/)
      const reply = await send(server.url, {ca, headers: bearer(), method: 'GET', path: '/'})
      assert.equal(reply.status, 200)
      assert.equal((JSON.parse(reply.body) as {version: string}).version, '8.15.0')
      assert.equal((await send(server.url, {body: BODY, ca, headers: bearer(), path: '/intake/v2/events'})).status, 202)
    })

    const bad: [string, (files: ReturnType<typeof makeCertificate>) => ServerConfig['ssl'], RegExp][] = [
      ['a wrong key passphrase', (f) => ({certificate: f.cert, enabled: true, key: f.encryptedKey, keyPassphrase: 'not-the-pass'}), /cannot use the certificate .*cert\.pem with the key .*key-encrypted\.pem/],
      ['a missing certificate', (f) => ({certificate: `${f.cert}.missing`, enabled: true, key: f.key}), /cannot read apm-server\.ssl\.certificate .*cert\.pem\.missing: ENOENT/],
      ['no key', (f) => ({certificate: f.cert, enabled: true}), /apm-server\.ssl\.certificate or apm-server\.ssl\.key is not set/],
      // Read without a bound, /dev/zero filled memory and a FIFO blocked the start (or a reload) for ever.
      ['/dev/zero as the key', (f) => ({certificate: f.cert, enabled: true, key: '/dev/zero'}), /cannot read apm-server\.ssl\.key \/dev\/zero: it is a character device, not a regular file/],
      ['a FIFO as the certificate', (f) => ({certificate: makeFifo(path.dirname(f.cert)), enabled: true, key: f.key}), /cannot read apm-server\.ssl\.certificate .*cert\.fifo: it is a FIFO/],
    ]
    for (const [name, ssl, message] of bad) {
      it(`refuses to start with ${name}, without echoing a secret`, async () => {
        const files = makeCertificate(tmp.dir, 'key-pass-2')
        const error = await startServer(serverConfig(tmp.dir, {ssl: ssl(files)}), quietLogger().logger).then(
          () => assert.fail('started'),
          (error_: Error & {code: string}) => error_,
        )
        assert.equal(error.code, 'ECONFIG')
        assert.match(error.message, message)
        assert.doesNotMatch(error.message, /not-the-pass|key-pass-2/)
      })
    }
  })

  describe('reload', () => {
    let clock = 5_000_000
    const now = () => clock

    it('a new token takes over at once; the old one is accepted for the grace period, then 401', async () => {
      const {lines, logger} = quietLogger()
      server = await startServer(serverConfig(tmp.dir, {secretToken: 'token-one', secretTokenGracePeriodMs: 60_000}), logger, {now})
      const post = (token: string) => send(server!.url, {body: BODY, headers: bearer(token), path: '/intake/v2/events'}).then((reply) => reply.status)
      assert.deepEqual([await post('token-one'), await post('token-two')], [202, 401])
      await server.reload(serverConfig(tmp.dir, {secretToken: 'token-two', secretTokenGracePeriodMs: 60_000}))
      assert.deepEqual([await post('token-one'), await post('token-two')], [202, 202])
      clock += 60_000
      assert.deepEqual([await post('token-one'), await post('token-two')], [401, 202])
      assert.equal(lines.join('').includes('token-'), false, 'no token in the log')
    })

    it('changes nothing when the new configuration cannot be applied', async () => {
      const files = makeCertificate(tmp.dir, 'pass')
      const ssl = {certificate: files.cert, enabled: true, key: files.key}
      server = await startServer(serverConfig(tmp.dir, {secretToken: 'token-one', ssl}), quietLogger().logger)
      await assert.rejects(server.reload(serverConfig(tmp.dir, {secretToken: 'token-two', ssl: {...ssl, key: path.join(tmp.dir, 'gone.pem')}})), /cannot read apm-server\.ssl\.key/)
      const ca = readFileSync(files.cert)
      const status = (token: string) => send(server!.url, {body: BODY, ca, headers: bearer(token), path: '/intake/v2/events'}).then((reply) => reply.status)
      assert.deepEqual([await status('token-one'), await status('token-two')], [202, 401])
    })

    it('warns that host, TLS on/off and output changes need a restart, and keeps them', async () => {
      const {lines, logger} = quietLogger()
      server = await startServer(serverConfig(tmp.dir), logger)
      await server.reload(serverConfig(tmp.dir, {host: '127.0.0.1:1', maxEventSize: 10}))
      assert.match(lines.at(-1)!, /"message":"changes to apm-server.host take effect after a restart"/)
      const reply = await send(server.url, {body: BODY, headers: bearer(), path: '/intake/v2/events'})
      assert.equal(reply.status, 400, 'max_event_size applied at once')
      assert.match(reply.body, /event exceeded the permitted size\./)
    })
  })

  describe('graceful close', () => {
    it('stops accepting, finishes the request in flight, and every accepted event is in the file', async () => {
      server = await startServer(serverConfig(tmp.dir), quietLogger().logger)
      const {url} = server
      const {reply, request} = open(url, {headers: {...bearer(), 'Content-Type': 'application/x-ndjson'}, path: '/intake/v2/events?verbose'})
      request.write(ndjson(NODE_METADATA, event(1), event(2)))
      await sleep(50) // let the request reach the server before closing
      const closed = server.close()
      const port = Number(new URL(url).port)
      await assert.rejects(
        new Promise((resolve, reject) => {
          net.connect(port, '127.0.0.1').on('connect', resolve).on('error', reject)
        }),
        {code: 'ECONNREFUSED'},
      )
      request.end(ndjson(event(3), event(4)))
      const response = await reply
      assert.deepEqual([response.status, response.body, response.headers.connection], [202, '{"accepted":4}\n', 'close'])
      await closed
      server = undefined
      assert.equal((await outputLines(tmp.dir)).length, 4)
    })

    it('bounds the wait for a request that never ends', async () => {
      server = await startServer(serverConfig(tmp.dir), quietLogger().logger, {shutdownTimeoutMs: 200})
      const {reply, request} = open(server.url, {headers: bearer(), path: '/intake/v2/events'})
      const cut = assert.rejects(reply, /socket hang up|ECONNRESET/)
      request.write(ndjson(NODE_METADATA, event(1)))
      await sleep(50)
      await server.close()
      server = undefined
      await cut
    })
  })

  describe('apm-server run', () => {
    afterEach(() => killStartedServers())

    async function keystoreWithToken(cwd: string, token: string) {
      const created = await runCli(['keystore', 'create'], {cwd})
      assert.equal(created.code, 0, created.stderr)
      const added = await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin', '--force'], {cwd, input: token})
      assert.equal(added.code, 0, added.stderr)
    }

    async function writeConfig(cwd: string, extra = '') {
      const yaml = `apm-server:\n  host: "127.0.0.1:0"\n  auth:\n    secret_token: "\${APM_SECRET_TOKEN}"\n${extra}output.file.path: "${path.join(cwd, 'out')}"\n`
      await fs.writeFile(path.join(cwd, 'apm-server.yml'), yaml)
    }

    it('exits 1 with a clear message when the configuration cannot be loaded', async () => {
      await writeConfig(tmp.dir)
      const result = await runCli(['run'], {cwd: tmp.dir})
      assert.equal(result.code, 1)
      assert.equal(result.stdout, '')
      const lines = result.stderr.trimEnd().split('\n')
      assert.match(lines[0], /^error: .*apm-server\.yml:4: apm-server\.auth\.secret_token: .*APM_SECRET_TOKEN/)
      assert.equal(lines.at(-1), 'error: cannot start: a configuration problem; fix the configuration (check it with "apm-server test config")')
    })

    it('logs the Go warning for a token without TLS, and the listening URL', async () => {
      await keystoreWithToken(tmp.dir, 'cli-token-1')
      await writeConfig(tmp.dir)
      const run = await startRun(tmp.dir)
      assert.match(run.url, /^http:\/\/127\.0\.0\.1:\d+$/)
      const messages = run.logs().map((line) => line.message)
      assert.ok(messages.includes('Secret token is set, but SSL is not enabled.'), messages.join('\n'))
      for (const line of run.logs()) assert.deepEqual([typeof line['log.level'], typeof line['@timestamp'], line['ecs.version']], ['string', 'string', '8.10.0'])
      run.child.kill('SIGINT')
      assert.equal(await run.exit, 0)
    })

    it('SIGHUP: reloads rotated tokens (the one replaced stays valid for the grace period), and keeps serving when the keystore breaks', async () => {
      await keystoreWithToken(tmp.dir, 'cli-token-A')
      await writeConfig(tmp.dir, 'apm-server.auth.secret_token_grace_period: 1h\n')
      const run = await startRun(tmp.dir)
      const statuses = (...tokens: string[]) =>
        Promise.all(tokens.map((token) => send(run.url, {body: BODY, headers: bearer(token), path: '/intake/v2/events'}).then((reply) => reply.status)))
      const rotate = async (token: string) => {
        const added = await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin', '--force'], {cwd: tmp.dir, input: token})
        assert.equal(added.code, 0, added.stderr)
        const seen = run.logs().length
        run.child.kill('SIGHUP')
        await run.waitFor('configuration reloaded', seen)
      }

      assert.deepEqual(await statuses('cli-token-A', 'cli-token-B'), [202, 401])
      await rotate('cli-token-B')
      assert.deepEqual(await statuses('cli-token-A', 'cli-token-B'), [202, 202])
      await rotate('cli-token-C')
      assert.deepEqual(await statuses('cli-token-A', 'cli-token-B', 'cli-token-C'), [401, 202, 202])

      // A broken keystore: the reload fails, is logged, and the server keeps the tokens it has.
      await fs.writeFile(path.join(tmp.dir, 'data', 'apm-server.keystore'), 'this is not a keystore')
      const seen = run.logs().length
      run.child.kill('SIGHUP')
      const failed = await run.waitFor('reload failed; still serving with the previous configuration', seen)
      assert.match(JSON.stringify(failed.problems), /keystore/)
      assert.deepEqual(await statuses('cli-token-A', 'cli-token-B', 'cli-token-C'), [401, 202, 202])

      run.child.kill('SIGTERM')
      assert.equal(await run.exit, 0)
      const text = run.logs().map((line) => JSON.stringify(line)).join('\n')
      assert.equal(text.includes('cli-token'), false, 'no token in the log')
    })

    it('SIGTERM with a request in flight: the request finishes, every accepted event is in the file, exit 0', async () => {
      await fs.writeFile(path.join(tmp.dir, 'apm-server.yml'), `apm-server.host: "127.0.0.1:0"\noutput.file.path: "${path.join(tmp.dir, 'out')}"\n`)
      const run = await startRun(tmp.dir)
      const {reply, request} = open(run.url, {headers: {'Content-Type': 'application/x-ndjson'}, path: '/intake/v2/events?verbose'})
      request.write(ndjson(NODE_METADATA, event(1), event(2), event(3)))
      await sleep(100)
      const seen = run.logs().length
      run.child.kill('SIGTERM')
      await run.waitFor('stopping', seen)
      request.end(ndjson(event(4), event(5)))
      const response = await reply
      assert.deepEqual([response.status, response.body], [202, '{"accepted":5}\n'])
      assert.equal(await run.exit, 0)
      assert.equal((await outputLines(tmp.dir)).length, 5)
      const stopped = await run.waitFor('stopped')
      assert.deepEqual((stopped.stats as {events: unknown}).events, {accepted: 5, invalid: 0, tooLarge: 0})
    })
  })
})
