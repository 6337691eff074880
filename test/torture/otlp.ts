/**
 * Hostile OTLP against `apm-server run` over HTTPS (issue 14): malformed and truncated protobuf (over
 * HTTP and gRPC), deeply nested attribute values, a million tiny repeated fields, gzip bombs (HTTP body
 * and gRPC message), HTTP/2 clients that open streams and never send, PING and SETTINGS floods, a huge
 * header list and more concurrent streams than allowed, written frame by frame. Throughout, a
 * well-behaved exporter sends spans over OTLP/HTTP and gRPC: every answer must be the right one, the
 * server must stay up and within its memory bound, each scenario within its time bound, and every span
 * it accepted must be in the output after SIGTERM.
 */
import {randomBytes} from 'node:crypto'
import {promises as fs} from 'node:fs'
import http2 from 'node:http2'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import tls from 'node:tls'
import {gzipSync} from 'node:zlib'

import {decodeStatus, SIGNALS} from '../../src/server/intake/otlp/wire.js'
import {encode, grpcCall, grpcFrame, tracesRequest} from '../helpers/otlp.js'
import {CheckResult, fail, newResult} from './lib.js'
import {launch, Launched, request} from './server.js'

export interface OtlpTortureOptions {
  scale: 'fast' | 'full'
  seed: number
}

function sizes(scale: OtlpTortureOptions['scale']) {
  const full = scale === 'full'
  return {
    bombBytes: full ? 1024 * 1024 * 1024 : 64 * 1024 * 1024,
    idleSessions: full ? 50 : 5,
    mutations: full ? 2000 : 150,
    /** how long idle streams are held; full waits past the server's 30 s idle time */
    idleHoldMs: full ? 33_000 : 1500,
    pings: full ? 100_000 : 10_000,
  }
}

/** A small xorshift generator: the mutations are the seed's. */
function random(seed: number): () => number {
  let state = seed || 1
  return () => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) / 2 ** 32
  }
}

/** A traces request of one root span whose trace id is `id` (32 hex digits). */
function spanRequest(id: string): Buffer {
  const request = tracesRequest() as {resourceSpans: Array<{scopeSpans: Array<{spans: Array<Record<string, unknown>>}>}>}
  const spans = request.resourceSpans[0].scopeSpans[0].spans
  spans.splice(1)
  spans[0].traceId = Buffer.from(id, 'hex')
  spans[0].events = []
  return encode('traces', request)
}

/** Spans sent every ~50 ms over OTLP/HTTP and gRPC, alternately; each must be accepted, and is recorded. */
class Exporter {
  readonly accepted = new Set<string>()
  readonly failures: string[] = []
  sent = 0
  private running = true
  private readonly done: Promise<void>

  constructor(private readonly server: Launched) {
    this.done = this.loop()
  }

  async stop(): Promise<void> {
    this.running = false
    await this.done
  }

  private async loop(): Promise<void> {
    const session = http2.connect(this.server.url, {ca: this.server.ca})
    session.on('error', () => {})
    try {
      while (this.running) {
        const id = randomBytes(16).toString('hex')
        const body = spanRequest(id)
        this.sent++
        try {
          const ok = this.sent % 2 === 0 ? await this.viaHttp(body) : await this.viaGrpc(session, body) // eslint-disable-line no-await-in-loop
          if (ok) this.accepted.add(id)
        } catch (error) {
          this.failures.push(`span ${this.sent}: ${(error as Error).message}`)
        }

        await sleep(50) // eslint-disable-line no-await-in-loop
      }
    } finally {
      session.close()
    }
  }

  private async viaHttp(body: Buffer): Promise<boolean> {
    const reply = await request(this.server.url, {body, ca: this.server.ca, headers: {Authorization: `Bearer ${this.server.token}`, 'Content-Type': 'application/x-protobuf'}, path: '/v1/traces', timeoutMs: 30_000})
    if (reply.status !== 200) this.failures.push(`OTLP/HTTP ${reply.status}`)
    return reply.status === 200
  }

