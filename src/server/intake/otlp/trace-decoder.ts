/**
 * The protobuf ExportTraceServiceRequest decoded straight into the plain objects the trace conversion
 * reads (./spans.ts, ./resource.ts), with protobufjs's Reader for every read of the wire format and
 * protobufjs's own decoding rules: fields of an unexpected wire type skipped as unknown ones, the last
 * of a repeated singular field kept (a message merged into the one before it), the last member of a
 * oneof kept, empty strings and bytes of proto3 fields left unset, strings checked as UTF-8, the same
 * nesting bound (OTLP_MAX_DEPTH, counted as protobufjs counts it) and the same errors.
 *
 * Why not protobufjs's generated decoder: it makes a message object for every KeyValue and AnyValue
 * and turns every AnyValue into a dictionary-mode object (its oneof setter deletes the other members),
 * which cost more than half of an OTLP/HTTP request's time in the benchmark. Every field the schema
 * defines is still read and checked, used or not, so a body is refused exactly when protobufjs
 * refuses it; the other signals, and OTLP/JSON, keep protobufjs's decoding (./wire.ts).
 */
import protobuf from 'protobufjs/light.js'

import {OTLP_MAX_DEPTH} from './limits.js'
import type {Resource, Scope} from './resource.js'
import type {OtlpSpan, SpanStatus} from './spans.js'
import type {AnyValue, KeyValue} from './values.js'

type Reader = protobuf.Reader

export interface DecodedTraces {
  resourceSpans: Array<{resource?: Resource; scopeSpans: Array<{scope?: Scope; spans: OtlpSpan[]}>}>
}

const WIRE_VARINT = 0
const WIRE_FIXED64 = 1
const WIRE_LENGTH = 2
const WIRE_FIXED32 = 5

/** Schema types read whole by protobufjs: a resource's entity references, used by nothing here. */
let entityRef: protobuf.Type | undefined

/** Decodes an ExportTraceServiceRequest; throws protobufjs's errors (`max depth exceeded` past the nesting bound) for a body that is not one. */
export function decodeTraces(bytes: Uint8Array, root: protobuf.Root): DecodedTraces {
  // set up now: protobufjs's first call of decode() would drop the depth argument
  entityRef ??= root.lookupType('opentelemetry.proto.common.v1.EntityRef').setup()
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const r = protobuf.Reader.create(buffer)
  const request: DecodedTraces = {resourceSpans: []}
  while (r.pos < r.len) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_LENGTH)) request.resourceSpans.push(message(r, 1, resourceSpans, undefined))
    else r.skipType(tag & 7, 0, tag >>> 3)
  }

  return request
}

/**
 * One nested message, as protobufjs's generated decode reads it: its length, the nesting bound, the
 * reader held to the message's end while `read` reads it, and the end reached exactly.
 */
function message<T>(r: Reader, depth: number, read: (r: Reader, end: number, depth: number, into: T | undefined) => T, into: T | undefined): T {
  const length = r.size()
  if (depth > OTLP_MAX_DEPTH) throw new Error('max depth exceeded')
  const end = r.pos + length
  if (end > r.len) throw new RangeError('index out of range')
  const outer = r.len
  r.len = end
  const value = read(r, end, depth, into)
  if (r.pos !== end) throw new RangeError('index out of range')
  r.len = outer
  return value
}

/** A string, checked as UTF-8 as protobufjs's stringVerify checks it, read natively when it is valid. */
function string(r: Reader): string {
  const before = r.pos
  const length = r.size()
  const start = r.pos
  const end = start + length
  if (end > r.len) throw new RangeError(`index out of range: ${start} + ${length} > ${r.len}`)
  r.pos = end
  // utf8Slice: Buffer's own decoder without toString's argument handling (protobufjs's BufferReader calls it too).
  const text = (r.buf as Buffer & {utf8Slice(start: number, end: number): string}).utf8Slice(start, end)
  // Invalid UTF-8 always decodes with U+FFFD: only then is the strict (slower) reading needed, to refuse it.
  if (!text.includes('\uFFFD')) return text
  r.pos = before
  return r.stringVerify()
}

/** A field not read here (or of another wire type than its schema's): skipped, as protobufjs skips an unknown field. */
function skip(r: Reader, tag: number, depth: number): void {
  r.skipType(tag & 7, depth, tag >>> 3)
}

function resourceSpans(r: Reader, end: number, depth: number, into: DecodedTraces['resourceSpans'][number] | undefined): DecodedTraces['resourceSpans'][number] {
  const value = into ?? {resource: undefined, scopeSpans: []}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_LENGTH)) value.resource = message(r, depth + 1, resource, value.resource)
    else if (tag === ((2 << 3) | WIRE_LENGTH)) value.scopeSpans.push(message(r, depth + 1, scopeSpans, undefined))
    else if (tag === ((3 << 3) | WIRE_LENGTH)) string(r)
    else skip(r, tag, depth)
  }

  return value
}

