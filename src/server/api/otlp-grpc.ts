/**
 * OTLP over gRPC: the `Export` methods of the trace, metrics and logs services, one unary call an HTTP/2
 * stream (../h2.ts), answered as Elastic's APM Server's gRPC server answers them
 * (internal/beater/otlp/grpc.go, interceptors/auth.go, ratelimit.go): UNAUTHENTICATED with the same
 * messages as a 401 (the `authorization` metadata is checked as the Authorization header, by the same
 * Authenticator, before any of the message is read), RESOURCE_EXHAUSTED past the message bound or an
 * anonymous client's rate limit, INVALID_ARGUMENT for a message that is not an export request,
 * PERMISSION_DENIED for an anonymous client's agent or service not allowed, UNAVAILABLE while shutting
 * down or when the memory budget or the output cannot take more. Each call is counted and logged as an
 * HTTP request is, with the HTTP status it stands for.
 *
 * gRPC's message framing (a flag byte and a four-byte length before the message, the status in the
 * trailers) is written here on Node's http2 streams: @grpc/grpc-js serves only whole connections, reads
 * and buffers a message before any handler can authenticate it, and does not let the HTTP/2 limits be
 * set (../h2.ts sets them); the protobuf itself is protobufjs's (../intake/otlp/wire.ts).
 */
import http2 from 'node:http2'
import {gunzip, inflate} from 'node:zlib'

import {H2_SESSION_IDLE_MS} from '../h2.js'
import {ingestOtlp} from '../intake/otlp/ingest.js'
import {OTLP_GRPC_MAX_MESSAGE_BYTES} from '../intake/otlp/limits.js'
import {encodeResponse, Signal, SIGNALS} from '../intake/otlp/wire.js'
import {ANONYMOUS_DECODED_RATE_EXCEEDED, clip, MemoryAccount, QUEUE_FULL} from '../limits.js'
import {otlpClientNames} from '../monitoring/client-names.js'
import type {ClientNames} from '../monitoring/previous-token.js'
import {RATE_LIMIT_EXCEEDED} from '../anonymous.js'
import {GrpcCall} from './grpc-call.js'
import type {ApiContext} from './context.js'
import {countResult, decodeMeasured, GRPC, grpcCodeOf, ingestOptions} from './otlp.js'
import {SHUTTING_DOWN_MESSAGE} from './request-log.js'

const SIGNAL_BY_PATH = new Map<string, Signal>((Object.keys(SIGNALS) as Signal[]).map((signal) => [SIGNALS[signal].grpcPath, signal]))

