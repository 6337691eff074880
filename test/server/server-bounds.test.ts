/**
 * The server's bounds under hostile requests (issue 11: items 1, 5, 7, 8, 12), in-process: a request
 * never ends the process, its output and the memory it holds are bounded, client text in the log is
 * cut, and close() has one hard bound.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'
import {gzipSync} from 'node:zlib'

import type {ServerConfig} from '../../src/server/config/server-config.js'
import {createLogger} from '../../src/server/logger.js'
import {RunningServer, startServer, StartOptions} from '../../src/server/server.js'
import {makeTempDir} from '../helpers/cli.js'
import {testServerConfig} from '../helpers/server-config.js'

const TOKEN = 'bounds-test-token'
const RUM_METADATA = JSON.stringify({metadata: {service: {agent: {name: 'rum-js', version: '5.16.0'}, name: 'web'}}})
const NODE_METADATA = JSON.stringify({metadata: {service: {agent: {name: 'nodejs', version: '4.18.0'}, name: 'svc'}}})
const ndjson = (...lines: string[]) => lines.map((line) => `${line}\n`).join('')
const deep = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`

function config(dir: string): ServerConfig {
  return testServerConfig(dir, {anonymous: {allowAgent: ['rum-js', 'js-base'], allowService: [], enabled: true, rateLimit: {eventLimit: 300, ipLimit: 1000}}, rum: {allowOrigins: ['*'], enabled: true}, secretToken: TOKEN})
}

interface Reply {
  status: number
  body: string
}

/** POSTs `body` (chunked when `chunked`, else with its length) and reads the answer. */
function post(url: string, route: string, body: Buffer | string, headers: Record<string, string> = {}, chunked = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(body)
    const request = http.request(
      `${url}${route}`,
      {agent: false, headers: {'Content-Type': 'application/x-ndjson', ...headers, ...(chunked ? {'Transfer-Encoding': 'chunked'} : {'Content-Length': String(data.length)})}, method: 'POST'},
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => resolve({body: Buffer.concat(chunks).toString('utf8'), status: res.statusCode!}))
      },
    )
    request.on('error', reject)
    request.end(data)
  })
}

function get(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}/`, {agent: false}, (res) => {
        res.resume()
        resolve(res.statusCode!)
      })
      .on('error', reject)
  })
}

/** A request sent whole over a raw socket, its answer never read: the socket, to destroy. */
function sendRaw(url: string, route: string, body: Buffer, headers: string): Promise<net.Socket> {
  const {port} = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => {
      socket.write(`POST ${route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n${headers}Content-Length: ${body.length}\r\n\r\n`)
      socket.write(body, () => resolve(socket))
    })
    socket.on('error', reject)
  })
}

/** Resolves with how long `promise` took, or rejects when it takes longer than `ms` (a hang, not a speed test). */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<number> {
  const t0 = Date.now()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    promise,
    new Promise((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} still not done after ${ms} ms`)), ms)
    }),
  ])
  clearTimeout(timer)
  return Date.now() - t0
}

