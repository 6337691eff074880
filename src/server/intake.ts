/**
 * The intake protocol (`POST /intake/v2/events`), as Elastic's APM Server reads it
 * (apm-data input/elasticapm and apm-server internal/beater/api/intake):
 *
 * - the body is ndjson, plain, gzip or deflate (zlib): Content-Encoding decides, else the first two
 *   bytes are sniffed; it is read as it arrives, since agents keep a request open for many seconds;
 * - the first line is `{"metadata": ...}`; then one event a line, `transaction`, `span`, `error`,
 *   `metricset` or `log`, identified by the line's first quoted key; empty lines are skipped;
 * - a line longer than `max_event_size` is skipped whole, never buffered, and reported;
 * - a bad line is reported and the rest still read (at most 5 reported, all counted); a bad metadata
 *   line, a denied or rate-limited anonymous client, or a broken compressed stream end the request;
 * - every line is held to the bounds of limits.ts before it is parsed (nesting depth, containers), and
 *   so is what it costs: a request's output against its own size, its memory against the server's
 *   budget (past it, `503 queue is full`), and the client text its errors echo.
 *
 * Each accepted event goes to the output as one line `{"metadata": {...}, "<type>": {...}}`; the result
 * is computed only after the output holds every accepted event.
 */
import {isUtf8} from 'node:buffer'
import type {EventEmitter} from 'node:events'
import type {Readable, Transform} from 'node:stream'
import {setImmediate as nextTurn} from 'node:timers/promises'
import {createGunzip, createInflate, gunzipSync, inflateSync} from 'node:zlib'

import {jsonDepthWithin} from '../core/format/json-guard.js'
import {
  ANONYMOUS_METADATA_MAX_BYTES,
  ANONYMOUS_METADATA_TOO_LARGE,
  ANONYMOUS_OUTPUT_RATE_EXCEEDED,
  clip,
  documentOf,
  LINE_TOO_COMPLEX,
  MAX_LINE_CONTAINERS,
  MAX_LINE_DEPTH,
  MemoryAccount,
  OUTPUT_LIMIT_EXCEEDED,
  QUEUE_FULL,
} from './limits.js'
import type {EventSink} from './outputs/output.js'
import {anonymousIngestDenied, RATE_LIMIT_EXCEEDED, TokenBucket} from './rum.js'

export const EVENT_TYPES = new Set(['error', 'log', 'metricset', 'span', 'transaction'])
/** Go's InvalidInputError message for an oversized line (the wording, with its full stop). */
export const EVENT_TOO_LARGE = 'event exceeded the permitted size.'
/** At most this many per-line errors are listed; a request-ending error is added after them, as in Go. */
export const MAX_LISTED_ERRORS = 5
const METADATA_REQUIRED = '"metadata" or "m" required'
const SERVICE_NAME_PATTERN = /^[a-zA-Z0-9 _-]+$/

export interface IntakeError {
  message: string
  document?: string
}

export interface IntakeResult {
  /** 202 when all went well, else the highest status among the errors (400, 403, 429, 500) */
  status: number
  accepted: number
  /** listed errors (see MAX_LISTED_ERRORS) */
  errors: IntakeError[]
  /** counts of every rejected line, listed or not */
  invalid: number
  tooLarge: number
  /** true when reading stopped before the end of the body */
  stopped: boolean
}

export type {EventSink} from './outputs/output.js'

export interface IntakeOptions {
  maxEventSize: number
  output: EventSink
  /** the body's declared length (Content-Length), when it has one: see {@link WHOLE_BODY_MAX_BYTES} */
  contentLength?: number
  /**
   * set for anonymous clients: who they may send data for, their event rate limiter, and (when set) the
   * limiter of the bytes their events may write
   */
  anonymous?: {allowAgent: readonly string[]; allowService: readonly string[]; limiter: TokenBucket; output?: TokenBucket}
  /** when set, the request ends (400) once its output would pass this many times its decoded size: see OUTPUT_MULTIPLE */
  outputMultiple?: number
  /** when set, what the request holds in memory is reserved here first; when refused, 503 `queue is full` */
  memory?: MemoryAccount
  /**
   * the request's connection: when it closes (the client went, or the server cut it), reading ends at
   * once, whatever is left of the body (an EventEmitter, not an AbortSignal: a listener on one costs
   * ~25 times more, on every request)
   */
  connection?: Pick<EventEmitter, 'off' | 'once'>
  /** told of an error that is not the client's (a bug): the request then ends with a 500 */
  onUnexpectedError?: (error: Error) => void
}

/** The HTTP-level checks before the body is read (Go's validateRequest), as a result, or undefined when fine. */
export function checkIntakeRequest(method: string | undefined, contentType: string | undefined): IntakeResult | undefined {
  if (method !== 'POST') return failure(400, 'only POST requests are supported')
  if (contentType && !contentType.includes('application/x-ndjson')) return failure(400, `invalid content type: '${clip(contentType)}'`)
  return undefined
}

