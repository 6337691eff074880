/**
 * OTLP on the wire: the export requests of the three signals decoded from protobuf (OTLP/HTTP
 * `application/x-protobuf`, gRPC) or JSON (`application/json`) by protobufjs, with the OTLP definitions
 * of ./schema.ts, and the answers encoded back in the request's encoding: the export response (with its
 * `partial_success`) or a google.rpc.Status.
 *
 * Nothing is decoded before it is measured: a protobuf message is walked once with protobufjs's Reader,
 * by its schema, counting its values and its nesting depth (a JSON body's brackets are counted by
 * ../../../core/format/json-guard.ts), so that a request is refused, or its decoded form reserved in the
 * memory budget, before protobufjs allocates anything for it.
 */
import protobuf from 'protobufjs/light.js'

import {JSON_TOO_DEEP, JSON_TOO_MANY, jsonValueCount} from '../../../core/format/json-guard.js'
import {clip} from '../../limits.js'
import {BYTES_PER_DECODED_VALUE, OTLP_MAX_DEPTH, OTLP_MAX_JSON_DEPTH, OTLP_MAX_VALUES} from './limits.js'
import {OTLP_SCHEMA} from './schema.js'

// 64-bit integers as JavaScript numbers, not Long objects: timestamps in nanoseconds then keep 256 ns
// of precision, more than the microseconds they are written with, and decoding allocates far less.
protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long
protobuf.configure()
// A second bound on nesting, inside protobufjs's own decoder (the walk below comes first).
protobuf.Reader.recursionLimit = OTLP_MAX_DEPTH

let root: protobuf.Root | undefined

/**
 * A type of the OTLP schema. The schema's types are built when an OTLP message is first read or written,
 * not when the server starts: building them (protobufjs's Root.fromJSON of the three signals) was about
 * 7 ms of every `apm-server run` start, before "listening", on servers that may never get an OTLP
 * request; the first one pays it instead.
 */
function lookupType(name: string): protobuf.Type {
  root ??= protobuf.Root.fromJSON(OTLP_SCHEMA)
  return root.lookupType(name)
}

const COLLECTOR = 'opentelemetry.proto.collector'

export type Signal = 'logs' | 'metrics' | 'traces'

interface SignalTypes {
  readonly request: protobuf.Type
  readonly response: protobuf.Type
  /** the partial_success counter of this signal's response */
  rejectedField: 'rejectedDataPoints' | 'rejectedLogRecords' | 'rejectedSpans'
  /** the gRPC method, `/package.Service/Export` */
  grpcPath: string
}

function signalTypes(signal: Signal, service: string, message: string, rejectedField: SignalTypes['rejectedField']): SignalTypes {
  const base = `${COLLECTOR}.${signal === 'traces' ? 'trace' : signal}.v1`
  let request: protobuf.Type | undefined
  let response: protobuf.Type | undefined
  return {
    grpcPath: `/${base}.${service}/Export`,
    rejectedField,
    get request() {
      return (request ??= lookupType(`${base}.Export${message}ServiceRequest`))
    },
    get response() {
      return (response ??= lookupType(`${base}.Export${message}ServiceResponse`))
    },
  }
}

export const SIGNALS: Readonly<Record<Signal, SignalTypes>> = {
  logs: signalTypes('logs', 'LogsService', 'Logs', 'rejectedLogRecords'),
  metrics: signalTypes('metrics', 'MetricsService', 'Metrics', 'rejectedDataPoints'),
  traces: signalTypes('traces', 'TraceService', 'Trace', 'rejectedSpans'),
}

let status: protobuf.Type | undefined
const statusType = () => (status ??= lookupType('google.rpc.Status'))

export type Encoding = 'json' | 'protobuf'

/** A body that cannot be an export request of its signal: the client's error (400, INVALID_ARGUMENT). */
export class BadMessage extends Error {}

/** A request past a bound of ./limits.ts (also a BadMessage: the client sent it). */
export class MessageTooComplex extends BadMessage {}

export interface Measured {
  /** values the decoded form will hold (see OTLP_MAX_VALUES) */
  values: number
  /** heap the decoded form is reckoned to take */
  decodedBytes: number
}