function resource(r: Reader, end: number, depth: number, into: Resource | undefined): Resource {
  const value = into ?? {attributes: []}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_LENGTH)) value.attributes!.push(message(r, depth + 1, keyValue, undefined))
    else if (tag === ((2 << 3) | WIRE_VARINT)) r.uint32()
    else if (tag === ((3 << 3) | WIRE_LENGTH)) (entityRef!.decode as (r: Reader, length: number, group: undefined, depth: number) => unknown)(r, r.size(), undefined, depth + 1)
    else skip(r, tag, depth)
  }

  return value
}

function scopeSpans(r: Reader, end: number, depth: number, into: DecodedTraces['resourceSpans'][number]['scopeSpans'][number] | undefined): DecodedTraces['resourceSpans'][number]['scopeSpans'][number] {
  const value = into ?? {scope: undefined, spans: []}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_LENGTH)) value.scope = message(r, depth + 1, scope, value.scope)
    else if (tag === ((2 << 3) | WIRE_LENGTH)) value.spans.push(message(r, depth + 1, span, undefined))
    else if (tag === ((3 << 3) | WIRE_LENGTH)) string(r)
    else skip(r, tag, depth)
  }

  return value
}

function scope(r: Reader, end: number, depth: number, into: Scope | undefined): Scope {
  const value: Scope & {attributes?: KeyValue[]} = into ?? {name: undefined, version: undefined}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_LENGTH)) value.name = nonEmpty(string(r))
    else if (tag === ((2 << 3) | WIRE_LENGTH)) value.version = nonEmpty(string(r))
    else if (tag === ((3 << 3) | WIRE_LENGTH)) message(r, depth + 1, keyValue, undefined)
    else if (tag === ((4 << 3) | WIRE_VARINT)) r.uint32()
    else skip(r, tag, depth)
  }

  return value
}

/** proto3: an empty string or bytes field is unset. */
function nonEmpty<T extends {length: number}>(value: T): T | undefined {
  return value.length > 0 ? value : undefined
}

function span(r: Reader, end: number, depth: number): OtlpSpan {
  const value: OtlpSpan = {attributes: undefined, endTimeUnixNano: undefined, events: undefined, kind: undefined, links: undefined, name: undefined, parentSpanId: undefined, spanId: undefined, startTimeUnixNano: undefined, status: undefined, traceId: undefined, traceState: undefined}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_LENGTH)) value.traceId = nonEmpty(r.bytes())
    else if (tag === ((2 << 3) | WIRE_LENGTH)) value.spanId = nonEmpty(r.bytes())
    else if (tag === ((3 << 3) | WIRE_LENGTH)) value.traceState = nonEmpty(string(r))
    else if (tag === ((4 << 3) | WIRE_LENGTH)) value.parentSpanId = nonEmpty(r.bytes())
    else if (tag === ((5 << 3) | WIRE_LENGTH)) value.name = nonEmpty(string(r))
    else if (tag === ((6 << 3) | WIRE_VARINT)) value.kind = r.int32() || undefined
    else if (tag === ((7 << 3) | WIRE_FIXED64)) value.startTimeUnixNano = r.fixed64() as unknown as number
    else if (tag === ((8 << 3) | WIRE_FIXED64)) value.endTimeUnixNano = r.fixed64() as unknown as number
    else if (tag === ((9 << 3) | WIRE_LENGTH)) (value.attributes ??= []).push(message(r, depth + 1, keyValue, undefined))
    else if (tag === ((11 << 3) | WIRE_LENGTH)) (value.events ??= []).push(message(r, depth + 1, spanEvent, undefined))
    else if (tag === ((13 << 3) | WIRE_LENGTH)) (value.links ??= []).push(message(r, depth + 1, link, undefined))
    else if (tag === ((15 << 3) | WIRE_LENGTH)) value.status = message(r, depth + 1, status, value.status ?? undefined)
    // dropped attribute, event and link counts; flags
    else if (tag === ((10 << 3) | WIRE_VARINT) || tag === ((12 << 3) | WIRE_VARINT) || tag === ((14 << 3) | WIRE_VARINT)) r.uint32()
    else if (tag === ((16 << 3) | WIRE_FIXED32)) r.fixed32()
    else skip(r, tag, depth)
  }

  return value
}

type SpanEvent = NonNullable<OtlpSpan['events']>[number]