/** The handler of every HTTP/2 stream. */
export function grpcStreamHandler(context: ApiContext): (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void {
  return (stream, headers) => {
    // In flight until its work is done and its stream closed: shutdown waits for the answer to be sent,
    // not only written into the HTTP/2 session.
    context.inFlight.start()
    const closed = new Promise<void>((resolve) => stream.once('close', resolve))
    const call = new GrpcCall(context, stream, headers)
    serve(call, context)
      .catch((error: Error) => {
        // A bug, not the client's doing: this call ends with INTERNAL, the server goes on.
        context.logBug(error, 'internal error')
        call.fail(GRPC.INTERNAL, 'internal error')
      })
      .then(() => closed)
      .finally(() => context.inFlight.end())
  }
}

async function serve(call: GrpcCall, context: ApiContext): Promise<void> {
  if (context.closing) return call.fail(GRPC.UNAVAILABLE, SHUTTING_DOWN_MESSAGE)
  const {headers} = call
  if (!String(headers['content-type'] ?? '').startsWith('application/grpc')) return call.notGrpc()
  const signal = SIGNAL_BY_PATH.get(call.path)
  if (headers[':method'] !== 'POST' || signal === undefined) return call.fail(GRPC.UNIMPLEMENTED, `unknown method ${clip(call.path)}`)
  const outcome = context.authenticator.authenticate(typeof headers.authorization === 'string' ? headers.authorization : undefined)
  if (!outcome.ok) return call.fail(GRPC.UNAUTHENTICATED, outcome.message)
  // The connection's caps and idle time become those of a connection with the token (../connections.ts).
  const session = call.stream.session
  if (outcome.method !== 'anonymous' && session?.socket && context.connections?.authenticated(session.socket)) session.setTimeout(H2_SESSION_IDLE_MS)
  if (!outcome.previous) return admit(call, context, signal, outcome.method === 'anonymous')
  // Counted when it ends, with the names its resource gave (the rotation telemetry).
  const seen: {client?: ClientNames} = {}
  const counted = context.previousToken.use(call.ip)
  try {
    await admit(call, context, signal, false, seen)
  } finally {
    counted(seen.client)
  }
}

/** An authenticated call: its rate limit, its encoding, its memory account, then its message. */
async function admit(call: GrpcCall, context: ApiContext, signal: Signal, anonymous: boolean, seen?: {client?: ClientNames}): Promise<void> {
  if (anonymous && !context.rateLimits.forIP(call.ip).allow(1)) return call.fail(GRPC.RESOURCE_EXHAUSTED, RATE_LIMIT_EXCEEDED)
  const encoding = String(call.headers['grpc-encoding'] ?? 'identity')
  if (!['deflate', 'gzip', 'identity'].includes(encoding)) return call.fail(GRPC.UNIMPLEMENTED, `grpc: Decompressor is not installed for grpc-encoding "${clip(encoding)}"`)
  const memory = context.memory.account(anonymous ? call.ip : undefined)
  try {
    await exportCall(call, context, signal, encoding, memory, anonymous, seen)
  } finally {
    memory.close()
  }
}

async function exportCall(call: GrpcCall, context: ApiContext, signal: Signal, encoding: string, memory: MemoryAccount, anonymous: boolean, seen?: {client?: ClientNames}): Promise<void> {
  const framed = await call.readMessage(memory)
  if ('code' in framed) return call.fail(framed.code, framed.message)
  let message = framed.message
  if (framed.compressed) {
    if (encoding === 'identity') return call.fail(GRPC.INVALID_ARGUMENT, 'grpc: compressed flag set with identity or empty encoding')
    const inflated = await decompress(encoding, message, memory)
    if ('code' in inflated) return call.fail(inflated.code, inflated.message)
    message = inflated.message
  }

  // An anonymous client's decoded bytes are charged to its address, as intake v2's and OTLP/HTTP's are.
  if (anonymous && !context.decodedLimits.forIP(call.ip).allow(message.length)) return call.fail(GRPC.RESOURCE_EXHAUSTED, ANONYMOUS_DECODED_RATE_EXCEEDED)

  const decoded = decodeMeasured(signal, 'protobuf', message, memory)
  if ('status' in decoded) return call.fail(grpcCodeOf(decoded.status), decoded.error)
  if (seen) seen.client = otlpClientNames(decoded.message)
  const result = await ingestOtlp(signal, decoded.message, decoded.decodedBytes, ingestOptions(context, anonymous, call.ip))
  countResult(context, result)
  if (result.status !== 200) return call.fail(grpcCodeOf(result.status), result.message ?? 'internal error')
  call.succeed(encodeResponse(signal, 'protobuf', result.rejected, result.errorMessage), result.rejected > 0 ? result.errorMessage : undefined)
}

/** A compressed message inflated within the message bound, the output reserved first. */
async function decompress(encoding: string, data: Buffer, memory: MemoryAccount): Promise<{message: Buffer} | {code: number; message: string}> {
  if (!memory.reserve(OTLP_GRPC_MAX_MESSAGE_BYTES)) return {code: GRPC.UNAVAILABLE, message: QUEUE_FULL}
  const options = {maxOutputLength: OTLP_GRPC_MAX_MESSAGE_BYTES}
  try {
    const message = await new Promise<Buffer>((resolve, reject) => {
      const done = (error: Error | null, result: Buffer) => (error ? reject(error) : resolve(result))
      if (encoding === 'gzip') gunzip(data, options, done)
      else inflate(data, options, done)
    })
    memory.release(OTLP_GRPC_MAX_MESSAGE_BYTES - message.length)
    return {message}
  } catch (error) {
    memory.release(OTLP_GRPC_MAX_MESSAGE_BYTES)
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      return {code: GRPC.RESOURCE_EXHAUSTED, message: `grpc: received message after decompression larger than max (${OTLP_GRPC_MAX_MESSAGE_BYTES})`}
    }

    return {code: GRPC.INVALID_ARGUMENT, message: `grpc: failed to decompress the received message: ${(error as Error).message}`}
  }
}
