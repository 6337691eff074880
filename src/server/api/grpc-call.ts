/**
 * One gRPC unary call on an HTTP/2 stream: its message read whole within the bound (the flag byte and
 * length prefix first, so an oversized message is refused before its bytes are held), its answer (the
 * response message and `grpc-status` trailers, or a trailers-only error with a percent-encoded
 * `grpc-message`), and its bookkeeping as the router keeps it for HTTP requests: counted, logged once (Elastic's gRPC log fields: grpc.request.method, grpc.response.status_code),
 * its answer counted by the HTTP status it stands for. A stream idle for the context's streamIdleMs
 * (../h2.ts: H2_STREAM_IDLE_MS) is answered DEADLINE_EXCEEDED and closed.
 */
import http2 from 'node:http2'
import type {Readable} from 'node:stream'

import {HeldBytes} from '../intake/held-bytes.js'
import {OTLP_GRPC_MAX_MESSAGE_BYTES} from '../intake/otlp/limits.js'
import {clip, MemoryAccount, QUEUE_FULL} from '../limits.js'
import type {ApiContext} from './context.js'

const DEADLINE_EXCEEDED = 4
const OK = 0
const INVALID_ARGUMENT = 3
const RESOURCE_EXHAUSTED = 8
const UNAVAILABLE = 14

/** The HTTP status a gRPC code stands for, for the server's response counts (gRPC's own mapping, read backwards). */
const HTTP_STATUS: Record<number, number> = {0: 200, 3: 400, 4: 504, 7: 403, 8: 429, 12: 404, 13: 500, 14: 503, 16: 401}
const KEYWORDS: Record<number, string> = {0: 'request accepted', 3: 'data validation error', 4: 'request timed out', 7: 'forbidden request', 8: 'too many requests', 12: 'method not found', 13: 'internal error', 14: 'service unavailable', 16: 'unauthorized'}

/** A message as read: its bytes and whether its compressed flag was set; or the error that ends the call. */
export type Framed = {message: Buffer; compressed: boolean} | {code: number; message: string}

