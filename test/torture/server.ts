/**
 * Server abuse: `apm-server run` (the real CLI, a secret token from the keystore, loopback only) under
 * malformed gzip, a 100 MB line, thousands of tiny lines, slowloris, 1,000 concurrent connections, bad
 * TLS handshakes, header injection and wrong/missing/garbled Authorization at volume. Throughout, a
 * valid agent keeps sending events and must keep getting 202; the server's resident memory is sampled;
 * after SIGTERM the server exits 0 and every event it accepted (202, or counted in a 4xx body) is in
 * the output file; the token never appears in its logs or output.
 *
 * Plus the timing check of the token comparison (checkTiming).
 */
import {ChildProcess, execFile, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {promises as fs} from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import {promisify} from 'node:util'
import {createGzip, gzipSync} from 'node:zlib'

import {Authenticator} from '../../src/server/auth.js'
import {BIN, cleanEnv} from '../helpers/cli.js'
import {canaryForms} from './leaks.js'
import {CheckResult, cli, fail, memoryOf, newResult, pool, sleep, tempDir, TempDir} from './lib.js'

const run = promisify(execFile)

export interface ServerTortureOptions {
  scale: 'fast' | 'full'
  seed: number
}

/** Sizes per scale. */
function sizes(scale: ServerTortureOptions['scale']) {
  const full = scale === 'full'
  return {
    authRequests: full ? 20_000 : 600,
    bigLineBytes: full ? 100 * 1024 * 1024 : 8 * 1024 * 1024,
    bombBytes: full ? 1024 * 1024 * 1024 : 32 * 1024 * 1024,
    concurrent: full ? 1000 : 100,
    slowSockets: full ? 500 : 40,
    slowSeconds: full ? 20 : 2,
    tinyLines: full ? 100_000 : 5000,
    tlsAbuse: full ? 300 : 15,
  }
}

export interface Launched {
  url: string
  pid: number
  child: ChildProcess
  home: TempDir
  token: string
  logs: () => string
  ca?: Buffer
  /** peak resident memory (MiB) since the last call */
  peakSinceMark: () => number
  peak: number
  baseline: number
  stop: () => Promise<{code: null | number; ms: number}>
}

/** Starts `apm-server run` on 127.0.0.1 with a random secret token taken from the keystore. */
export interface LaunchOptions {
  tls?: boolean
  extra?: string[]
  /** more environment for the server */
  env?: Record<string, string>
  /** a command the server runs under (e.g. prlimit and its options) */
  wrap?: string[]
  /** written to apm-server.yml in the server's directory before it starts */
  config?: string
  /** runs in the server's directory once its keystore holds APM_TOKEN, before the server starts (more keys, say) */
  prepare?: (cwd: string) => Promise<void>
}

export async function launch(options: LaunchOptions): Promise<Launched> {
  const home = tempDir('apm-torture-server-')
  try {
    return await launchIn(home, options)
  } catch (error) {
    home.cleanup()
    throw error
  }
}

async function launchIn(home: TempDir, options: LaunchOptions): Promise<Launched> {
  const cwd = home.dir
  const token = `TOKEN${randomBytes(16).toString('hex')}`
  await cli(['keystore', 'create'], {cwd})
  const added = await cli(['keystore', 'add', 'APM_TOKEN', '--stdin'], {cwd, input: token})
  if (added.code !== 0) throw new Error(`keystore add failed: ${added.stderr}`)
  await options.prepare?.(cwd)
  const args = ['run', '-E', 'apm-server.host=127.0.0.1:0', '-E', 'apm-server.auth.secret_token=${APM_TOKEN}', ...(options.extra ?? [])]
  let ca: Buffer | undefined
  if (options.tls) {
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], {cwd})
    ca = await fs.readFile(path.join(cwd, 'cert.pem'))
    args.push('-E', 'apm-server.ssl.enabled=true', '-E', `apm-server.ssl.certificate=${path.join(cwd, 'cert.pem')}`, '-E', `apm-server.ssl.key=${path.join(cwd, 'key.pem')}`)
  }

  if (options.config !== undefined) await fs.writeFile(path.join(cwd, 'apm-server.yml'), options.config, {mode: 0o600})
  const [command, ...prefix] = [...(options.wrap ?? []), process.execPath]
  const child = spawn(command, [...prefix, BIN, ...args], {cwd, env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe']})
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  child.stdout!.on('data', () => {})
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr.slice(-500)}`)), 60_000)
    const check = () => {
      const match = /"url":"([^"]+)"/.exec(stderr)
      if (match) {
        clearTimeout(timer)
        child.stderr!.off('data', check)
        resolve(match[1])
      }
    }

    child.stderr!.on('data', check)
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${stderr.slice(-500)}`)))
  }).catch((error: Error) => {
    child.kill('SIGKILL')
    throw error
  })
  const pid = child.pid!
  const launched: Launched = {
    baseline: memoryOf(pid)?.rssMiB ?? 0,
    ca,
    child,
    home,
    logs: () => stderr,
    peak: 0,
    peakSinceMark: () => 0,
    pid,
    stop: async () => {
      clearInterval(sampler)
      const t0 = Date.now()
      // Ended already (a crash ends it by a signal: exitCode stays null).
      if (child.exitCode !== null || child.signalCode !== null) return {code: child.exitCode, ms: 0}
      const exited = new Promise<null | number>((resolve) => {
        child.once('exit', (code) => resolve(code))
      })
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
      const code = await exited
      clearTimeout(timer)
      return {code, ms: Date.now() - t0}
    },
    token,
    url,
  }
  let sinceMark = 0
  const sampler = setInterval(() => {
    const memory = memoryOf(pid)
    if (!memory) return
    sinceMark = Math.max(sinceMark, memory.rssMiB)
    launched.peak = Math.max(launched.peak, memory.rssMiB)
  }, 25)
  launched.peakSinceMark = () => {
    const value = sinceMark
    sinceMark = memoryOf(pid)?.rssMiB ?? 0
    return value
  }

  return launched
}