/**
 * A message at most this long is not walked: it cannot hold more than half as many values as bytes
 * (each takes two bytes or more), so its worst decoded size is reserved instead, and protobufjs's own
 * recursion limit (OTLP_MAX_DEPTH) bounds its nesting. The walk costs about a quarter of decoding.
 */
export const UNWALKED_MAX_BYTES = 64 * 1024

/**
 * Counts the values of a protobuf message and checks its nesting, without decoding it; throws a
 * MessageTooComplex past OTLP_MAX_VALUES or OTLP_MAX_DEPTH, a BadMessage for a length that overruns.
 * A message of at most UNWALKED_MAX_BYTES is reckoned at its worst instead.
 */
export function measureProtobuf(signal: Signal, bytes: Uint8Array): Measured {
  if (bytes.length <= UNWALKED_MAX_BYTES) {
    const values = Math.ceil(bytes.length / 2)
    return {decodedBytes: bytes.length + values * BYTES_PER_DECODED_VALUE, values}
  }

  const reader = protobuf.Reader.create(bytes)
  const counter = {values: 0}
  try {
    walk(SIGNALS[signal].request, reader, bytes.length, 1, counter)
  } catch (error) {
    if (error instanceof BadMessage) throw error
    throw new BadMessage(`failed to unmarshal request body: ${(error as Error).message}`)
  }

  return {decodedBytes: bytes.length + counter.values * BYTES_PER_DECODED_VALUE, values: counter.values}
}

/** Smallest encoding of one element of a packed field, by its wire type: what the count of a packed run is bounded by. */
const PACKED_ELEMENT_BYTES: Record<string, number> = {double: 8, fixed32: 4, fixed64: 8, float: 4, sfixed32: 4, sfixed64: 8}

function walk(type: protobuf.Type, reader: protobuf.Reader, end: number, depth: number, counter: {values: number}): void {
  if (depth > OTLP_MAX_DEPTH) throw new MessageTooComplex(`the message is nested deeper than ${OTLP_MAX_DEPTH} levels`)
  while (reader.pos < end) {
    const tag = reader.uint32()
    const wireType = tag & 7
    const field = type.fieldsById[tag >>> 3] as protobuf.Field | undefined
    if (++counter.values > OTLP_MAX_VALUES) throw new MessageTooComplex(`the message holds more than ${OTLP_MAX_VALUES} values`)
    if (wireType !== 2) {
      reader.skipType(wireType)
      continue
    }

    const length = reader.uint32()
    const start = reader.pos
    if (start + length > end) throw new BadMessage('failed to unmarshal request body: a length runs past the end of the message')
    if (field?.resolvedType instanceof protobuf.Type) {
      walk(field.resolvedType, reader, start + length, depth + 1, counter)
    } else if (field?.repeated && field.type !== 'string' && field.type !== 'bytes' && !field.resolvedType) {
      // A packed run of numbers: at most one element a byte (varints), or per fixed width.
      counter.values += Math.floor(length / (PACKED_ELEMENT_BYTES[field.type] ?? 1))
      if (counter.values > OTLP_MAX_VALUES) throw new MessageTooComplex(`the message holds more than ${OTLP_MAX_VALUES} values`)
    }

    reader.pos = start + length
  }

  if (reader.pos !== end) throw new BadMessage('failed to unmarshal request body: a field runs past the end of its message')
}

/** Decodes a measured protobuf export request; a BadMessage when it is not one. */
export function decodeProtobuf(signal: Signal, bytes: Uint8Array): unknown {
  try {
    return SIGNALS[signal].request.decode(bytes)
  } catch (error) {
    const message = (error as Error).message
    // protobufjs's recursion limit: the same answer as the walk's.
    if (message === 'max depth exceeded') throw new MessageTooComplex(`the message is nested deeper than ${OTLP_MAX_DEPTH} levels`)
    throw new BadMessage(`failed to unmarshal request body: ${message}`)
  }
}

/**
 * Counts the values of a JSON body by its brackets and separators (json-guard, one pass, no allocation)
 * and reckons its decoded size: parsed, then converted, both held for a moment.
 */