/** gRPC's grpc-message: percent-encoded outside printable ASCII (and the percent sign itself). */
export function percentEncode(message: string): string {
  return Array.from(Buffer.from(message, 'utf8'), (byte) => (byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`)).join('')
}

export class GrpcCall {
  readonly path: string
  readonly ip: string
  private readonly started = process.hrtime.bigint()
  private ended = false

  constructor(
    private readonly context: ApiContext,
    readonly stream: http2.ServerHttp2Stream,
    readonly headers: http2.IncomingHttpHeaders,
  ) {
    this.path = String(headers[':path'] ?? '')
    const address = stream.session?.socket?.remoteAddress ?? ''
    this.ip = address.startsWith('::ffff:') ? address.slice(7) : address
    context.stats.requests++
    stream.setTimeout(context.streamIdleMs, () => this.fail(DEADLINE_EXCEEDED, 'request timed out: the stream was idle'))
    stream.once('close', () => this.end(undefined))
  }

  /** Reads the one message of the call, reserving it in `memory` as it comes. */
  readMessage(memory: MemoryAccount): Promise<Framed> {
    return readFramed(this.stream, memory)
  }

  /** The response message and status OK. */
  succeed(message: Buffer, partial?: string): void {
    if (!this.open()) return
    const {stream} = this
    stream.respond({':status': 200, 'content-type': 'application/grpc', 'grpc-accept-encoding': 'identity,deflate,gzip'}, {waitForTrailers: true})
    stream.once('wantTrailers', () => stream.sendTrailers({'grpc-message': '', 'grpc-status': String(OK)}))
    const frame = Buffer.alloc(5 + message.length)
    frame.writeUInt32BE(message.length, 1)
    message.copy(frame, 5)
    stream.end(frame)
    this.end({code: OK, status: 200}, partial)
  }

  /** A trailers-only answer: the status, no message. */
  fail(code: number, message: string): void {
    if (!this.open()) return
    const text = clip(message, 1024)
    this.stream.respond({':status': 200, 'content-type': 'application/grpc', 'grpc-message': percentEncode(text), 'grpc-status': String(code)}, {endStream: true})
    this.end({code, status: HTTP_STATUS[code] ?? 500}, text)
    // What the client may still send is not read: the stream is reset once the answer is out.
    this.stream.close(http2.constants.NGHTTP2_NO_ERROR)
  }

  /** HTTP/2 without gRPC: the HTTP routes are served over HTTP/1.1 (ALPN prefers it; see ../h2.ts). */
  notGrpc(): void {
    if (!this.open()) return
    const body = Buffer.from('this port speaks gRPC over HTTP/2 (application/grpc); send intake and OTLP/HTTP requests over HTTP/1.1\n')
    this.stream.respond({':status': 415, 'content-length': String(body.length), 'content-type': 'text/plain; charset=utf-8'})
    this.stream.end(body)
    this.end({status: 415}, 'not a gRPC request')
    this.stream.close(http2.constants.NGHTTP2_NO_ERROR)
  }

  /** Whether an answer can still be sent: `respond` throws on a stream closed (a client's reset) or a session gone. */
  private open(): boolean {
    const {stream} = this
    return !this.ended && !stream.destroyed && !stream.closed && !stream.headersSent && stream.session?.destroyed === false
  }

  /** Counts and logs the call once: its gRPC code (none for a 415) and the HTTP status it stands for; undefined when it closed unanswered. */
  private end(answer: {code?: number; status: number} | undefined, failure?: string): void {
    if (this.ended) return
    this.ended = true
    const {logger, stats} = this.context
    const fields = {'event.duration': Number(process.hrtime.bigint() - this.started), 'grpc.request.method': clip(this.path), 'source.address': this.ip}
    if (answer === undefined) {
      logger.warn({...fields, 'error.message': 'the stream closed before a response was sent'}, 'request aborted')
      return
    }

    stats.responses[answer.status] = (stats.responses[answer.status] ?? 0) + 1
    const line = {...fields, ...(answer.code === undefined ? {} : {'grpc.response.status_code': answer.code}), 'http.response.status_code': answer.status}
    if (answer.code === OK && failure === undefined) logger.info(line, KEYWORDS[OK])
    else if (answer.code === OK) logger.warn({...line, 'error.message': clip(failure!, 1024)}, 'request accepted in part')
    else logger.error({...line, 'error.message': failure ?? ''}, answer.code === undefined ? 'unsupported media type' : (KEYWORDS[answer.code] ?? 'internal error'))
  }
}

/**
 * Reads one length-prefixed gRPC message from `stream`, copied as it comes into one buffer reserved in
 * `memory` (../intake/held-bytes.ts: an HTTP/2 DATA frame may carry one byte, and a Buffer kept per
 * frame would cost ~100 times what is charged).
 */
export function readFramed(stream: Pick<Readable, 'off' | 'on' | 'once'>, memory: MemoryAccount): Promise<Framed> {
  return new Promise<Framed>((resolve) => {
    const held = new HeldBytes(memory, 5 + OTLP_GRPC_MAX_MESSAGE_BYTES)
    let expected: number | undefined
    const done = (result: Framed) => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('close', onClose)
      resolve(result)
    }

    const onData = (chunk: Buffer) => {
      if (expected !== undefined && held.length + chunk.length > 5 + expected) return done({code: INVALID_ARGUMENT, message: 'grpc: a unary call sent more than one message'})
      if (!held.append(chunk)) return done({code: UNAVAILABLE, message: QUEUE_FULL})
      if (expected === undefined && held.length >= 5) {
        expected = held.bytes().readUInt32BE(1)
        if (expected > OTLP_GRPC_MAX_MESSAGE_BYTES) return done({code: RESOURCE_EXHAUSTED, message: `grpc: received message larger than max (${expected} vs. ${OTLP_GRPC_MAX_MESSAGE_BYTES})`})
        if (held.length > 5 + expected) done({code: INVALID_ARGUMENT, message: 'grpc: a unary call sent more than one message'})
      }
    }

    const onEnd = () => {
      if (expected === undefined || held.length < 5 + expected) return done({code: INVALID_ARGUMENT, message: 'grpc: the request ended before its message did'})
      const body = held.bytes()
      done({compressed: body[0] === 1, message: body.subarray(5)})
    }

    const onClose = () => done({code: INVALID_ARGUMENT, message: 'the client closed the stream before its end'})
    stream.on('data', onData)
    stream.once('end', onEnd)
    stream.once('close', onClose)
  })
}
