/**
 * The monitoring endpoint in-process (../../../src/server/monitoring/endpoint.ts): GET / and GET /stats
 * with the counts of intake v2, OTLP/HTTP and OTLP/gRPC requests (auth outcomes, previous-token uses by
 * service), never a token; what it refuses (other methods and paths, a default host that is not a
 * loopback address); a port in use; and what a reload of http.* does. The CLI's side (log lines, the
 * refusal at start) is test/e2e/monitoring.test.ts.
 */
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'

import type {MonitoringConfig, ServerConfig} from '../../../src/server/config/server-config.js'
import {createLogger} from '../../../src/server/logger.js'
import {isLoopback, monitoringAddress} from '../../../src/server/monitoring/endpoint.js'
import {RunningServer, startServer} from '../../../src/server/server.js'
import {makeTempDir, ROOT} from '../../helpers/cli.js'
import {encode, grpcCall, kv, RESOURCE, tracesRequest} from '../../helpers/otlp.js'
import {send} from '../../helpers/run-server.js'

const OLD_TOKEN = 'monitoring-old-token-0123456789'
const NEW_TOKEN = 'monitoring-new-token-9876543210'
const MONITORING: MonitoringConfig = {enabled: true, host: 'localhost', hostSet: false, port: 0}

function config(dir: string, overrides: Partial<ServerConfig> = {}): ServerConfig {
  return {
    anonymous: {allowAgent: ['rum-js', 'js-base'], allowService: [], enabled: false, rateLimit: {eventLimit: 300, ipLimit: 1000}},
    host: '127.0.0.1:0',
    maxEventSize: 307_200,
    monitoring: MONITORING,
    output: {filename: 'apm-server', numberOfFiles: 7, path: path.join(dir, 'out'), rotateEveryKb: 10_240},
    paths: {config: dir, data: dir, home: dir, logs: dir},
    rum: {allowOrigins: ['*'], enabled: false},
    secretToken: OLD_TOKEN,
    secretTokenGracePeriodMs: 600_000,
    ssl: {enabled: false},
    ...overrides,
  }
}

const intake = (service: string) =>
  `${JSON.stringify({metadata: {service: {agent: {name: 'python', version: '6.0.0'}, name: service}}})}\n${JSON.stringify({transaction: {duration: 1, id: 'aa', span_count: {started: 0}, trace_id: 'bb', type: 'request'}})}\n`

async function getJson(url: string): Promise<{status: number; body: Record<string, any>; text: string}> {
  const reply = await send(url, {method: 'GET', path: ''})
  return {body: JSON.parse(reply.body) as Record<string, any>, status: reply.status, text: reply.body}
}