function failure(status: number, message: string): IntakeResult {
  return {accepted: 0, errors: [{message}], invalid: 0, status, stopped: true, tooLarge: 0}
}

/** The response body: `{"accepted": N, "errors": [...]}` on failure, `{"accepted": N}` with ?verbose, else none. */
export function intakeResponseBody(result: IntakeResult, verbose: boolean): undefined | {accepted: number; errors?: IntakeError[]} {
  if (result.status >= 400) return {accepted: result.accepted, errors: result.errors}
  return verbose ? {accepted: result.accepted} : undefined
}

class StreamStop extends Error {}

/**
 * The line-level state machine: metadata first, then events. `line()` returns false once the request
 * must end; `result()` gives the outcome.
 */
class EventReader {
  /** `{"metadata":{...},` as bytes: the head of every output line of this request; set once the metadata is read */
  private metadataHead: Buffer | undefined
  /** the metadata's agent and service names, which an anonymous client's events are checked against */
  private names: {agent: string; service: string} | undefined
  private accepted = 0
  /** bytes given to the output so far */
  private written = 0
  /** decoded bytes read so far: every line handed over, with its newline (an oversized one as cut) */
  private read = 0
  private invalid = 0
  private tooLarge = 0
  private status = 202
  private readonly errors: IntakeError[] = []
  private stopped = false

  constructor(private readonly options: IntakeOptions) {}

  get done(): boolean {
    return this.stopped
  }

  get acceptedCount(): number {
    return this.accepted
  }

  get writtenBytes(): number {
    return this.written
  }

  /** One line without its newline; `oversized` when it was cut at max_event_size; `atEnd` when no newline followed. */
  line(bytes: Buffer, oversized: boolean, atEnd: boolean): boolean {
    this.read += bytes.length + 1
    try {
      if (this.metadataHead === undefined) this.readMetadata(bytes, oversized, atEnd)
      else this.readEvent(bytes, oversized)
    } catch (error) {
      if (!(error instanceof StreamStop)) throw error
    }

    return !this.stopped
  }

  /** A request-ending error: listed after the per-line errors. */
  stop(status: number, message: string, document?: string): never {
    // Go's field order: message, then document.
    this.errors.push(document === undefined ? {message} : {message, document})
    this.status = Math.max(this.status, status)
    this.stopped = true
    throw new StreamStop()
  }

  stopQuietly(status: number, message: string): void {
    try {
      this.stop(status, message)
    } catch {}
  }

  result(): IntakeResult {
    return {accepted: this.accepted, errors: this.errors, invalid: this.invalid, status: this.status, stopped: this.stopped, tooLarge: this.tooLarge}
  }

  private readMetadata(bytes: Buffer, oversized: boolean, atEnd: boolean): void {
    if (oversized) this.stop(400, EVENT_TOO_LARGE, documentOf(bytes))
    if (this.options.anonymous && bytes.length > ANONYMOUS_METADATA_MAX_BYTES) this.stop(400, ANONYMOUS_METADATA_TOO_LARGE, documentOf(bytes))
    const text = bytes.toString('utf8')
    if (atEnd) this.stop(400, 'EOF while reading metadata', documentOf(bytes))
    if (identifyType(text) !== 'metadata') this.stop(400, METADATA_REQUIRED, documentOf(bytes))
    if (!withinLineBounds(bytes)) this.stop(400, LINE_TOO_COMPLEX, documentOf(bytes))
    const parsed = parseLine(text)
    if (typeof parsed === 'string') this.stop(400, parsed, documentOf(bytes))
    const {metadata} = parsed as Record<string, unknown>
    const problem = metadataProblem(metadata)
    if (problem) this.stop(400, `validation error: ${problem}`, documentOf(bytes))
    const head = Buffer.from(`{"metadata":${JSON.stringify(metadata)},`)
    // Held until the request ends: every event line starts with it.
    if (this.options.memory && !this.options.memory.reserve(head.length)) this.stop(503, QUEUE_FULL)
    const service = (metadata as {service: {agent: {name: string}; name: string}}).service
    this.names = {agent: service.agent.name, service: service.name}
    this.metadataHead = head
  }

