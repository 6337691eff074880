/**
 * The OTLP/HTTP routes (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`), as the OTLP/HTTP specification
 * and Elastic's APM Server (internal/beater/otlp/http.go) answer them: a protobuf or JSON export
 * request, plain or compressed, read whole within the bounds of ../intake/otlp/limits.ts; its events
 * written by ../intake/otlp/ingest.ts; the export response (with `partial_success` when items were
 * rejected) or a google.rpc.Status, in the request's encoding. 405 for a method other than POST, 415
 * for another media type or content encoding, 413 for a body over the bound, 400 for a body that is
 * not an export request. Authentication (401), anonymous access and its rate limit are the router's,
 * as for intake v2.
 */
import type {ServerResponse} from 'node:http'

import {BODY_ENCODINGS, readBody} from '../intake/otlp/body.js'
import {ingestOtlp, OtlpIngestOptions, OtlpResult} from '../intake/otlp/ingest.js'
import {OTLP_HTTP_MAX_BYTES} from '../intake/otlp/limits.js'
import {
  BadMessage,
  decodeJson,
  decodeProtobuf,
  Encoding,
  encodeResponse,
  encodeStatus,
  measureJson,
  measureProtobuf,
  MessageTooComplex,
  Signal,
} from '../intake/otlp/wire.js'
import {clip, OUTPUT_MULTIPLE, QUEUE_FULL} from '../limits.js'
import {otlpClientNames} from '../monitoring/client-names.js'
import type {ApiContext} from './context.js'
import {clientIp, Exchange} from './exchange.js'
import {respond} from './respond.js'
import type {Handler} from './routes.js'

/** gRPC status codes, for the google.rpc.Status of an HTTP error and for the gRPC routes. */
export const GRPC = {
  INTERNAL: 13,
  INVALID_ARGUMENT: 3,
  OK: 0,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNAUTHENTICATED: 16,
  UNAVAILABLE: 14,
  UNIMPLEMENTED: 12,
} as const

/** The gRPC code an HTTP status stands for (the OTLP/HTTP specification's table, read backwards). */
export function grpcCodeOf(status: number): number {
  const codes: Record<number, number> = {400: GRPC.INVALID_ARGUMENT, 401: GRPC.UNAUTHENTICATED, 403: GRPC.PERMISSION_DENIED, 413: GRPC.RESOURCE_EXHAUSTED, 429: GRPC.RESOURCE_EXHAUSTED, 503: GRPC.UNAVAILABLE}
  return codes[status] ?? GRPC.INTERNAL
}

const MEDIA_TYPES: Record<string, Encoding> = {'application/json': 'json', 'application/x-protobuf': 'protobuf'}

/** The media type of a Content-Type header: lower case, without parameters. */
function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';', 1)[0].trim().toLowerCase()
}

/** A decoded, measured export request; or the status and message that end the request. */
export type Decoded = {message: unknown; decodedBytes: number} | {status: number; error: string}

/**
 * Measures a body (values, depth), reserves what decoding it will hold, and decodes it. The steps both
 * OTLP/HTTP and gRPC take between reading a message and writing its events.
 */
export function decodeMeasured(signal: Signal, encoding: Encoding, body: Buffer, memory: Exchange['memory']): Decoded {
  try {
    const measured = encoding === 'json' ? measureJson(body) : measureProtobuf(signal, body)
    // 503 says "later"; a request that could not be decoded even on an idle server must say "smaller".
    if (memory && measured.decodedBytes > memory.capacity) return {error: `the request would take ${mib(measured.decodedBytes)} MiB decoded, more than the ${mib(memory.capacity)} MiB one request may hold: send smaller batches`, status: 413}
    if (memory && !memory.reserve(measured.decodedBytes)) return {error: QUEUE_FULL, status: 503}
    const message = encoding === 'json' ? decodeJson(signal, body) : decodeProtobuf(signal, body)
    return {decodedBytes: body.length, message}
  } catch (error) {
    if (!(error instanceof BadMessage)) throw error
    const tooMany = error instanceof MessageTooComplex && error.message.includes('values')
    return {error: clip(error.message, 1024), status: tooMany ? 413 : 400}
  }
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1)
}