function spanEvent(r: Reader, end: number, depth: number): SpanEvent {
  const value: SpanEvent = {attributes: undefined, name: undefined, timeUnixNano: undefined}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_FIXED64)) value.timeUnixNano = r.fixed64() as unknown as number
    else if (tag === ((2 << 3) | WIRE_LENGTH)) value.name = nonEmpty(string(r))
    else if (tag === ((3 << 3) | WIRE_LENGTH)) (value.attributes ??= []).push(message(r, depth + 1, keyValue, undefined))
    else if (tag === ((4 << 3) | WIRE_VARINT)) r.uint32()
    else skip(r, tag, depth)
  }

  return value
}

type Link = NonNullable<OtlpSpan['links']>[number]

function link(r: Reader, end: number, depth: number): Link {
  const value: Link = {spanId: undefined, traceId: undefined}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_LENGTH)) value.traceId = nonEmpty(r.bytes())
    else if (tag === ((2 << 3) | WIRE_LENGTH)) value.spanId = nonEmpty(r.bytes())
    else if (tag === ((3 << 3) | WIRE_LENGTH)) string(r)
    else if (tag === ((4 << 3) | WIRE_LENGTH)) message(r, depth + 1, keyValue, undefined)
    else if (tag === ((5 << 3) | WIRE_VARINT)) r.uint32()
    else if (tag === ((6 << 3) | WIRE_FIXED32)) r.fixed32()
    else skip(r, tag, depth)
  }

  return value
}

function status(r: Reader, end: number, _depth: number, into: SpanStatus | undefined): SpanStatus {
  const value = into ?? {code: undefined, message: undefined}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((2 << 3) | WIRE_LENGTH)) value.message = nonEmpty(string(r))
    else if (tag === ((3 << 3) | WIRE_VARINT)) value.code = r.int32() || undefined
    else skip(r, tag, _depth)
  }

  return value
}

function keyValue(r: Reader, end: number, depth: number): KeyValue {
  const value: KeyValue = {key: undefined, value: undefined}
  while (r.pos < end) {
    const tag = r.tag()
    if (tag === ((1 << 3) | WIRE_LENGTH)) value.key = nonEmpty(string(r))
    else if (tag === ((2 << 3) | WIRE_LENGTH)) value.value = message(r, depth + 1, anyValue, value.value ?? undefined)
    else if (tag === ((3 << 3) | WIRE_VARINT)) r.int32()
    else skip(r, tag, depth)
  }

  return value
}

/** An AnyValue holds only the last member of its oneof read (protobufjs deletes the others); an array or map merges into one before it. */
function anyValue(r: Reader, end: number, depth: number, into: AnyValue | undefined): AnyValue {
  let value: AnyValue = into ?? {}
  while (r.pos < end) {
    const tag = r.tag()
    switch (tag) {
      case (1 << 3) | WIRE_LENGTH: {
        value = {stringValue: string(r)}
        break
      }

      case (2 << 3) | WIRE_VARINT: {
        value = {boolValue: r.bool()}
        break
      }

      case (3 << 3) | WIRE_VARINT: {
        value = {intValue: r.int64() as unknown as number}
        break
      }

      case (4 << 3) | WIRE_FIXED64: {
        value = {doubleValue: r.double()}
        break
      }

      case (5 << 3) | WIRE_LENGTH: {
        value = {arrayValue: message(r, depth + 1, arrayValue, value.arrayValue ?? undefined)}
        break
      }

      case (6 << 3) | WIRE_LENGTH: {
        value = {kvlistValue: message(r, depth + 1, kvlistValue, value.kvlistValue ?? undefined)}
        break
      }

      case (7 << 3) | WIRE_LENGTH: {
        value = {bytesValue: r.bytes()}
        break
      }

      case (8 << 3) | WIRE_VARINT: {
        // A string of the profiles signal's dictionary: no member apm-data reads.
        r.int32()
        value = {}
        break
      }

      default: {
        skip(r, tag, depth)
      }
    }
  }

  return value
}

/** An ArrayValue or KeyValueList: field 1, repeated, appended to the one it merges into. */
function values<Item>(item: (r: Reader, end: number, depth: number, into: Item | undefined) => Item): (r: Reader, end: number, depth: number, into: {values?: Item[]} | undefined) => {values?: Item[]} {
  return (r, end, depth, into) => {
    const value = into ?? {values: []}
    while (r.pos < end) {
      const tag = r.tag()
      if (tag === ((1 << 3) | WIRE_LENGTH)) (value.values ??= []).push(message(r, depth + 1, item, undefined))
      else skip(r, tag, depth)
    }

    return value
  }
}

const arrayValue = values(anyValue)
const kvlistValue = values(keyValue)