export const METADATA = JSON.stringify({metadata: {service: {agent: {name: 'nodejs', version: '4.0.0'}, name: 'torture-svc'}}})
const event = (id: string) => JSON.stringify({transaction: {duration: 1, id, span_count: {started: 0}, trace_id: id, type: 'request'}})
export const eventsBody = (ids: string[]) => `${[METADATA, ...ids.map(event)].join('\n')}\n`

export interface Reply {
  status: number
  body: string
  headers: http.IncomingHttpHeaders
}

/** One HTTP(S) request; `body` may be a Buffer or a generator of chunks (streamed). */
export function request(
  url: string,
  options: {method?: string; path?: string; headers?: Record<string, string>; body?: Buffer | string | (() => AsyncGenerator<Buffer>); agent?: http.Agent | false; ca?: Buffer; timeoutMs?: number},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const target = new URL(options.path ?? '/intake/v2/events', url)
    const lib = target.protocol === 'https:' ? https : http
    const req = lib.request(
      target,
      {agent: options.agent, ca: options.ca, headers: options.headers, method: options.method ?? 'POST'},
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => resolve({body: Buffer.concat(chunks).toString(), headers: res.headers, status: res.statusCode ?? 0}))
        res.on('error', reject)
      },
    )
    req.setTimeout(options.timeoutMs ?? 120_000, () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    const body = options.body
    if (typeof body === 'function') {
      ;(async () => {
        for await (const chunk of body()) {
          if (!req.write(chunk)) await new Promise((resolve) => req.once('drain', resolve))
          if (req.destroyed) return
        }

        req.end()
      })().catch(reject)
    } else {
      req.end(body)
    }
  })
}

/** Ids accepted by the server, from 202s and from the `accepted` count of 4xx bodies (events are taken in order). */
class Ledger {
  readonly accepted = new Set<string>()
  record(ids: string[], reply: Reply): void {
    if (reply.status === 202) {
      for (const id of ids) this.accepted.add(id)
      return
    }

    try {
      const count = (JSON.parse(reply.body) as {accepted?: number}).accepted ?? 0
      for (const id of ids.slice(0, count)) this.accepted.add(id)
    } catch {
      // no body: nothing accepted
    }
  }
}

let serial = 0
const newIds = (prefix: string, n: number) => Array.from({length: n}, () => `${prefix}${(serial++).toString(36)}`)

/** A well-behaved agent sending a few events every ~50 ms until stopped; every request must get 202. */
class ValidAgent {
  sent = 0
  ok = 0
  failures: string[] = []
  latencies: number[] = []
  private running = true
  private done: Promise<void>
  private readonly agent: http.Agent

  constructor(
    private readonly server: Launched,
    private readonly ledger: Ledger,
  ) {
    this.agent = server.url.startsWith('https') ? new https.Agent({ca: server.ca, keepAlive: true}) : new http.Agent({keepAlive: true})
    this.done = this.loop()
  }

  async stop(): Promise<void> {
    this.running = false
    await this.done
    this.agent.destroy()
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const ids = newIds('valid-', 3)
      const t0 = Date.now()
      this.sent++
      try {
        // eslint-disable-next-line no-await-in-loop -- one request at a time, like an agent
        const reply = await request(this.server.url, {
          agent: this.agent,
          body: eventsBody(ids),
          ca: this.server.ca,
          headers: {Authorization: `Bearer ${this.server.token}`, 'Content-Type': 'application/x-ndjson'},
          timeoutMs: 30_000,
        })
        this.ledger.record(ids, reply)
        this.latencies.push(Date.now() - t0)
        if (reply.status === 202) this.ok++
        else if (this.failures.length < 5) this.failures.push(`valid agent got ${reply.status}: ${reply.body.slice(0, 200)}`)
      } catch (error) {
        if (this.failures.length < 5) this.failures.push(`valid agent request failed: ${(error as Error).message}`)
      }

      // eslint-disable-next-line no-await-in-loop -- pacing
      await sleep(50)
    }
  }

  summary(): string {
    const sorted = [...this.latencies].sort((a, b) => a - b)
    const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? 0
    return `valid agent ${this.ok}/${this.sent} got 202 (p99 ${p99} ms)`
  }
}