  private async viaGrpc(session: http2.ClientHttp2Session, body: Buffer): Promise<boolean> {
    const reply = await grpcCall(this.server.url, body, {session, token: this.server.token})
    if (reply.grpcStatus !== 0) this.failures.push(`gRPC ${reply.grpcStatus} ${reply.grpcMessage}`)
    return reply.grpcStatus === 0
  }
}

interface Scenario {
  name: string
  /** most seconds it may take */
  bound: number
  run: (server: Launched, result: CheckResult) => Promise<string>
}

const bearer = (server: Launched) => ({Authorization: `Bearer ${server.token}`})

function scenarios(size: ReturnType<typeof sizes>, seed: number): Scenario[] {
  return [
    {bound: 120, name: `${size.mutations} truncated and mutated protobuf bodies, over HTTP and gRPC`, run: (server, result) => mutations(server, result, size.mutations, seed)},
    {bound: 10, name: 'attribute values nested 10,000 deep (HTTP and gRPC)', run: (server, result) => nested(server, result)},
    {bound: 20, name: 'a million tiny repeated fields (HTTP and gRPC)', run: (server, result) => million(server, result)},
    {bound: 60, name: `gzip bombs: ${size.bombBytes / 2 ** 20} MiB of zeros as an HTTP body and as a gRPC message`, run: (server, result) => bombs(server, result, size.bombBytes)},
    {bound: 60, name: `${size.idleSessions} HTTP/2 connections × 16 streams that never send, and a 17th stream each`, run: (server, result) => idleStreams(server, result, size)},
    {bound: 30, name: `a PING flood (${size.pings} frames) and a SETTINGS flood, frame by frame`, run: (server, result) => floods(server, result, size.pings)},
    {bound: 30, name: 'a 100 KiB header list, and 200 streams opened at once, frame by frame', run: (server, result) => headersAndStreams(server, result)},
  ]
}

async function mutations(server: Launched, result: CheckResult, count: number, seed: number): Promise<string> {
  const next = random(seed)
  const valid = encode('traces', tracesRequest())
  const statuses = new Map<string, number>()
  for (let i = 0; i < count; i++) {
    const body = Buffer.from(valid.subarray(0, Math.floor(next() * valid.length)))
    if (i % 2 === 1) for (let j = 0; j < 3; j++) body[Math.floor(next() * body.length)] = Math.floor(next() * 256)
    let answer: string
    if (i % 3 === 0) {
      // eslint-disable-next-line no-await-in-loop -- one at a time: the answer of each is checked
      const reply = await grpcCall(server.url, body, {ca: server.ca, token: server.token})
      answer = `gRPC ${reply.grpcStatus}`
      if (reply.grpcStatus !== 0 && reply.grpcStatus !== 3) fail(result, `otlp: a mutated message (seed ${seed}, #${i}) got gRPC ${reply.grpcStatus} ${reply.grpcMessage}`)
    } else {
      // eslint-disable-next-line no-await-in-loop
      const reply = await request(server.url, {body, ca: server.ca, headers: {...bearer(server), 'Content-Type': 'application/x-protobuf'}, path: '/v1/traces'})
      answer = `HTTP ${reply.status}`
      if (reply.status !== 200 && reply.status !== 400) fail(result, `otlp: a mutated body (seed ${seed}, #${i}) got HTTP ${reply.status}`)
    }

    statuses.set(answer, (statuses.get(answer) ?? 0) + 1)
  }

  return [...statuses].map(([answer, n]) => `${answer} ×${n}`).join(', ')
}

/** A length-delimited field (numbers under 16) and a varint. */
function field(number: number, value: Buffer): Buffer {
  const length: number[] = []
  let rest = value.length
  while (rest >= 0x80) {
    length.push((rest & 0x7f) | 0x80)
    rest = Math.floor(rest / 128)
  }

  length.push(rest)
  return Buffer.concat([Buffer.from([(number << 3) | 2, ...length]), value])
}