  private readEvent(bytes: Buffer, oversized: boolean): void {
    if (bytes.length === 0 && !oversized) return
    const head = this.metadataHead!
    // The fast path: a well-formed `{"<type>": {...}}` line is stored as its own bytes behind the metadata,
    // never decoded, parsed into objects or re-serialised. Anything else (and anonymous clients, whose
    // events are inspected) takes the path below, which is the authority on errors.
    if (!oversized && !this.options.anonymous) {
      const members = eventMembers(bytes)
      if (members !== undefined) {
        this.spend(head.length + members.length + 1)
        this.options.output.write([head, members])
        this.accepted++
        return
      }
    }

    if (oversized) return this.reject(EVENT_TOO_LARGE, documentOf(bytes), true)
    const text = bytes.toString('utf8')
    const type = identifyType(text)
    if (type === undefined || !EVENT_TYPES.has(type)) return this.reject(`did not recognize object type: ${JSON.stringify(clip(type ?? ''))}`, documentOf(bytes))
    if (!withinLineBounds(bytes)) return this.reject(LINE_TOO_COMPLEX, documentOf(bytes))
    const parsed = parseLine(text)
    if (typeof parsed === 'string') return this.reject(parsed, documentOf(bytes))
    const event = (parsed as Record<string, unknown>)[type]
    if (!isObject(event)) return this.reject(`validation error: '${type}' required`, documentOf(bytes))
    const {anonymous} = this.options
    if (anonymous) {
      const [agent, service] = effectiveNames(this.names!, event)
      const denied = anonymousIngestDenied(anonymous.allowAgent, anonymous.allowService, agent, service)
      if (denied) this.stop(403, denied)
      if (!anonymous.limiter.allow(1)) this.stop(429, RATE_LIMIT_EXCEEDED)
    }

    const tail = Buffer.from(`${JSON.stringify(type)}:${JSON.stringify(event)}}`)
    this.spend(head.length + tail.length + 1)
    this.options.output.write([head, tail])
    this.accepted++
  }

  /** Counts `bytes` of output about to be written, or ends the request when the request or its client may not write them. */
  private spend(bytes: number): void {
    const {anonymous, outputMultiple} = this.options
    if (outputMultiple !== undefined && this.written + bytes > outputMultiple * this.read) this.stop(400, OUTPUT_LIMIT_EXCEEDED)
    if (anonymous?.output && !anonymous.output.allow(bytes)) this.stop(429, ANONYMOUS_OUTPUT_RATE_EXCEEDED)
    this.written += bytes
  }

  private reject(message: string, document: string, tooLarge = false): void {
    if (tooLarge) this.tooLarge++
    else this.invalid++
    this.status = Math.max(this.status, 400)
    if (this.errors.length < MAX_LISTED_ERRORS) this.errors.push({message, document})
  }
}

/** The line is within MAX_LINE_DEPTH and MAX_LINE_CONTAINERS: checked before JSON.parse and JSON.stringify see it. */
function withinLineBounds(line: Buffer): boolean {
  return jsonDepthWithin(line, MAX_LINE_DEPTH, MAX_LINE_CONTAINERS)
}

const EMPTY = Buffer.alloc(0)
const SPACE = 0x20
const TAB = 0x09
const QUOTE = 0x22
const BACKSLASH = 0x5c
const COLON = 0x3a
const COMMA = 0x2c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const EVENT_TYPE_KEYS = new Set([...EVENT_TYPES].map((type) => `"${type}"`))

/**
 * For a line that is exactly one JSON object with one member, an event type whose value is an object
 * (`{"span": {...}}`, blanks around tokens allowed), in valid UTF-8 and without carriage returns: the
 * bytes after its opening brace, up to its closing brace, so the output line is the metadata head and
 * these bytes. Undefined for anything else, which is then parsed and judged the slow way: this only ever
 * accepts what `JSON.parse` accepts and the slow path would store (within the same line bounds), never
 * reports an error itself.
 */
export function eventMembers(line: Buffer): Buffer | undefined {
  const end = line.length
  let i = skipBlanks(line, 0, end)
  if (line[i] !== OPEN_BRACE) return undefined
  const keyStart = skipBlanks(line, i + 1, end)
  if (line[keyStart] !== QUOTE) return undefined
  const keyEnd = line.indexOf(QUOTE, keyStart + 1)
  // The longest type, "transaction", spans 12 bytes from quote to quote; a key with escapes never matches.
  if (keyEnd === -1 || keyEnd - keyStart > 12 || !EVENT_TYPE_KEYS.has(line.toString('latin1', keyStart, keyEnd + 1))) return undefined
  i = skipBlanks(line, keyEnd + 1, end)
  if (line[i] !== COLON) return undefined
  i = skipBlanks(line, i + 1, end)
  if (line[i] !== OPEN_BRACE) return undefined
  // The line's own braces are its first level and its first container.
  i = scanJsonValue(line, i, end, MAX_LINE_DEPTH - 1, MAX_LINE_CONTAINERS - 1)
  if (i === -1) return undefined
  i = skipBlanks(line, i, end)
  if (line[i] !== CLOSE_BRACE || skipBlanks(line, i + 1, end) !== end) return undefined
  // Invalid UTF-8 is stored as U+FFFD by the slow path, which decodes.
  if (!isUtf8(line)) return undefined
  return line.subarray(keyStart, i + 1)
}