interface Scenario {
  name: string
  run: (server: Launched, ledger: Ledger, result: CheckResult) => Promise<string>
}

const ndjson = {'Content-Type': 'application/x-ndjson'}

function scenarios(size: ReturnType<typeof sizes>): Scenario[] {
  const auth = (server: Launched) => ({...ndjson, Authorization: `Bearer ${server.token}`})
  return [
    {
      name: 'malformed and hostile gzip/deflate bodies',
      async run(server, ledger, result) {
        const valid = gzipSync(eventsBody(newIds('gz-', 3)))
        const bomb = await gzipStream(async function* () {
          yield Buffer.from(`${METADATA}\n{"transaction":{"id":"`)
          const chunk = Buffer.alloc(1024 * 1024, 0x61)
          for (let sent = 0; sent < size.bombBytes; sent += chunk.length) yield chunk
        })
        const cases: Array<[string, Buffer, Record<string, string>]> = [
          ['garbage with Content-Encoding: gzip', randomBytes(4096), {'Content-Encoding': 'gzip'}],
          ['garbage with Content-Encoding: deflate', randomBytes(4096), {'Content-Encoding': 'deflate'}],
          ['truncated gzip', valid.subarray(0, Math.floor(valid.length / 2)), {'Content-Encoding': 'gzip'}],
          ['gzip magic, then garbage (sniffed)', Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(2048)]), {}],
          ['zlib-looking first byte, then garbage (sniffed)', Buffer.concat([Buffer.from([0x78, 0x9c]), randomBytes(2048)]), {}],
          ['valid gzip with trailing garbage', Buffer.concat([valid, randomBytes(512)]), {'Content-Encoding': 'gzip'}],
          [`gzip bomb: ${Math.round(size.bombBytes / 2 ** 20)} MiB of one line in ${Math.round(bomb.length / 1024)} KiB`, bomb, {'Content-Encoding': 'gzip'}],
        ]
        let ok = 0
        for (const [label, body, headers] of cases) {
          // eslint-disable-next-line no-await-in-loop -- one at a time, memory measured per case
          const reply = await request(server.url, {body, headers: {...auth(server), ...headers}})
          if (reply.status >= 400 && reply.status < 500) ok++
          else fail(result, `server: ${label}: status ${reply.status}, expected 4xx`)
        }

        return `${ok}/${cases.length} answered 4xx`
      },
    },
    {
      name: `a single ${Math.round(size.bigLineBytes / 2 ** 20)} MB line, then a valid event`,
      async run(server, ledger, result) {
        const [after] = newIds('after-big-', 1)
        const reply = await request(server.url, {
          async *body() {
            yield Buffer.from(`${METADATA}\n{"transaction":{"id":"big","name":"`)
            const chunk = Buffer.alloc(1024 * 1024, 0x62)
            for (let sent = 0; sent < size.bigLineBytes; sent += chunk.length) yield chunk
            yield Buffer.from(`"}}\n${event(after)}\n`)
          },
          headers: auth(server),
        })
        ledger.record([after], reply)
        const body = safeJson(reply.body) as {accepted?: number; errors?: Array<{message: string}>}
        const good = reply.status === 400 && body?.accepted === 1 && body.errors?.[0]?.message === 'event exceeded the permitted size.'
        if (!good) fail(result, `server: ${Math.round(size.bigLineBytes / 2 ** 20)} MB line: status ${reply.status}, body ${reply.body.slice(0, 200)}`)
        const [metaAfter] = newIds('after-bigmeta-', 1)
        const meta = await request(server.url, {
          async *body() {
            yield Buffer.from('{"metadata":{"service":{"name":"')
            const chunk = Buffer.alloc(1024 * 1024, 0x63)
            for (let sent = 0; sent < size.bigLineBytes; sent += chunk.length) yield chunk
            yield Buffer.from(`"}}}\n${event(metaAfter)}\n`)
          },
          headers: auth(server),
        }).catch((error: Error) => ({body: error.message, headers: {}, status: 0}))
        ledger.record([metaAfter], meta)
        if (meta.status !== 400 && meta.status !== 0) fail(result, `server: ${Math.round(size.bigLineBytes / 2 ** 20)} MB metadata line: status ${meta.status}`)
        return `event line: ${reply.status}, the event after it accepted: ${body?.accepted === 1 ? 'yes' : 'NO'}; metadata line: ${meta.status || 'connection closed'}`
      },
    },
    {
      name: `${size.tinyLines.toLocaleString('en')} tiny events in one request; ${size.tinyLines.toLocaleString('en')} empty and invalid lines in another`,
      async run(server, ledger, result) {
        const ids = newIds('tiny-', size.tinyLines)
        const reply = await request(server.url, {body: eventsBody(ids), headers: auth(server)})
        ledger.record(ids, reply)
        if (reply.status !== 202) fail(result, `server: ${ids.length} tiny events: status ${reply.status}: ${reply.body.slice(0, 200)}`)
        const junk = `${METADATA}\n${'\n'.repeat(size.tinyLines)}${'{}\n'.repeat(size.tinyLines / 10)}${'x\n'.repeat(size.tinyLines / 10)}`
        const bad = await request(server.url, {body: junk, headers: auth(server)})
        const body = safeJson(bad.body) as {errors?: unknown[]}
        if (bad.status !== 400 || (body?.errors?.length ?? 99) > 6) fail(result, `server: invalid lines: status ${bad.status}, ${body?.errors?.length} errors listed`)
        return `tiny: ${reply.status}; invalid lines: ${bad.status} with ${body?.errors?.length} errors listed`
      },
    },
    {
      name: `slowloris: ${size.slowSockets} connections trickling headers and ${size.slowSockets} trickling bodies for ${size.slowSeconds} s`,
      async run(server) {
        const {port} = new URL(server.url)
        const sockets: net.Socket[] = []
        let closedByServer = 0
        const open = (first: string, drip: string) => {
          const socket = net.connect(Number(port), '127.0.0.1', () => socket.write(first))
          socket.on('error', () => {})
          socket.on('close', () => closedByServer++)
          const timer = setInterval(() => socket.writable && socket.write(drip), 500)
          socket.once('close', () => clearInterval(timer))
          sockets.push(socket)
        }

        for (let i = 0; i < size.slowSockets; i++) {
          open('POST /intake/v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\n', 'X-Slow: 1\r\n')
          open(`POST /intake/v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.token}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000000\r\n\r\n${METADATA}\n`, ' ')
        }

        await sleep(size.slowSeconds * 1000)
        const stillOpen = sockets.length - closedByServer
        for (const socket of sockets) socket.destroy()
        return `${stillOpen} of ${sockets.length} slow connections still open after ${size.slowSeconds} s (Node's headersTimeout 60 s / requestTimeout 300 s bound them)`
      },
    },
    {
      name: `${size.concurrent} concurrent connections, one request each`,
      async run(server, ledger, result) {
        const batches = Array.from({length: size.concurrent}, () => newIds('conc-', 2))
        const replies = await Promise.all(
          batches.map((ids) =>
            request(server.url, {agent: false, body: eventsBody(ids), headers: auth(server), timeoutMs: 120_000}).then(
              (reply) => {
                ledger.record(ids, reply)
                return reply.status
              },
              (error: Error) => `error ${error.message}`,
            ),
          ),
        )
        const ok = replies.filter((status) => status === 202).length
        if (ok !== replies.length) fail(result, `server: ${replies.length} concurrent connections: ${ok} got 202; others: ${[...new Set(replies.filter((s) => s !== 202))].slice(0, 5).join(', ')}`)
        return `${ok}/${replies.length} got 202`
      },
    },
    {
      name: 'header injection and request smuggling (raw sockets)',
      async run(server, _ledger, result) {
        const {port} = new URL(server.url)
        const body = eventsBody(newIds('smuggle-', 1))
        const cases: Array<[string, string, (status: number) => boolean]> = [
          ['two Authorization headers, the first wrong', `Authorization: Bearer wrong\r\nAuthorization: Bearer ${server.token}\r\n`, (s) => s === 401],
          ['obs-fold in Authorization', `Authorization: Bearer\r\n ${server.token}\r\n`, (s) => s === 400 || s === 401],
          ['NUL in a header value', `Authorization: Bearer ${server.token}\u0000x\r\n`, (s) => s === 400],
          ['Content-Length and Transfer-Encoding', `Authorization: Bearer ${server.token}\r\nTransfer-Encoding: chunked\r\n`, (s) => s === 400],
          ['two different Content-Lengths', `Authorization: Bearer ${server.token}\r\nContent-Length: 5\r\n`, (s) => s === 400],
          ['64 KiB header', `Authorization: Bearer ${server.token}\r\nX-Big: ${'a'.repeat(65_536)}\r\n`, (s) => s === 431],
          // The server answers 431 and closes while the client is still sending: the reset may eat the answer.
          ['1 MiB Authorization', `Authorization: Bearer ${'t'.repeat(1024 * 1024)}\r\n`, (s) => s === 431 || s === 0],
          ['DEL and 8-bit bytes in Authorization', `Authorization: Bearer ${server.token}\u007f\u00ff\r\n`, (s) => s === 401 || s === 400],
          ['CRLF encoded in the path', `Authorization: Bearer ${server.token}\r\n`, (s) => s === 404 || s === 400],
        ]
        let ok = 0
        for (const [i, [label, headers, expected]] of cases.entries()) {
          const target = i === cases.length - 1 ? '/intake/v2/events%0d%0aX-Injected:%20yes' : '/intake/v2/events'
          const raw = `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n${headers}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
          // eslint-disable-next-line no-await-in-loop -- one at a time
          const response = await rawRequest(Number(port), Buffer.from(raw, 'latin1'))
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0)
          const injected = /\r\nx-injected:/i.test(response.split('\r\n\r\n')[0])
          if (expected(status) && !injected) ok++
          else fail(result, `server: ${label}: status ${status}${injected ? ', X-Injected header in the response' : ''}: ${response.slice(0, 120)}`)
        }

        return `${ok}/${cases.length} refused as expected (401/400/431/404, or the connection closed), no injected response header`
      },
    },
    {
      name: `wrong, missing and garbled Authorization at volume (${size.authRequests.toLocaleString('en')} requests)`,
      async run(server, _ledger, result) {
        const token = server.token
        const classes: Array<[string, () => string | undefined]> = [
          ['wrong token, right length', () => `Bearer ${flipOne(token)}`],
          ['wrong token, other length', () => `Bearer ${token.slice(0, 1 + Math.floor(Math.random() * (token.length - 1)))}`],
          ['right token plus a character', () => `Bearer ${token}x`],
          ['missing', () => undefined],
          ['Bearer without a token', () => 'Bearer '],
          ['lower-case scheme', () => `bearer ${token}`],
          ['Basic', () => `Basic ${Buffer.from(`elastic:${token}`).toString('base64')}`],
          ['ApiKey', () => `ApiKey ${Buffer.from(`id:${token}`).toString('base64')}`],
          ['8 KiB of garbage', () => `Bearer ${randomBytes(4096).toString('hex')}`],
          ['latin1 bytes', () => `Bearer ${Buffer.from(randomBytes(32)).toString('latin1').replaceAll(/[\u0000-\u001f\u007f]/g, 'x')}`],
          ['token with a leading space', () => `Bearer  ${token}`],
        ]
        const agent = new http.Agent({keepAlive: true, maxSockets: 50})
        const counts = new Map<string, number>()
        const body = eventsBody(newIds('unauth-', 1))
        await pool(Array.from({length: size.authRequests}, (_, i) => i), 50, async (i) => {
          const [label, header] = classes[i % classes.length]
          const value = header()
          const reply = await request(server.url, {agent, body, headers: {...ndjson, ...(value === undefined ? {} : {Authorization: value})}}).catch((error: Error) => ({
            body: error.message,
            headers: {},
            status: 0,
          }))
          counts.set(String(reply.status), (counts.get(String(reply.status)) ?? 0) + 1)
          if (reply.status !== 401) fail(result, `server: Authorization ${label}: status ${reply.status}, expected 401`)
        })
        agent.destroy()
        return [...counts].map(([status, n]) => `${n} × ${status}`).join(', ')
      },
    },
  ]
}

/** Requests whose bodies arrive a byte every half second: in flight for as long as the server lets them. */
function openSlowBodies(server: Launched, count: number): net.Socket[] {
  const {port} = new URL(server.url)
  return Array.from({length: count}, () => {
    const socket = net.connect(Number(port), '127.0.0.1', () =>
      socket.write(`POST /intake/v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.token}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000000\r\n\r\n${METADATA}\n`),
    )
    socket.on('error', () => {})
    const timer = setInterval(() => socket.writable && socket.write(' '), 500)
    socket.once('close', () => clearInterval(timer))
    return socket
  })
}

function flipOne(token: string): string {
  const i = Math.floor(Math.random() * token.length)
  return `${token.slice(0, i)}${token[i] === 'a' ? 'b' : 'a'}${token.slice(i + 1)}`
}

export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

export async function gzipStream(source: () => AsyncGenerator<Buffer>): Promise<Buffer> {
  const gzip = createGzip({level: 9})
  const out: Buffer[] = []
  gzip.on('data', (chunk: Buffer) => out.push(chunk))
  const ended = new Promise((resolve) => gzip.once('end', resolve))
  for await (const chunk of source()) if (!gzip.write(chunk)) await new Promise((resolve) => gzip.once('drain', resolve))
  gzip.end()
  await ended
  return Buffer.concat(out)
}

export function rawRequest(port: number, data: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const socket = net.connect(port, '127.0.0.1', () => socket.end(data))
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => {})
    socket.setTimeout(30_000, () => socket.destroy())
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
  })
}

/** Bad TLS handshakes against a TLS server, while a valid TLS agent keeps sending. */
async function tlsAbuse(count: number, result: CheckResult): Promise<void> {
  const openssl = await run('openssl', ['version']).then(
    () => true,
    () => false,
  )
  if (!openssl) {
    result.skipped.push('bad TLS handshakes: needs the openssl command to make a certificate')
    return
  }

  const server = await launch({tls: true})
  const ledger = new Ledger()
  const agent = new ValidAgent(server, ledger)
  try {
    const {port} = new URL(server.url)
    const attempts: Array<[string, () => Promise<void>]> = [
      ['random bytes', () => rawRequest(Number(port), randomBytes(1 + Math.floor(Math.random() * 4096))).then(() => {})],
      ['plain HTTP on the TLS port', () => rawRequest(Number(port), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')).then(() => {})],
      ['TLS 1.0 only client', () => tlsAttempt(Number(port), {maxVersion: 'TLSv1', minVersion: 'TLSv1'})],
      ['handshake abandoned after the ClientHello', () => halfHandshake(Number(port))],
      ['truncated ClientHello, then silence', () => rawRequest(Number(port), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])).then(() => {})],
      ['client that rejects the certificate', () => tlsAttempt(Number(port), {rejectUnauthorized: true})],
    ]
    server.peakSinceMark()
    await pool(Array.from({length: count * attempts.length}, (_, i) => i), 50, (i) => attempts[i % attempts.length][1]().catch(() => {}))
    const peak = server.peakSinceMark()
    await sleep(500)
    await agent.stop()
    if (agent.failures.length > 0) fail(result, `server (TLS): ${agent.failures.join('; ')}`)
    const stopped = await server.stop()
    if (stopped.code !== 0) fail(result, `server (TLS): exit ${stopped.code} after SIGTERM`)
    const missing = await missingFromOutput(server, ledger)
    if (missing.length > 0) fail(result, `server (TLS): ${missing.length} accepted events missing from the output (${missing.slice(0, 3).join(', ')})`)
    result.figures.push({
      check: 'server abuse',
      figure: `bad TLS handshakes: ${count * attempts.length} (${attempts.map(([label]) => label).join(', ')})`,
      value: `${agent.summary()}; peak RSS ${peak} MiB; all ${ledger.accepted.size} accepted events in the output after SIGTERM: ${missing.length === 0 ? 'yes' : 'NO'}`,
    })
  } finally {
    await agent.stop()
    await server.stop()
    server.home.cleanup()
  }
}

function tlsAttempt(port: number, options: tls.ConnectionOptions): Promise<void> {
  return new Promise((resolve) => {
    const socket = tls.connect({host: '127.0.0.1', port, rejectUnauthorized: false, servername: undefined, ...options}, () => socket.end())
    socket.on('error', () => resolve())
    socket.on('close', () => resolve())
    socket.setTimeout(10_000, () => socket.destroy())
  })
}

/** Sends a real ClientHello and goes away without finishing the handshake. */
function halfHandshake(port: number): Promise<void> {
  return new Promise((resolve) => {
    const raw = net.connect(port, '127.0.0.1')
    const socket = tls.connect({rejectUnauthorized: false, socket: raw})
    socket.on('error', () => {})
    raw.on('error', () => {})
    raw.once('data', () => {
      raw.destroy()
      resolve()
    })
    raw.on('close', () => resolve())
    raw.setTimeout(10_000, () => raw.destroy())
  })
}

/** Accepted ids not found in any output file. */
async function missingFromOutput(server: Launched, ledger: Ledger): Promise<string[]> {
  const dir = path.join(server.home.dir, 'data', 'apm-server')
  const seen = new Set<string>()
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    // eslint-disable-next-line no-await-in-loop -- a few files
    const text = await fs.readFile(path.join(dir, name), 'utf8')
    for (const line of text.split('\n')) {
      if (!line) continue
      const id = (safeJson(line) as {transaction?: {id?: string}})?.transaction?.id
      if (id) seen.add(id)
    }
  }

  return [...ledger.accepted].filter((id) => !seen.has(id))
}

export async function checkServer(options: ServerTortureOptions): Promise<CheckResult> {
  const result = newResult()
  const size = sizes(options.scale)
  const server = await launch({})
  const ledger = new Ledger()
  let agent: undefined | ValidAgent
  try {
    agent = new ValidAgent(server, ledger)
    for (const scenario of scenarios(size)) {
      server.peakSinceMark()
      const t0 = Date.now()
      let outcome: string
      try {
        // eslint-disable-next-line no-await-in-loop -- one scenario at a time, memory measured each
        outcome = await scenario.run(server, ledger, result)
      } catch (error) {
        outcome = `CRASHED: ${(error as Error).message}`
        fail(result, `server: ${scenario.name}: ${(error as Error).stack}`)
      }

      const peak = server.peakSinceMark()
      result.figures.push({check: 'server abuse', figure: scenario.name, value: `${outcome}; peak RSS ${peak} MiB (${((Date.now() - t0) / 1000).toFixed(1)} s)`})
      if (server.child.exitCode !== null) {
        fail(result, `server: exited ${server.child.exitCode} during "${scenario.name}": ${server.logs().slice(-300)}`)
        break
      }
    }

    await agent.stop()
    for (const failure of agent.failures) fail(result, `server: while under abuse, ${failure}`)
    // At SIGTERM, slow clients are mid-request: shutdown must still end (the wait for them is bounded).
    const slow = options.scale === 'full' ? openSlowBodies(server, 50) : []
    await sleep(slow.length > 0 ? 1000 : 0)
    const stopped = await server.stop()
    for (const socket of slow) socket.destroy()
    if (stopped.code !== 0) fail(result, `server: exit ${stopped.code} after SIGTERM (${stopped.ms} ms)`)
    const missing = await missingFromOutput(server, ledger)
    if (missing.length > 0) fail(result, `server: ${missing.length} of ${ledger.accepted.size} accepted events missing from the output after SIGTERM (${missing.slice(0, 3).join(', ')})`)
    const leaked = canaryForms(server.token).some((form) => Buffer.from(server.logs()).includes(form))
    if (leaked) fail(result, 'server: the secret token appears in the server log')
    const outputLeak = await outputContains(server, server.token)
    if (outputLeak) fail(result, 'server: the secret token appears in the output file')
    const memoryBound = 512
    if (server.peak > memoryBound) fail(result, `server: peak RSS ${server.peak} MiB, over the ${memoryBound} MiB bound`)
    result.figures.push({
      check: 'server abuse',
      figure: 'throughout: valid agent, memory, shutdown, output, token',
      value: `${agent.summary()}; RSS ${server.baseline} MiB at start, peak ${server.peak} MiB; SIGTERM${slow.length > 0 ? ` with ${slow.length} slow uploads in flight` : ''} → exit ${stopped.code} in ${stopped.ms} ms; ${ledger.accepted.size - missing.length}/${ledger.accepted.size} accepted events in the output; token in log/output: ${leaked || outputLeak ? 'YES' : 'no'}`,
    })
  } finally {
    await agent?.stop()
    await server.stop()
    server.home.cleanup()
  }

  await tlsAbuse(size.tlsAbuse, result)
  return result
}

async function outputContains(server: Launched, secret: string): Promise<boolean> {
  const dir = path.join(server.home.dir, 'data', 'apm-server')
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    // eslint-disable-next-line no-await-in-loop -- a few files
    const data = await fs.readFile(path.join(dir, name))
    if (canaryForms(secret).some((form) => data.includes(form))) return true
  }

  return false
}

/**
 * Probability that a sample of `a` is below one of `b` (ties count half): 0.5 means the two classes
 * cannot be told apart from one measurement. Computed by ranks (Mann-Whitney U / (n·m)).
 */
export function superiority(a: number[], b: number[]): number {
  const all = [...a.map((v) => [v, 0] as const), ...b.map((v) => [v, 1] as const)].sort((x, y) => x[0] - y[0])
  let rankSumA = 0
  for (let i = 0; i < all.length; ) {
    let j = i
    while (j < all.length && all[j][0] === all[i][0]) j++
    const rank = (i + j + 1) / 2
    for (let k = i; k < j; k++) if (all[k][1] === 0) rankSumA += rank
    i = j
  }

  const u = rankSumA - (a.length * (a.length + 1)) / 2
  return 1 - u / (a.length * b.length)
}

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.floor(sorted.length / 2)]
}

/**
 * Timing of the token comparison. Classes, measured interleaved in random order so drift hits all
 * alike: the right token; a wrong one of the right length differing in its LAST character (the longest
 * matching prefix a naive comparison would reward); one differing in its FIRST character; one of
 * another length (one shorter). In-process through the Authenticator (batches of 20 calls per sample,
 * nanoseconds), and end to end over HTTP for the wrong ones (loopback, /config/v1/agents: a trivial 401;
 * the right token gets a 403 there, a different answer anyway). No pair may be told apart: the probability that one class's
 * sample is the faster must stay within 0.5 ± 0.05 in-process and ± 0.1 over HTTP, and in-process
 * medians within 50 ns a call.
 */
export async function checkTiming(options: {samples: number; httpSamples?: number}): Promise<CheckResult> {
  const result = newResult()
  const token = `T${randomBytes(24).toString('hex')}`
  const classes: Record<string, string> = {
    'right token': token,
    'wrong, last char': `${token.slice(0, -1)}${token.at(-1) === 'a' ? 'b' : 'a'}`,
    'wrong, first char': `${token[0] === 'a' ? 'b' : 'a'}${token.slice(1)}`,
    'wrong, 1 shorter': token.slice(0, -1),
  }
  const names = Object.keys(classes)
  const authenticator = new Authenticator({anonymous: false, secretToken: token, secretTokenGracePeriodMs: 0})
  const headers = Object.fromEntries(names.map((name) => [name, `Bearer ${classes[name]}`]))
  const times: Record<string, number[]> = Object.fromEntries(names.map((name) => [name, []]))
  const batch = 20
  // Warm-up, then interleaved measurement.
  for (let i = 0; i < 5000; i++) authenticator.authenticate(headers[names[i % names.length]])
  const order = Array.from({length: options.samples * names.length}, (_, i) => names[i % names.length]).sort(() => Math.random() - 0.5)
  for (const name of order) {
    const header = headers[name]
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < batch; i++) authenticator.authenticate(header)
    times[name].push(Number(process.hrtime.bigint() - t0) / batch)
  }

  const pairs: Array<[string, string]> = [
    ['wrong, last char', 'wrong, first char'],
    ['right token', 'wrong, last char'],
    ['wrong, first char', 'wrong, 1 shorter'],
  ]
  for (const [a, b] of pairs) {
    const p = superiority(times[a], times[b])
    const diff = median(times[a]) - median(times[b])
    const ok = Math.abs(p - 0.5) < 0.05 && Math.abs(diff) < 50
    if (!ok) fail(result, `timing (in-process): ${a} vs ${b}: P(faster) ${p.toFixed(3)}, median difference ${diff.toFixed(1)} ns a call`)
    result.figures.push({
      check: 'timing',
      figure: `in-process, ${options.samples.toLocaleString('en')} samples of ${batch} calls each: ${a} vs ${b}`,
      value: `medians ${median(times[a]).toFixed(0)} / ${median(times[b]).toFixed(0)} ns, P(first faster) ${p.toFixed(3)}${ok ? '' : ' — DISTINGUISHABLE'}`,
    })
  }

  // Control: a comparison that does leak (early exit, 2,000 characters) must be flagged, or the method is blind.
  const long = 'k'.repeat(2000)
  const leaky = (a: string, b: string) => {
    if (a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
    return true
  }

  const early = `x${long.slice(1)}`
  const late = `${long.slice(0, -1)}x`
  const control: Record<string, number[]> = {early: [], late: []}
  const controlOrder = Array.from({length: Math.min(options.samples, 5000) * 2}, (_, i) => (i % 2 === 0 ? 'early' : 'late')).sort(() => Math.random() - 0.5)
  let sink = 0
  for (const name of controlOrder) {
    const presented = name === 'early' ? early : late
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < batch; i++) sink += leaky(presented, long) ? 1 : 0
    control[name].push(Number(process.hrtime.bigint() - t0) / batch)
  }

  const controlP = superiority(control.early, control.late)
  const controlSeen = Math.abs(controlP - 0.5) >= 0.05 && sink === 0
  if (!controlSeen) fail(result, `timing: the method did not flag a leaky early-exit comparison (P ${controlP.toFixed(3)}): it is blind`)
  result.figures.push({
    check: 'timing',
    figure: 'control: a leaky early-exit comparison (2,000 chars, first vs last char wrong)',
    value: `medians ${median(control.early).toFixed(0)} / ${median(control.late).toFixed(0)} ns, P(first faster) ${controlP.toFixed(3)}: ${controlSeen ? 'flagged, as it must be' : 'NOT FLAGGED'}`,
  })

  // End to end.
  const httpSamples = options.httpSamples ?? Math.max(500, Math.floor(options.samples / 10))
  const server = await launch({})
  try {
    const tokenHeaders: Record<string, string> = Object.fromEntries(names.map((name) => [name, `Bearer ${name === 'right token' ? server.token : mutateLike(name, server.token)}`]))
    const agent = new http.Agent({keepAlive: true, maxSockets: 1})
    const http_: Record<string, number[]> = Object.fromEntries(names.map((name) => [name, []]))
    for (let i = 0; i < 200; i++) {
      // eslint-disable-next-line no-await-in-loop -- warm-up
      await request(server.url, {agent, headers: {Authorization: tokenHeaders[names[i % names.length]]}, method: 'GET', path: '/config/v1/agents'})
    }

    const httpOrder = Array.from({length: httpSamples * names.length}, (_, i) => names[i % names.length]).sort(() => Math.random() - 0.5)
    for (const name of httpOrder) {
      const t0 = process.hrtime.bigint()
      // eslint-disable-next-line no-await-in-loop -- one request at a time, on one connection
      const reply = await request(server.url, {agent, headers: {Authorization: tokenHeaders[name]}, method: 'GET', path: '/config/v1/agents'})
      http_[name].push(Number(process.hrtime.bigint() - t0) / 1000)
      if (reply.status !== (name === 'right token' ? 403 : 401)) fail(result, `timing (HTTP): ${name} got ${reply.status}`)
    }

    agent.destroy()
    // Over HTTP the right token gets another answer (403, not 401), so only wrong tokens are compared.
    for (const [a, b] of pairs.filter((pair) => !pair.includes('right token'))) {
      const p = superiority(http_[a], http_[b])
      const ok = Math.abs(p - 0.5) < 0.1
      if (!ok) fail(result, `timing (HTTP): ${a} vs ${b}: P(faster) ${p.toFixed(3)}`)
      result.figures.push({
        check: 'timing',
        figure: `over HTTP (loopback), ${httpSamples.toLocaleString('en')} requests a class: ${a} vs ${b}`,
        value: `medians ${median(http_[a]).toFixed(0)} / ${median(http_[b]).toFixed(0)} µs, P(first faster) ${p.toFixed(3)}${ok ? '' : ' — DISTINGUISHABLE'}`,
      })
    }
  } finally {
    await server.stop()
    server.home.cleanup()
  }

  return result
}

/** The same kind of wrong token as the in-process class `name`, for the server's own token. */
function mutateLike(name: string, token: string): string {
  if (name === 'wrong, last char') return `${token.slice(0, -1)}${token.at(-1) === 'a' ? 'b' : 'a'}`
  if (name === 'wrong, first char') return `${token[0] === 'a' ? 'b' : 'a'}${token.slice(1)}`
  return token.slice(0, -1)
}