async function expectRefused(server: Launched, result: CheckResult, what: string, body: Buffer, status: number, grpc: number): Promise<string> {
  const reply = await request(server.url, {body, ca: server.ca, headers: {...bearer(server), 'Content-Type': 'application/x-protobuf'}, path: '/v1/traces'})
  const viaGrpc = await grpcCall(server.url, body, {ca: server.ca, token: server.token})
  if (reply.status !== status) fail(result, `otlp: ${what} over HTTP got ${reply.status}, expected ${status}`)
  if (viaGrpc.grpcStatus !== grpc) fail(result, `otlp: ${what} over gRPC got ${viaGrpc.grpcStatus} ${viaGrpc.grpcMessage}, expected ${grpc}`)
  const message = reply.status >= 400 ? decodeStatus(Buffer.from(reply.body, 'latin1')).message : ''
  return `HTTP ${reply.status}, gRPC ${viaGrpc.grpcStatus} (${message || viaGrpc.grpcMessage})`
}

async function nested(server: Launched, result: CheckResult): Promise<string> {
  let value = field(1, Buffer.from('leaf'))
  for (let i = 0; i < 10_000; i++) value = field(6, field(1, Buffer.concat([field(1, Buffer.from('k')), field(2, value)])))
  const body = field(1, field(1, field(1, Buffer.concat([field(1, Buffer.from('deep')), field(2, value)]))))
  return expectRefused(server, result, 'a 10,000-deep attribute', body, 400, 3)
}

async function million(server: Launched, result: CheckResult): Promise<string> {
  const body = field(1, field(1, Buffer.alloc(2 * 1_000_001, Buffer.from([0x0a, 0x00]))))
  return expectRefused(server, result, 'a million empty attributes', body, 413, 8)
}

async function bombs(server: Launched, result: CheckResult, bytes: number): Promise<string> {
  const zeros = gzipSync(Buffer.alloc(bytes))
  const reply = await request(server.url, {body: zeros, ca: server.ca, headers: {...bearer(server), 'Content-Encoding': 'gzip', 'Content-Type': 'application/x-protobuf'}, path: '/v1/traces'})
  if (reply.status !== 413) fail(result, `otlp: a gzip bomb body got HTTP ${reply.status}`)
  const message = gzipSync(Buffer.alloc(Math.min(bytes, 256 * 1024 * 1024)))
  const viaGrpc = await grpcCall(server.url, Buffer.alloc(0), {body: grpcFrame(message.subarray(0, Math.min(message.length, 4 * 1024 * 1024)), true), ca: server.ca, headers: {'grpc-encoding': 'gzip'}, token: server.token})
  if (viaGrpc.grpcStatus !== 8) fail(result, `otlp: a gzip bomb message got gRPC ${viaGrpc.grpcStatus} ${viaGrpc.grpcMessage}`)
  return `HTTP ${reply.status} (${zeros.length.toLocaleString('en-US')} bytes sent), gRPC ${viaGrpc.grpcStatus}`
}

async function idleStreams(server: Launched, result: CheckResult, size: ReturnType<typeof sizes>): Promise<string> {
  const sessions: http2.ClientHttp2Session[] = []
  const answers = new Map<string, number>()
  const note = (answer: string) => answers.set(answer, (answers.get(answer) ?? 0) + 1)
  const settled: Promise<void>[] = []
  for (let s = 0; s < size.idleSessions; s++) {
    const session = http2.connect(server.url, {ca: server.ca, peerMaxConcurrentStreams: 1000})
    session.on('error', () => {})
    sessions.push(session)
    for (let i = 0; i < 17; i++) {
      const stream = session.request({':method': 'POST', ':path': SIGNALS.traces.grpcPath, authorization: `Bearer ${server.token}`, 'content-type': 'application/grpc'}, {endStream: false})
      settled.push(
        new Promise<void>((resolve) => {
          stream.on('response', (headers) => note(`grpc-status ${String(headers['grpc-status'])}`))
          stream.on('error', (error: NodeJS.ErrnoException) => note(error.code ?? 'error'))
          stream.on('close', () => resolve())
        }),
      )
    }
  }

  await sleep(size.idleHoldMs)
  // Meanwhile other connections are served (the exporter runs throughout); these are then let go.
  for (const session of sessions) session.destroy()
  await Promise.all(settled)
  if (size.idleHoldMs > 30_000 && (answers.get('grpc-status 4') ?? 0) < size.idleSessions * 16) fail(result, `otlp: idle streams past 30 s were not all answered DEADLINE_EXCEEDED: ${JSON.stringify([...answers])}`)
  return [...answers].map(([answer, n]) => `${answer} ×${n}`).join(', ') || 'held, then closed by the client'
}