/** Spaces and tabs: the JSON blanks a line can hold, less the carriage return (a line break to some readers). */
function skipBlanks(bytes: Buffer, i: number, end: number): number {
  while (i < end) {
    const c = bytes[i]
    if (c !== SPACE && c !== TAB) break
    i++
  }

  return i
}

/**
 * Checks that a JSON value (RFC 8259, as JSON.parse reads it) starts at `start`: the index after it, or
 * -1. Hand-written because the JSON libraries at hand parse into objects, which is the cost this fast
 * path exists to avoid (about 2.4x on event lines); the tests hold it to JSON.parse's verdict on every
 * one-byte change of an event line. Containers are tracked on an explicit stack, so deep nesting costs memory, not the call stack.
 * Blanks are spaces and tabs only (see skipBlanks); bytes from 0x80 up are allowed in strings only.
 * A value nested deeper than `maxDepth` levels, or holding more than `maxContainers` arrays and objects
 * (itself included), is refused as the slow path's bounds refuse it (limits.ts), counted the same way.
 */
export function scanJsonValue(bytes: Buffer, start: number, end: number, maxDepth = MAX_LINE_DEPTH, maxContainers = MAX_LINE_CONTAINERS): number {
  // the closing bracket each open container waits for, innermost last
  const open: number[] = []
  let containers = 0
  let i = start
  for (;;) {
    // A value.
    i = skipBlanks(bytes, i, end)
    const c = bytes[i]
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (open.length >= maxDepth || ++containers > maxContainers) return -1
      const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET
      i = skipBlanks(bytes, i + 1, end)
      if (bytes[i] === close) {
        i++
      } else {
        open.push(close)
        if (close === CLOSE_BRACE && (i = scanKey(bytes, i, end)) === -1) return -1
        continue
      }
    } else if (c === QUOTE) {
      if ((i = scanString(bytes, i, end)) === -1) return -1
    } else if ((i = scanLiteral(bytes, i, end)) === -1) {
      return -1
    }

    // What follows a value: closing brackets, then a comma (and a key in an object), or the end.
    for (;;) {
      const depth = open.length
      if (depth === 0) return i
      i = skipBlanks(bytes, i, end)
      const next = bytes[i]
      const close = open[depth - 1]
      if (next === COMMA) {
        if (close === CLOSE_BRACKET) i++
        else if ((i = scanKey(bytes, skipBlanks(bytes, i + 1, end), end)) === -1) return -1
        break
      }

      if (next !== close) return -1
      open.pop()
      i++
    }
  }
}

/** A string and its colon: the index after the colon, or -1. */
function scanKey(bytes: Buffer, i: number, end: number): number {
  if (bytes[i] !== QUOTE || (i = scanString(bytes, i, end)) === -1) return -1
  i = skipBlanks(bytes, i, end)
  return bytes[i] === COLON ? i + 1 : -1
}

/** Per byte: 1 for a hex digit; 2 for what may follow a backslash besides u (" \\ / b f n r t). */
const ESCAPE_TABLE = new Uint8Array(256)
for (const c of '0123456789abcdefABCDEF') ESCAPE_TABLE[c.charCodeAt(0)] |= 1
for (const c of '"\\/bfnrt') ESCAPE_TABLE[c.charCodeAt(0)] |= 2

/** A string starting at its opening quote: the index after its closing quote, or -1. */
function scanString(bytes: Buffer, i: number, end: number): number {
  i++
  while (i < end) {
    const c = bytes[i]
    if (c === QUOTE) return i + 1
    if (c === BACKSLASH) {
      const escape = bytes[i + 1]
      if (escape === 0x75) {
        // \uXXXX
        if (i + 6 > end || !(ESCAPE_TABLE[bytes[i + 2]] & ESCAPE_TABLE[bytes[i + 3]] & ESCAPE_TABLE[bytes[i + 4]] & ESCAPE_TABLE[bytes[i + 5]] & 1)) return -1
        i += 6
      } else {
        if (i + 2 > end || !(ESCAPE_TABLE[escape] & 2)) return -1
        i += 2
      }
    } else if (c < SPACE) {
      return -1
    } else {
      i++
    }
  }

  return -1
}

/** A number, true, false or null: the index after it, or -1. */
function scanLiteral(bytes: Buffer, i: number, end: number): number {
  switch (bytes[i]) {
    case 0x74: {
      // true
      return i + 4 <= end && bytes[i + 1] === 0x72 && bytes[i + 2] === 0x75 && bytes[i + 3] === 0x65 ? i + 4 : -1
    }

    case 0x66: {
      // false
      return i + 5 <= end && bytes[i + 1] === 0x61 && bytes[i + 2] === 0x6c && bytes[i + 3] === 0x73 && bytes[i + 4] === 0x65 ? i + 5 : -1
    }

    case 0x6e: {
      // null
      return i + 4 <= end && bytes[i + 1] === 0x75 && bytes[i + 2] === 0x6c && bytes[i + 3] === 0x6c ? i + 4 : -1
    }

    default: {
      return scanNumber(bytes, i, end)
    }
  }
}