/** The documents docs/monitoring.md shows, by heading. */
function documented(): Map<string, unknown> {
  const text = readFileSync(path.join(ROOT, 'docs', 'monitoring.md'), 'utf8')
  return new Map([...text.matchAll(/^### `GET (\/\w*)`\n[\s\S]*?^```json\n([\s\S]*?)^```$/gm)].map((match) => [match[1], JSON.parse(match[2]) as unknown]))
}

/** The same keys, each value of the same JSON type, recursively (arrays by their first element when both have one; `status` by its values). */
function assertShape(actual: unknown, expected: unknown, where: string): void {
  const kind = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value)
  if (where.endsWith('.accepted_until') && actual === null) return
  assert.equal(kind(actual), kind(expected), `${where}: type`)
  if (Array.isArray(expected) && Array.isArray(actual)) {
    if (expected.length > 0 && actual.length > 0) assertShape(actual[0], expected[0], `${where}[0]`)
  } else if (kind(expected) === 'object' && !where.endsWith('.status')) {
    const [a, e] = [actual as Record<string, unknown>, expected as Record<string, unknown>]
    assert.deepEqual(Object.keys(a).sort(), Object.keys(e).sort(), `${where}: keys`)
    for (const key of Object.keys(e)) assertShape(a[key], e[key], `${where}.${key}`)
  }
}

describe('monitoring endpoint (in-process)', function () {
  this.timeout(60_000)
  let tmp: ReturnType<typeof makeTempDir>
  let server: RunningServer | undefined
  let logLines: string[]
  const start = async (overrides: Partial<ServerConfig> = {}) => {
    logLines = []
    server = await startServer(config(tmp.dir, overrides), createLogger({destination: {write: (line: string) => logLines.push(line)}}))
    return server
  }

  beforeEach(() => {
    tmp = makeTempDir('apm-monitoring-test-')
  })
  afterEach(async () => {
    await server?.close()
    server = undefined
    tmp.cleanup()
  })

  it('GET / is the beat information; GET /stats counts requests, responses, events, auth outcomes and the previous token uses of intake v2, OTLP/HTTP and OTLP/gRPC', async () => {
    const running = await start()
    const monitoring = running.monitoringUrl!
    assert.match(monitoring, /^http:\/\/127\.0\.0\.1:\d+$/)
    const info = await getJson(`${monitoring}/`)
    assert.equal(info.status, 200)
    assert.deepEqual(Object.keys(info.body).sort(), ['beat', 'binary_arch', 'build_commit', 'build_time', 'ephemeral_id', 'hostname', 'name', 'version'])
    assert.equal(info.body.beat, 'apm-server')

    const headers = (token: string) => ({Authorization: `Bearer ${token}`, 'Content-Type': 'application/x-ndjson'})
    assert.equal((await send(running.url, {body: intake('before'), headers: headers(OLD_TOKEN), path: '/intake/v2/events'})).status, 202)
    await running.reload(config(tmp.dir, {secretToken: NEW_TOKEN}))
    assert.equal((await send(running.url, {body: intake('checkout'), headers: headers(OLD_TOKEN), path: '/intake/v2/events'})).status, 202)
    assert.equal((await send(running.url, {body: intake('cart'), headers: headers(NEW_TOKEN), path: '/intake/v2/events'})).status, 202)
    assert.equal((await send(running.url, {body: intake('x'), headers: headers('wrong'), path: '/intake/v2/events'})).status, 401)
    const otelHttp = {attributes: [kv('service.name', 'otel-http'), kv('telemetry.sdk.language', 'go')]}
    const httpReply = await send(running.url, {body: encode('traces', tracesRequest(otelHttp)), headers: {Authorization: `Bearer ${OLD_TOKEN}`, 'Content-Type': 'application/x-protobuf'}, path: '/v1/traces'})
    assert.equal(httpReply.status, 200)
    const grpc = await grpcCall(running.url, encode('traces', tracesRequest(RESOURCE)), {token: OLD_TOKEN})
    assert.equal(grpc.grpcStatus, 0)

    const {body, text} = await getJson(`${monitoring}/stats`)
    const apm = body['apm-server']
    assert.deepEqual(apm.auth, {anonymous: 0, failed: 1, none: 0, previous_token: 3, secret_token: 2})
    assert.equal(apm.previous_token.requests, 3)
    assert.deepEqual(apm.previous_token.services.top, [
      {agent: 'python', requests: 1, service: 'checkout'},
      {agent: 'go', requests: 1, service: 'otel-http'},
      {agent: 'nodejs', requests: 1, service: 'otel-svc'},
    ])
    assert.deepEqual(apm.previous_token.addresses.top, [{address: '127.0.0.1', requests: 3}])
    assert.match(apm.previous_token.accepted_until, /^\d{4}-\d\d-\d\dT/)
    assert.equal(apm.server.request.count, 6)
    assert.equal(apm.server.response.errors.unauthorized, 1)
    assert.equal(apm.server.response.valid.accepted, 3)
    assert.equal(apm.processor.stream.accepted, 9, 'one event a v2 request, three an OTLP one')
    assert.deepEqual(body.libbeat.output.type, 'file')
    assert.ok(body.libbeat.output.events.acked >= 3)
    assert.equal(body.beat.info.ephemeral_id, info.body.ephemeral_id)
    for (const secret of [OLD_TOKEN, NEW_TOKEN, 'Bearer']) assert.ok(!text.includes(secret), `${secret} in /stats`)

    const shapes = documented()
    assert.deepEqual([...shapes.keys()], ['/', '/stats'])
    assertShape(info.body, shapes.get('/'), 'GET /')
    assertShape(body, shapes.get('/stats'), 'GET /stats')

    const pretty = await send(monitoring, {method: 'GET', path: '/stats?pretty'})
    assert.match(pretty.body, /^\{\n {2}"apm-server": \{\n/)
  })

  it('answers only GET / and GET /stats: 405 to other methods, 404 to other paths, and reads no body', async () => {
    const {monitoringUrl} = await start()
    const post = await send(monitoringUrl!, {body: 'x'.repeat(100_000), method: 'POST', path: '/stats'})
    assert.equal(post.status, 405)
    assert.equal(post.headers.allow, 'GET, HEAD')
    assert.equal(post.headers.connection, 'close')
    const missing = await send(monitoringUrl!, {method: 'GET', path: '/state'})
    assert.equal(missing.status, 404)
    assert.deepEqual(JSON.parse(missing.body), {error: 'not found: the monitoring endpoint serves GET / and GET /stats'})
  })

  it('a request target that is no URL path (//host:99999, *, absolute) is a 404, never an exception', async () => {
    const {monitoringUrl} = await start()
    const {port} = new URL(monitoringUrl!)
    for (const target of ['//x:99999', '//[', '*', 'http://a:99999/stats']) {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`))
        let text = ''
        socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
        socket.on('end', () => resolve(text))
        socket.on('error', reject)
      })
      assert.match(answer, /^HTTP\/1\.1 404 /, target)
    }

    assert.equal((await send(monitoringUrl!, {method: 'GET', path: '/'})).status, 200)
  })

  it('is off by default and when http.enabled is false', async () => {
    assert.equal((await start({monitoring: undefined})).monitoringUrl, undefined)
    await server!.close()
    assert.equal((await start({monitoring: {...MONITORING, enabled: false}})).monitoringUrl, undefined)
  })

  it('a port in use stops the start (ECONFIG naming http.port and the fix)', async () => {
    const blocker = net.createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const {port} = blocker.address() as net.AddressInfo
    try {
      await assert.rejects(start({monitoring: {...MONITORING, host: '127.0.0.1', hostSet: true, port}}), (error: Error & {code?: string}) => {
        assert.equal(error.code, 'ECONFIG')
        assert.equal(error.message, `cannot listen on 127.0.0.1:${port} for the monitoring endpoint: the address is in use; stop the other process, or change http.port (or set http.enabled: false)`)
        return true
      })
    } finally {
      blocker.close()
    }
  })

  it('a reload that turns http.enabled off closes the endpoint at once; other http.* changes wait for a restart, with a warning', async () => {
    const running = await start()
    const url = running.monitoringUrl!
    await running.reload(config(tmp.dir, {monitoring: {...MONITORING, port: 5999}}))
    assert.ok(logLines.some((line) => JSON.parse(line).message === 'changes to http.port take effect after a restart'), logLines.join('\n'))
    assert.equal((await send(url, {method: 'GET', path: '/'})).status, 200, 'still served where it listened')
    await running.reload(config(tmp.dir, {monitoring: {...MONITORING, enabled: false}}))
    assert.equal(running.monitoringUrl, undefined)
    await assert.rejects(send(url, {method: 'GET', path: '/'}), {code: 'ECONNREFUSED'})
    await running.reload(config(tmp.dir))
    assert.equal(JSON.parse(logLines.at(-1)!).message, 'changes to http.enabled take effect after a restart')
  })

  describe('where it may listen', () => {
    const lookupOf = (...addresses: string[]) => (async () => addresses.map((address) => ({address, family: net.isIP(address)}))) as unknown as typeof import('node:dns').promises.lookup

    it('the default host must resolve to loopback addresses only: one that names another address is refused', async () => {
      assert.equal(await monitoringAddress(MONITORING, lookupOf('::1', '127.0.0.1')), '127.0.0.1')
      await assert.rejects(monitoringAddress(MONITORING, lookupOf('127.0.0.1', '192.0.2.10')), {
        code: 'ECONFIG',
        message: `the monitoring endpoint's default host "localhost" resolves to 192.0.2.10 here, not a loopback address, and the endpoint has no authentication; make localhost resolve to 127.0.0.1 or ::1 (/etc/hosts), or set http.host explicitly`,
      })
    })

    it('an http.host set explicitly may be any address (the start then warns)', async () => {
      assert.equal(await monitoringAddress({...MONITORING, host: 'monitor.example', hostSet: true}, lookupOf('192.0.2.10')), '192.0.2.10')
      assert.equal(await monitoringAddress({...MONITORING, host: '0.0.0.0', hostSet: true}), '0.0.0.0')
      const running = await start({monitoring: {...MONITORING, host: '0.0.0.0', hostSet: true}})
      const warning = logLines.map((line) => JSON.parse(line) as {message: string}).find((line) => line.message.startsWith('the monitoring endpoint listens on 0.0.0.0'))
      assert.ok(warning, logLines.join('\n'))
      assert.match(running.monitoringUrl!, /^http:\/\/0\.0\.0\.0:\d+$/)
    })

    it('knows loopback addresses', () => {
      for (const address of ['127.0.0.1', '127.255.0.9', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopback(address), true, address)
      for (const address of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', 'localhost', '']) assert.equal(isLoopback(address), false, address)
    })
  })
})