/** A raw HTTP/2 connection over TLS (ALPN h2): frames written as they are, nothing checked. */
function rawH2(server: Launched): Promise<tls.TLSSocket> {
  const {hostname, port} = new URL(server.url)
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ALPNProtocols: ['h2'], ca: server.ca, host: hostname, port: Number(port)}, () => {
      socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'))
      socket.write(frame(4, 0, 0, Buffer.alloc(0)))
      resolve(socket)
    })
    socket.on('error', reject)
  })
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}

/** What the server did after `frames`: closed the connection, or sent these frame types (by stream) within `ms`. */
async function writeAndWatch(socket: tls.TLSSocket, frames: Buffer[], ms: number): Promise<{closed: boolean; frames: Array<{type: number; stream: number}>}> {
  const seen: Array<{type: number; stream: number}> = []
  let pending = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    while (pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
      seen.push({stream: pending.readUInt32BE(5) & 0x7f_ff_ff_ff, type: pending[3]})
      pending = pending.subarray(9 + pending.readUIntBE(0, 3))
    }
  })
  socket.on('error', () => {})
  const closed = new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(true))
    setTimeout(() => resolve(false), ms)
  })
  for (const data of frames) if (!socket.destroyed) socket.write(data)
  const result = await closed
  socket.destroy()
  return {closed: result, frames: seen}
}

async function writeUntilClosed(socket: tls.TLSSocket, frames: Buffer[], ms: number): Promise<boolean> {
  return (await writeAndWatch(socket, frames, ms)).closed
}

async function floods(server: Launched, result: CheckResult, pings: number): Promise<string> {
  const ping = frame(6, 0, 0, Buffer.alloc(8))
  const pingClosed = await writeUntilClosed(await rawH2(server), Array.from({length: pings}, () => ping), 15_000)
  const settings = frame(4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]))
  const settingsClosed = await writeUntilClosed(await rawH2(server), Array.from({length: pings}, () => settings), 15_000)
  if (!pingClosed || !settingsClosed) fail(result, `otlp: a flood did not end its connection (PING closed: ${pingClosed}, SETTINGS closed: ${settingsClosed})`)
  return `PING flood: connection closed by the server: ${pingClosed}; SETTINGS flood: ${settingsClosed}`
}

/** HPACK literal header fields without indexing, no Huffman (names and values under 127 bytes, or the value's length as a multi-byte integer). */
function literal(name: string, value: string): Buffer {
  const integer = (n: number): number[] => {
    if (n < 127) return [n]
    const bytes = [127]
    let rest = n - 127
    while (rest >= 128) {
      bytes.push((rest % 128) + 128)
      rest = Math.floor(rest / 128)
    }

    return [...bytes, rest]
  }

  return Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from(integer(value.length)), Buffer.from(value)])
}

async function headersAndStreams(server: Launched, result: CheckResult): Promise<string> {
  const base = [literal(':method', 'POST'), literal(':scheme', 'https'), literal(':path', SIGNALS.traces.grpcPath), literal(':authority', 'localhost'), literal('content-type', 'application/grpc')]
  // END_HEADERS (4), split into 16 KiB frames: HEADERS then CONTINUATIONs.
  const big = Buffer.concat([...base, literal('x-big', 'x'.repeat(100 * 1024))])
  const parts: Buffer[] = []
  for (let at = 0; at < big.length; at += 16_384) parts.push(big.subarray(at, at + 16_384))
  const bigFrames = parts.map((part, i) => frame(i === 0 ? 1 : 9, i === parts.length - 1 ? 4 : 0, 1, part))
  // A header list past the advertised 16 KiB: the stream must be refused (RST_STREAM or GOAWAY), never answered.
  const bigAnswer = await writeAndWatch(await rawH2(server), bigFrames, 3000)
  const RST_STREAM = 3
  const GOAWAY = 7
  const HEADERS = 1
  const bigRefused = bigAnswer.closed || bigAnswer.frames.some((seen) => seen.type === GOAWAY || (seen.type === RST_STREAM && seen.stream === 1))
  const bigAnswered = bigAnswer.frames.some((seen) => seen.type === HEADERS && seen.stream === 1)
  const headers = Buffer.concat([...base, literal('authorization', `Bearer ${server.token}`)])
  const streams = Array.from({length: 200}, (_unused, i) => frame(1, 4, 2 * i + 1, headers))
  const streamsClosed = await writeUntilClosed(await rawH2(server), streams, 10_000)
  if (!bigRefused || bigAnswered) fail(result, `otlp: a 100 KiB header list was not refused: ${JSON.stringify(bigAnswer)}`)
  if (!streamsClosed) fail(result, 'otlp: the server kept a connection that opened 200 streams at once')
  return `100 KiB header list: ${bigAnswer.closed ? 'connection closed' : `frames ${JSON.stringify(bigAnswer.frames.map((seen) => seen.type))}`}, stream refused; 200 streams at once (16 allowed): connection closed: ${streamsClosed}`
}