/** -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? : the index after it, or -1. */
function scanNumber(bytes: Buffer, i: number, end: number): number {
  if (bytes[i] === 0x2d) i++
  if (i < end && bytes[i] === 0x30) i++
  else if ((i = scanDigits(bytes, i, end)) === -1) return -1
  if (i < end && bytes[i] === 0x2e && (i = scanDigits(bytes, i + 1, end)) === -1) return -1
  if (i < end && (bytes[i] === 0x65 || bytes[i] === 0x45)) {
    i++
    if (i < end && (bytes[i] === 0x2b || bytes[i] === 0x2d)) i++
    if ((i = scanDigits(bytes, i, end)) === -1) return -1
  }

  return i
}

/** One or more digits: the index after them, or -1. */
function scanDigits(bytes: Buffer, i: number, end: number): number {
  const first = i
  while (i < end && bytes[i] >= 0x30 && bytes[i] <= 0x39) i++
  return i === first ? -1 : i
}

/** The first quoted string of a line (single or double quotes), which names its type. */
function identifyType(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '"' || c === "'") {
      const end = text.indexOf(c, i + 1)
      return end === -1 ? undefined : text.slice(i + 1, end)
    }
  }

  return undefined
}

function parseLine(text: string): string | unknown {
  try {
    const value: unknown = JSON.parse(text)
    return isObject(value) ? value : `data read error: expected a JSON object, got ${Array.isArray(value) ? 'an array' : typeof value}`
  } catch (error) {
    return `data read error: ${(error as Error).message}`
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The checks of the Go server's generated metadata validation that matter here, with its messages. */
function metadataProblem(metadata: unknown): string | undefined {
  if (!isObject(metadata) || Object.values(metadata).every((value) => value === null)) return "'metadata' required"
  const {service} = metadata
  if (!isObject(service)) return "metadata: 'service' required"
  const {agent} = service
  if (!isObject(agent)) return "metadata: service: 'agent' required"
  if (typeof agent.name !== 'string') return "metadata: service: agent: 'name' required"
  if (agent.name.length === 0) return "metadata: service: agent: 'name': validation rule 'minLength(1)' violated"
  if (typeof agent.version !== 'string') return "metadata: service: agent: 'version' required"
  if (typeof service.name !== 'string') return "metadata: service: 'name' required"
  if (!SERVICE_NAME_PATTERN.test(service.name)) return "metadata: service: 'name': validation rule 'pattern(patternAlphaNumericExt)' violated"
  return undefined
}

/** Agent and service names an event is sent for: the event's own service context overrides the metadata's. */
function effectiveNames(base: {agent: string; service: string}, event: Record<string, unknown>): [string, string] {
  const context = isObject(event.context) && isObject(event.context.service) ? event.context.service : isObject(event.service) ? event.service : {}
  const agent = isObject(context.agent) && typeof context.agent.name === 'string' ? context.agent.name : base.agent
  const service = typeof context.name === 'string' ? context.name : base.service
  return [agent, service]
}

/**
 * Splits a byte stream into lines of at most `max` bytes. A longer line is handed over once, cut at
 * `max` bytes and flagged, and the rest of it is dropped as it arrives, so memory stays bounded. The
 * part of a line held across chunks is reserved in `memory` first, when given: when it is refused,
 * push() returns false with `refused` set.
 */
export class LineSplitter {
  /** After push() returned false: the part of its chunk not read yet (to push later to read on). */
  rest: Buffer = EMPTY
  /** set when push() stopped because `memory` refused to hold the start of a line */
  refused = false
  private pieces: Buffer[] = []
  private length = 0
  /** bytes of `pieces` reserved in `memory` */
  private held = 0
  private skipping = false

  constructor(
    private readonly max: number,
    private readonly onLine: (line: Buffer, oversized: boolean, atEnd: boolean) => boolean,
    private readonly memory?: MemoryAccount,
  ) {}

  /** False once onLine asked to stop, or memory was refused. */
  push(chunk: Buffer): boolean {
    let start = 0
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start)
      const end = newline === -1 ? chunk.length : newline
      // The common case, a whole line inside the chunk and nothing pending: handed over as a view.
      if (newline !== -1 && this.length === 0 && !this.skipping && end - start <= this.max) {
        if (!this.onLine(chunk.subarray(start, end), false, false)) return this.stop(chunk, newline + 1)
        start = newline + 1
        continue
      }

      if (!this.skipping && end > start) {
        const piece = chunk.subarray(start, end)
        if (this.length + piece.length > this.max) {
          const cut = Buffer.concat([...this.pieces, piece.subarray(0, this.max - this.length)])
          this.reset()
          this.skipping = true
          if (!this.onLine(cut, true, false)) return this.stop(chunk, end)
        } else {
          // A piece held past this chunk is counted; the end of a line is handed over at once.
          if (newline === -1 && this.memory) {
            if (!this.memory.reserve(piece.length)) {
              this.refused = true
              return this.stop(chunk, start)
            }

            this.held += piece.length
          }

          this.pieces.push(piece)
          this.length += piece.length
        }
      }

      if (newline === -1) break
      if (this.skipping) {
        this.skipping = false
      } else {
        const line = this.take()
        if (!this.onLine(line, false, false)) return this.stop(chunk, newline + 1)
      }

      start = newline + 1
    }

    return true
  }

  /** The last line when the body did not end with a newline. */
  end(): void {
    if (!this.skipping && this.length > 0) this.onLine(this.take(), false, true)
  }

  private stop(chunk: Buffer, next: number): false {
    this.rest = chunk.subarray(next)
    return false
  }

  private take(): Buffer {
    const line = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.length)
    this.reset()
    return line
  }

  private reset(): void {
    if (this.pieces.length > 0) this.pieces = []
    this.length = 0
    if (this.held > 0) {
      this.memory!.release(this.held)
      this.held = 0
    }
  }
}