export function measureJson(bytes: Uint8Array): Measured {
  const values = jsonValueCount(bytes, OTLP_MAX_JSON_DEPTH, OTLP_MAX_VALUES)
  if (values === JSON_TOO_DEEP) throw new MessageTooComplex(`the message is nested deeper than ${OTLP_MAX_DEPTH} levels`)
  if (values === JSON_TOO_MANY) throw new MessageTooComplex(`the message holds more than ${OTLP_MAX_VALUES} values`)
  return {decodedBytes: 2 * (bytes.length + values * BYTES_PER_DECODED_VALUE), values}
}

const ID_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId'])
const HEX = /^(?:[\da-f]{2})*$/i

/**
 * OTLP/JSON keeps the protobuf JSON mapping except for trace and span ids, which are hex, not base64:
 * they are turned into bytes as they are parsed, so that protobufjs takes them as they are.
 */
function reviveIds(key: string, value: unknown): unknown {
  // JSON.parse turns a literal out of a double's range (1e400) into Infinity, which no field may hold
  // (OTLP/JSON spells a double's infinity "Infinity"): written out, it would be a null timestamp.
  if (typeof value === 'number' && !Number.isFinite(value)) throw new BadMessage(`failed to unmarshal request body: ${clip(key, 64)} is a number out of range`)
  if (typeof value !== 'string' || !ID_FIELDS.has(key)) return value
  if (!HEX.test(value)) throw new BadMessage(`failed to unmarshal request body: ${key} is not hex`)
  return Buffer.from(value, 'hex')
}

/** Decodes a measured OTLP/JSON export request; a BadMessage when it is not one. */
export function decodeJson(signal: Signal, bytes: Buffer): unknown {
  let parsed: unknown
  try {
    parsed = JSON.parse(bytes.toString('utf8'), reviveIds)
  } catch (error) {
    if (error instanceof BadMessage) throw error
    throw new BadMessage(`failed to unmarshal request body: ${(error as Error).message}`)
  }

  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new BadMessage('failed to unmarshal request body: not a JSON object')
  try {
    return SIGNALS[signal].request.fromObject(parsed as Record<string, unknown>)
  } catch (error) {
    throw new BadMessage(`failed to unmarshal request body: ${(error as Error).message}`)
  }
}

/** The export response of `signal`, with `partial_success` when items were rejected, in `encoding`. */
export function encodeResponse(signal: Signal, encoding: Encoding, rejected: number, errorMessage: string): Buffer {
  const {rejectedField, response} = SIGNALS[signal]
  const partial = rejected > 0 || errorMessage !== '' ? {partialSuccess: {errorMessage, [rejectedField]: rejected}} : {}
  if (encoding === 'json') {
    // int64 as a string, as the protobuf JSON mapping writes it.
    const json = rejected > 0 || errorMessage !== '' ? {partialSuccess: {[rejectedField]: String(rejected), errorMessage}} : {}
    return Buffer.from(JSON.stringify(json))
  }

  return Buffer.from(response.encode(response.fromObject(partial)).finish())
}

/** A google.rpc.Status (gRPC code and message), the body of an OTLP/HTTP error, in `encoding`. */
export function encodeStatus(encoding: Encoding, code: number, message: string): Buffer {
  if (encoding === 'json') return Buffer.from(JSON.stringify({code, message}))
  const type = statusType()
  return Buffer.from(type.encode(type.fromObject({code, message})).finish())
}

/** Decodes an export response (tests, the benchmark's check): its rejected count and message. */
export function decodeResponse(signal: Signal, bytes: Uint8Array): {rejected: number; errorMessage: string} {
  const {rejectedField, response} = SIGNALS[signal]
  const message = response.toObject(response.decode(bytes)) as {partialSuccess?: Record<string, number | string>}
  const partial = message.partialSuccess ?? {}
  return {errorMessage: String(partial.errorMessage ?? ''), rejected: Number(partial[rejectedField] ?? 0)}
}

/** Decodes a google.rpc.Status (tests). */
export function decodeStatus(bytes: Uint8Array): {code: number; message: string} {
  const type = statusType()
  const decoded = type.toObject(type.decode(bytes)) as {code?: number; message?: string}
  return {code: decoded.code ?? 0, message: decoded.message ?? ''}
}