/** Spans of the ledger not found in the output. */
async function missing(server: Launched, accepted: Set<string>): Promise<string[]> {
  const dir = path.join(server.home.dir, 'data', 'apm-server')
  const seen = new Set<string>()
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    // eslint-disable-next-line no-await-in-loop -- a few files
    for (const line of (await fs.readFile(path.join(dir, name), 'utf8')).split('\n')) {
      const id = /"trace_id":"([\da-f]{32})"/.exec(line)?.[1]
      if (id) seen.add(id)
    }
  }

  return [...accepted].filter((id) => !seen.has(id))
}

export async function checkOtlp(options: OtlpTortureOptions): Promise<CheckResult> {
  const result = newResult()
  const size = sizes(options.scale)
  const server = await launch({tls: true})
  let exporter: Exporter | undefined
  try {
    exporter = new Exporter(server)
    for (const scenario of scenarios(size, options.seed)) {
      server.peakSinceMark()
      const t0 = Date.now()
      let outcome: string
      try {
        outcome = await scenario.run(server, result) // eslint-disable-line no-await-in-loop -- one at a time, memory measured each
      } catch (error) {
        outcome = `CRASHED: ${(error as Error).message}`
        fail(result, `otlp: ${scenario.name}: ${(error as Error).stack}`)
      }

      const seconds = (Date.now() - t0) / 1000
      if (seconds > scenario.bound) fail(result, `otlp: ${scenario.name} took ${seconds.toFixed(1)} s, over its ${scenario.bound} s bound`)
      result.figures.push({check: 'otlp abuse', figure: scenario.name, value: `${outcome}; peak RSS ${server.peakSinceMark()} MiB (${seconds.toFixed(1)} s)`})
      if (server.child.exitCode !== null) {
        fail(result, `otlp: the server exited ${server.child.exitCode} during "${scenario.name}": ${server.logs().slice(-300)}`)
        break
      }
    }

    await exporter.stop()
    for (const failure of exporter.failures.slice(0, 10)) fail(result, `otlp: while under abuse, ${failure}`)
    const stopped = await server.stop()
    if (stopped.code !== 0) fail(result, `otlp: exit ${stopped.code} after SIGTERM (${stopped.ms} ms)`)
    const lost = await missing(server, exporter.accepted)
    if (lost.length > 0) fail(result, `otlp: ${lost.length} of ${exporter.accepted.size} accepted spans missing from the output`)
    if (server.peak > 512) fail(result, `otlp: peak RSS ${server.peak} MiB, over the 512 MiB bound`)
    if (server.logs().includes(server.token)) fail(result, 'otlp: the secret token appears in the server log')
    result.figures.push({
      check: 'otlp abuse',
      figure: 'throughout: a valid exporter (OTLP/HTTP and gRPC), memory, shutdown, output',
      value: `${exporter.accepted.size}/${exporter.sent} spans accepted, ${exporter.failures.length} failures; RSS ${server.baseline} MiB at start, peak ${server.peak} MiB; SIGTERM → exit ${stopped.code} in ${stopped.ms} ms; ${exporter.accepted.size - lost.length}/${exporter.accepted.size} accepted spans in the output`,
    })
  } finally {
    await exporter?.stop()
    await server.stop()
    server.home.cleanup()
  }

  return result
}