type Codec = 'gzip' | 'plain' | 'zlib'

/**
 * A body declared at most this long is read whole, then decompressed in one synchronous call of at
 * most {@link WHOLE_BODY_DECODED_MAX_BYTES} output: a stream decompresses on the thread pool, and its
 * hand-offs (several per request) cost more than decompressing a small body on the spot. A body that
 * does not decompress that way (corrupt, truncated, larger) is read as a stream after all, which
 * decides what is accepted and what is reported, so both ways give the same result.
 */
export const WHOLE_BODY_MAX_BYTES = 64 * 1024
/** Bounds the time (a few ms) and memory one whole-body decompression may take; 64 times the body. */
export const WHOLE_BODY_DECODED_MAX_BYTES = 64 * WHOLE_BODY_MAX_BYTES
/** A body read whole is split into lines this many decoded bytes at a time, one turn of the event loop each. */
export const WHOLE_BODY_SLICE_BYTES = 64 * 1024
/**
 * What a request may write in a turn of the event loop even when the output is congested: the first
 * request of a turn may use all of the output's budget, and without this share the others would wait
 * turn after turn behind one that keeps using it. An agent's usual request (tens of KiB) takes one turn.
 */
export const FAIR_SHARE_BYTES = 256 * 1024

/** The body decompressed, or undefined when it does not decompress whole within the bound. */
function decodeWhole(codec: Exclude<Codec, 'plain'>, data: Buffer): Buffer | undefined {
  const options = {chunkSize: WHOLE_BODY_MAX_BYTES, maxOutputLength: WHOLE_BODY_DECODED_MAX_BYTES}
  try {
    return codec === 'gzip' ? gunzipSync(data, options) : inflateSync(data, options)
  } catch {
    return undefined
  }
}

/**
 * Memory a zlib stream holds while it decodes, reserved for it: its 32 KiB window, its state (7 KiB) and
 * its 16 KiB output buffer. (An agent's streamed request costs 44 KiB in all, connection included: the
 * memory benchmark.) A 124 MiB budget holds about 1,900 such requests at once.
 */
export const DECODER_BYTES = 64 * 1024
/** The 500 message of an error that is not the client's; the server logs the error itself. */
export const INTERNAL_ERROR = 'internal error: the request could not be read'

class DecodeError extends Error {}
class ClientGone extends Error {}
/** The memory budget refused what the request needed to hold. */
class OverBudget extends Error {}
/** A flush of the output failed: the events queued may be lost. */
class OutputFailure extends Error {
  constructor(readonly failure: Error) {
    super(failure.message)
  }
}

/**
 * Reads the body of an intake request into the output. Never rejects for bad input: see the result.
 *
 * One 'data' listener on the request for the whole body: the first two bytes pick the codec (unless
 * Content-Encoding named it), compressed bytes go through a zlib stream, and decoded bytes go to the
 * line splitter. The request is paused while the decompressor or the output is behind.
 *
 * No request holds the event loop for long, however much output its lines make (each repeats the
 * metadata): the splitter stops after the line that made the output `congested`, and reading goes on
 * (the rest of that chunk first) after a flush() and a turn of the event loop, its source paused meanwhile.
 *
 * What the request holds (a whole body and its decoded bytes, a zlib stream, the start of a line, the
 * metadata) is reserved in `options.memory` first: a whole body that does not fit is read as a stream,
 * and anything else that does not fit ends the request with 503. Every listener's body is guarded: an
 * unexpected error ends this request with a 500 (and is reported once), never the process.
 */