/** The ingest options of a request: the output, and for an anonymous client its allow lists and limiters. */
export function ingestOptions(context: ApiContext, anonymous: boolean, ip: string): OtlpIngestOptions {
  const {config} = context
  return {
    anonymous: anonymous
      ? {allowAgent: config.anonymous.allowAgent, allowService: config.anonymous.allowService, limiter: context.rateLimits.forIP(ip), output: context.outputLimits.forIP(ip)}
      : undefined,
    output: context.output,
    outputMultiple: OUTPUT_MULTIPLE,
  }
}

/** Counts a result in the server's stats, as the intake counts its events. */
export function countResult(context: ApiContext, result: OtlpResult): void {
  context.stats.events.accepted += result.accepted
  context.stats.events.invalid += result.rejected
}

/** The handler of one signal's route. */
export function otlpHttp(signal: Signal): Handler {
  return async (exchange: Exchange, context: ApiContext): Promise<void> => {
    const {anonymous, memory, outcome, req, res} = exchange
    if (req.method !== 'POST') return respond(context, req, res, 405, 'only POST requests are supported', {Allow: 'POST'})
    const encoding = MEDIA_TYPES[mediaType(req.headers['content-type'])]
    if (!encoding) return respond(context, req, res, 415, `unsupported content type '${clip(req.headers['content-type'] ?? '')}': send application/x-protobuf or application/json`)
    const contentEncoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase()
    if (!BODY_ENCODINGS.has(contentEncoding)) return respond(context, req, res, 415, `unsupported content encoding '${clip(contentEncoding)}': send gzip, deflate or none`)
    const declared = req.headers['content-length']
    const read = await readBody(req, {
      connection: req.socket,
      contentEncoding,
      contentLength: declared === undefined ? undefined : Number(declared),
      decoded: anonymous ? context.decodedLimits.forIP(clientIp(req)) : undefined,
      maxBytes: OTLP_HTTP_MAX_BYTES,
      memory,
    })
    if ('status' in read) return answerError(context, req, res, encoding, read.status, read.message)
    const decoded = decodeMeasured(signal, encoding, read.body, memory)
    if ('status' in decoded) return answerError(context, req, res, encoding, decoded.status, decoded.error)
    if (outcome.ok && outcome.previous) exchange.client = otlpClientNames(decoded.message)
    const result = await ingestOtlp(signal, decoded.message, decoded.decodedBytes, ingestOptions(context, anonymous, clientIp(req)))
    countResult(context, result)
    if (result.status !== 200) return answerError(context, req, res, encoding, result.status, result.message ?? 'internal error')
    answer(context, res, 200, encoding, encodeResponse(signal, encoding, result.rejected, result.errorMessage), result.rejected > 0 ? result.errorMessage : undefined)
  }
}

function answerError(context: ApiContext, req: Exchange['req'], res: ServerResponse, encoding: Encoding, status: number, message: string): void {
  // As for intake v2: a failed request closes its connection (what is left of its body is not read).
  if (!req.complete) res.setHeader('Connection', 'close')
  answer(context, res, status, encoding, encodeStatus(encoding, grpcCodeOf(status), message), message)
  if (!req.complete) req.resume()
}

/** Writes an OTLP body (the request's encoding); `failure` is kept for the request's log line. */
function answer(context: ApiContext, res: ServerResponse, status: number, encoding: Encoding, body: Buffer, failure?: string): void {
  if (res.headersSent || res.destroyed) return
  if (failure !== undefined) context.failures.set(res, clip(failure, 1024))
  if (context.closing) res.setHeader('Connection', 'close')
  res.writeHead(status, {'Content-Length': String(body.length), 'Content-Type': encoding === 'json' ? 'application/json' : 'application/x-protobuf'})
  res.end(body)
}