describe('server bounds (issue 11)', function () {
  this.timeout(60_000)
  let tmp: ReturnType<typeof makeTempDir>
  let server: RunningServer | undefined
  let lines: string[]
  const start = async (options: StartOptions = {}) => {
    lines = []
    server = await startServer(config(tmp.dir), createLogger({destination: {write: (line: string) => lines.push(line)}}), options)
    return server
  }

  beforeEach(() => {
    tmp = makeTempDir('apm-bounds-test-')
  })
  afterEach(async () => {
    await server?.close()
    server = undefined
    tmp.cleanup()
  })

  describe('a request nested 6,000 deep (item 1)', () => {
    const metadata = RUM_METADATA.replace('}}}', `},"x":${deep(6000)}}}`)
    const cases: Array<[string, string, Buffer, Record<string, string>, boolean]> = [
      ['anonymous, 119 bytes of gzip, chunked', '/intake/v2/events', gzipSync(ndjson(metadata)), {'Content-Encoding': 'gzip'}, true],
      ['anonymous, the same with a Content-Length', '/intake/v2/events', gzipSync(ndjson(metadata)), {'Content-Encoding': 'gzip'}, false],
      ['with the token, the same metadata', '/intake/v2/events', gzipSync(ndjson(metadata)), {Authorization: `Bearer ${TOKEN}`, 'Content-Encoding': 'gzip'}, true],
      ['RUM, a plain 12 KB body, chunked, the event nested', '/intake/v2/rum/events', Buffer.from(ndjson(RUM_METADATA, `{"transaction":{"x":${deep(6000)}}}`)), {}, true],
    ]
    for (const [name, route, body, headers, chunked] of cases) {
      it(`${name}: 400, and the server goes on`, async () => {
        const {url} = await start()
        const reply = await post(url, route, body, headers, chunked)
        assert.equal(reply.status, 400, reply.body)
        assert.equal(await get(url), 200)
        assert.equal((await post(url, '/intake/v2/rum/events', ndjson(RUM_METADATA, '{"span":{}}'))).status, 202)
      })
    }
  })

  it('a token request whose events would write more than 64 times its size (300 KB of metadata, 900 spans): 400, listing what was accepted (item 5)', async () => {
    const {url} = await start()
    const metadata = NODE_METADATA.replace('}}}', `},"labels":{"pad":"${'x'.repeat(300_000)}"}}}`)
    const body = ndjson(metadata, ...Array.from({length: 900}, () => '{"span":{}}'))
    const reply = await post(url, '/intake/v2/events', gzipSync(body), {Authorization: `Bearer ${TOKEN}`, 'Content-Encoding': 'gzip'})
    const parsed = JSON.parse(reply.body) as {accepted: number; errors: Array<{message: string}>}
    assert.equal(reply.status, 400)
    assert.match(parsed.errors[0].message, /^output limit exceeded: the events of this request would write more than 64 times its own size/)
    assert.ok(parsed.accepted > 0 && parsed.accepted < 900 && parsed.accepted * metadata.length <= 64 * body.length, `${parsed.accepted} accepted`)
  })

  it('answers 503 "queue is full" past the memory budget, and still answers GET / (item 7)', async () => {
    const {url} = await start({memoryBudgetBytes: 4 * 1024 * 1024 + 96 * 1024})
    // Agents holding streamed gzip requests open: each holds a zlib stream (64 KiB of the budget).
    const open = () => {
      const request = http.request(`${url}/intake/v2/events`, {agent: false, headers: {Authorization: `Bearer ${TOKEN}`, 'Content-Encoding': 'gzip', 'Content-Type': 'application/x-ndjson'}, method: 'POST'})
      const reply = new Promise<Reply>((resolve, reject) => {
        request.on('response', (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () => resolve({body: Buffer.concat(chunks).toString('utf8'), status: res.statusCode!}))
        })
        request.on('error', reject)
      })
      request.write(gzipSync(`${NODE_METADATA}\n`).subarray(0, 20))
      return {reply, request}
    }

    const first = open()
    await sleep(100)
    const second = open()
    const refused = await second.reply
    assert.deepEqual([refused.status, JSON.parse(refused.body)], [503, {accepted: 0, errors: [{message: 'queue is full'}]}])
    assert.equal(await get(url), 200)
    first.request.destroy()
    await sleep(100)
    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line['http.response.status_code'] === 503)
    assert.deepEqual([logged?.message, logged?.['error.message']], ['queue is full', 'queue is full'])
  })

  it('cuts client text in the request log and counts repeats: five 300,000-character type names log under 1 KiB (item 8)', async () => {
    const {url} = await start()
    const line = `{"${'A'.repeat(300_000)}":{}}`
    const reply = await post(url, '/intake/v2/rum/events', ndjson(RUM_METADATA, line, line, line, line, line))
    assert.equal(reply.status, 400)
    assert.ok(reply.body.length < 8 * 1024, `a response of ${reply.body.length} bytes`)
    await sleep(50)
    const logged = lines.find((text) => text.includes('"http.response.status_code":400'))!
    assert.ok(logged.length < 1024, `a log line of ${logged.length} bytes`)
    assert.match(logged, /did not recognize object type: \\"A{128}…\(299872 more\)\\" \(5 times\)/)
  })

  describe('close() after gzip bombs whose whole body arrived (item 12)', () => {
    // 60 MB of one-byte lines in under 64 KiB of gzip: read whole, too large to decode whole, so streamed;
    // every line is judged and refused, seconds of work after the body's end.
    const bomb = gzipSync(Buffer.concat([Buffer.from(`${NODE_METADATA}\n`), Buffer.from('x\n'.repeat(30 * 1024 * 1024))]), {level: 9})
    const headers = `Authorization: Bearer ${TOKEN}\r\nContent-Encoding: gzip\r\n`

    it('a killed client ends its request at once: close() does not wait for its body to be read', async () => {
      assert.ok(bomb.length <= 64 * 1024, `${bomb.length} bytes`)
      const {url} = await start({shutdownTimeoutMs: 60_000})
      const sockets = await Promise.all([1, 2, 3].map(() => sendRaw(url, '/intake/v2/events', bomb, headers)))
      await sleep(300)
      for (const socket of sockets) socket.destroy()
      await sleep(100)
      await within(5000, 'close()', server!.close())
      server = undefined
    })

    it('a client still connected is cut at the shutdown timeout, and close() resolves one grace second later at most', async () => {
      const {url} = await start({shutdownTimeoutMs: 200})
      const sockets = await Promise.all([1, 2, 3].map(() => sendRaw(url, '/intake/v2/events', bomb, headers)))
      await sleep(300)
      await within(5000, 'close()', server!.close())
      server = undefined
      for (const socket of sockets) socket.destroy()
    })
  })
})