export async function ingest(request: Readable, contentEncoding: string | undefined, options: IntakeOptions): Promise<IntakeResult> {
  const reader = new EventReader(options)
  const {connection, memory, output} = options
  /** output.failures when this request read its first line: a write failing later may have held its lines */
  let failuresBefore: number | undefined
  /** reader.writtenBytes at the start of this turn's reading */
  let turnStart = 0
  /** The output is congested and this request had its fair share of this turn: stop reading until the next. */
  const overShare = () => output.congested && reader.writtenBytes - turnStart >= FAIR_SHARE_BYTES
  const splitter = new LineSplitter(
    Math.max(1, options.maxEventSize),
    (line, oversized, atEnd) => {
      failuresBefore ??= output.failures
      return reader.line(line, oversized, atEnd) && !overShare()
    },
    memory,
  )
  let codec: Codec | undefined = contentEncoding === 'gzip' ? 'gzip' : contentEncoding === 'deflate' ? 'zlib' : undefined
  // Node's HTTP parser delivers exactly Content-Length bytes, so holding the body is bounded.
  const whole = options.contentLength !== undefined && options.contentLength <= WHOLE_BODY_MAX_BYTES
  let head: Buffer[] = []
  let headLength = 0
  /** bytes of `head` reserved in `memory` */
  let headHeld = 0
  let started = false
  let decoder: Transform | undefined
  let produced = false
  let requestEnded = false
  /** chunks that arrived while waiting for the output, to split in order; undefined when not waiting */
  let waiting: Buffer[] | undefined
  /** set when the decoded bytes ended while waiting: a paused stream with nothing buffered still ends */
  let endAfterWaiting = false
  let finished = false
  /** set once a failed flush ended the request: its error is listed, and not again for the same failure */
  let outputFailed = false

  await new Promise<void>((resolve) => {
    const finish = (error?: unknown) => {
      if (finished) return
      finished = true
      try {
        request.off('data', onData)
        request.off('end', onEnd)
        request.off('error', onGone)
        request.off('close', onGone)
        connection?.off('close', onAbort)
        if (decoder) {
          decoder.removeAllListeners()
          decoder.on('error', () => {}) // a late zlib error after destroy has nobody to tell
          decoder.destroy()
        }

        if (error instanceof DecodeError) reader.stopQuietly(400, `data decoding error: ${error.message}`)
        else if (error instanceof ClientGone) reader.stopQuietly(400, 'the client closed the request before its end')
        else if (error instanceof OverBudget) reader.stopQuietly(503, QUEUE_FULL)
        else if (error instanceof OutputFailure) {
          outputFailed = true
          reader.stopQuietly(500, outputError(error.failure))
        } else if (error !== undefined) {
          reader.stopQuietly(500, INTERNAL_ERROR)
          options.onUnexpectedError?.(error instanceof Error ? error : new Error(String(error)))
        }
      } finally {
        resolve()
      }
    }

    /** A listener's body: whatever it throws ends this request, never the process. */
    const guard =
      <A extends unknown[]>(body: (...args: A) => void) =>
      (...args: A): void => {
        try {
          body(...args)
        } catch (error) {
          finish(error)
        }
      }

    const endOfLines = () => {
      if (waiting) {
        endAfterWaiting = true
        return
      }

      if (!reader.done) splitter.end()
      finish()
    }

    /**
     * Decoded bytes into lines: undefined when all are read and the output can take more; else what is
     * left of the chunk (maybe nothing), to split once the output caught up. Ends the request when the
     * reader stopped it, or the memory budget refused the start of a line.
     */
    const split = (chunk: Buffer): Buffer | undefined => {
      if (splitter.push(chunk)) return overShare() ? EMPTY : undefined
      if (splitter.refused) finish(new OverBudget())
      else if (!reader.done) return splitter.rest
      else finish()
      return undefined
    }

    /** Splits `chunks` in order, starting with a rest; each time the output is congested, flushes it and waits for the next turn. */
    const catchUp = async (chunks: Buffer[]): Promise<void> => {
      let rest = chunks.shift()
      while (rest !== undefined) {
        // eslint-disable-next-line no-await-in-loop -- one wait after another
        await output.flush().catch((error: Error) => {
          throw new OutputFailure(error)
        })
        await nextTurn() // eslint-disable-line no-await-in-loop
        if (finished) return
        turnStart = reader.writtenBytes
        rest = split(rest)
        while (rest === undefined && !finished && chunks.length > 0) rest = split(chunks.shift()!)
        if (finished) return
      }
    }

    /** Decoded bytes into lines; while the output is congested, whoever feeds us is paused. */
    const consume = (chunk: Buffer) => {
      if (waiting) return void waiting.push(chunk)
      const rest = split(chunk)
      if (rest === undefined || finished) return
      const source = decoder ?? request
      source.pause()
      waiting = [rest]
      catchUp(waiting).then(
        guard(() => {
          waiting = undefined
          if (finished) return
          if (endAfterWaiting) endOfLines()
          else source.resume()
        }),
        finish,
      )
    }

    /** A body read whole and decoded: split a slice a turn, then its end. */
    const consumeWhole = async (data: Buffer): Promise<void> => {
      for (let at = 0; at < data.length; at += WHOLE_BODY_SLICE_BYTES) {
        if (at > 0) await nextTurn() // eslint-disable-line no-await-in-loop -- one slice a turn
        if (finished) return
        turnStart = reader.writtenBytes
        const rest = split(data.subarray(at, at + WHOLE_BODY_SLICE_BYTES))
        if (rest !== undefined) await catchUp([rest]) // eslint-disable-line no-await-in-loop
        if (finished) return
      }

      endOfLines()
    }

    /** The compressed bytes of the head are consumed at once or handed to a decoder (whose reservation covers them). */
    const releaseHead = () => {
      if (headHeld === 0) return
      memory!.release(headHeld)
      headHeld = 0
    }

    /** A whole body decompressed, if it fits the memory budget (reserved at its bound, then at its size) and the bound. */
    const decodeWithinBudget = (wholeCodec: Exclude<Codec, 'plain'>, data: Buffer): Buffer | undefined => {
      if (memory && !memory.reserve(WHOLE_BODY_DECODED_MAX_BYTES)) return undefined
      const decoded = decodeWhole(wholeCodec, data)
      memory?.release(WHOLE_BODY_DECODED_MAX_BYTES - (decoded?.length ?? 0))
      if (decoded) releaseHead()
      return decoded
    }

    const start = (data: Buffer) => {
      started = true
      releaseHead()
      if (codec === 'plain') return consume(data)
      if (memory && !memory.reserve(DECODER_BYTES)) return finish(new OverBudget())
      decoder = codec === 'gzip' ? createGunzip() : createInflate()
      decoder.on(
        'data',
        guard((chunk: Buffer) => {
          produced = true
          consume(chunk)
        }),
      )
      decoder.once('end', guard(endOfLines))
      decoder.on(
        'error',
        guard((error: Error) => {
          const header = !produced && error.message === 'incorrect header check'
          finish(new DecodeError(header ? `${codec}: invalid header` : error.message))
        }),
      )
      decoder.on(
        'drain',
        guard(() => request.resume()),
      )
      feed(data)
    }

    const feed = (data: Buffer) => {
      if (!decoder!.write(data)) request.pause()
    }

    /** The bytes held before the codec was known, as one buffer. */
    const takeHead = (): Buffer => {
      const data = head.length === 1 ? head[0] : Buffer.concat(head, headLength)
      head = []
      return data
    }

    /** A chunk of a body read whole is held until its end: reserved first, or else the body is streamed. */
    const holdWhole = (bytes: number): boolean => {
      if (memory && !memory.reserve(bytes)) return false
      if (memory) headHeld += bytes
      return true
    }

    const onData = guard((chunk: Buffer) => {
      if (started) return decoder ? feed(chunk) : consume(chunk)
      head.push(chunk)
      headLength += chunk.length
      if (whole && holdWhole(chunk.length)) return
      if (codec === undefined && headLength < 2) return
      const data = takeHead()
      codec ??= sniff(data)
      start(data)
    })

    const onEnd = guard(() => {
      requestEnded = true
      if (!started && headLength > 0) {
        const data = takeHead()
        // A byte: no compressed stream is that short, and nothing to sniff.
        codec = headLength < 2 ? 'plain' : (codec ?? sniff(data))
        const decoded = codec === 'plain' ? data : decodeWithinBudget(codec, data)
        if (decoded) {
          started = true
          consumeWhole(decoded).then(undefined, finish)
          return
        }

        start(data)
        if (finished) return
      }

      if (decoder) decoder.end()
      else endOfLines()
    })

    const onGone = guard(() => {
      if (!requestEnded) finish(new ClientGone())
    })

    // The connection is gone: nobody waits for the answer, so reading ends, also after the body's end
    // (a decompressor could otherwise go on for minutes, and shutdown wait for it).
    const onAbort = () => finish(new ClientGone())

    request.on('data', onData)
    request.once('end', onEnd)
    request.once('error', onGone)
    request.once('close', onGone)
    connection?.once('close', onAbort)
    request.resume()
  })

  try {
    await output.flush()
    if (failuresBefore !== undefined && output.failures !== failuresBefore && reader.acceptedCount > 0) throw options.output.lastFailure ?? new Error('a write failed')
  } catch (error) {
    if (!outputFailed) reader.stopQuietly(500, outputError(error as Error))
  }

  return reader.result()
}

function outputError(error: Error): string {
  return `internal error: cannot write to the output: ${(error as NodeJS.ErrnoException).code ?? error.message}`
}

/** gzip's magic, else zlib's compression-method nibble, else plain (Go's sniffing, quirks included). */
function sniff(head: Buffer): Codec {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip'
  if ((head[0] & 0x0f) === 8) return 'zlib'
  return 'plain'
}
