/**
 * Event handling of the intake v2 protocol, one line at a time (apm-data input/elasticapm): the metadata
 * line first, validated as Elastic's APM Server validates it, then one event a line, identified by its
 * first quoted key; a bad line is reported and the rest still read, and anonymous clients are held to
 * their allowed agents and services, their rate limit and their output allowance. Each accepted event
 * goes to the output as one line `{"metadata": {...}, "<type>": {...}}`: through the fast path
 * (./json-scan.ts) as its own bytes when it can, else parsed and re-serialised.
 */
import {jsonDepthWithin} from '../../core/format/json-guard.js'
import {anonymousIngestDenied, RATE_LIMIT_EXCEEDED} from '../anonymous.js'
import {
  ANONYMOUS_DECODED_RATE_EXCEEDED,
  ANONYMOUS_METADATA_MAX_BYTES,
  ANONYMOUS_METADATA_TOO_LARGE,
  ANONYMOUS_OUTPUT_RATE_EXCEEDED,
  clip,
  documentOf,
  LINE_TOO_COMPLEX,
  MAX_LINE_CONTAINERS,
  MAX_LINE_DEPTH,
  MAX_REJECTED_LINES,
  OUTPUT_LIMIT_EXCEEDED,
  QUEUE_FULL,
  REQUEST_DECODED_MAX_BYTES,
  REQUEST_DECODED_TOO_LARGE,
  TOO_MANY_REJECTED_LINES,
} from '../limits.js'
import {eventMembers} from './json-scan.js'
import {EVENT_TOO_LARGE, EVENT_TYPES, IntakeError, IntakeResult, MAX_LISTED_ERRORS} from './model.js'
import type {IntakeOptions} from './v2.js'

const METADATA_REQUIRED = '"metadata" or "m" required'
const SERVICE_NAME_PATTERN = /^[a-zA-Z0-9 _-]+$/

class StreamStop extends Error {}

/**
 * The line-level state machine: metadata first, then events. `line()` returns false once the request
 * must end; `result()` gives the outcome.
 */
export class EventReader {
  /** `{"metadata":{...},` as bytes: the head of every output line of this request; set once the metadata is read */
  private metadataHead: Buffer | undefined
  /** the metadata's agent and service names, which an anonymous client's events are checked against */
  private names: {agent: string; service: string} | undefined
  private accepted = 0
  /** bytes given to the output so far */
  private written = 0
  /** what the output may hold against: the metadata line and every accepted event, each with its newline */
  private credit = 0
  /** decoded bytes of the body so far, every byte */
  private decodedBytes = 0
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

  /**
   * `bytes` more of the body, decoded, are about to be split into lines: false, the request ended, when
   * that passes the request's bound, or an anonymous client's allowance (../limits.ts).
   */
  decoded(bytes: number): boolean {
    this.decodedBytes += bytes
    try {
      if (this.decodedBytes > REQUEST_DECODED_MAX_BYTES) this.stop(400, REQUEST_DECODED_TOO_LARGE)
      if (this.options.anonymous?.decoded && !this.options.anonymous.decoded.allow(bytes)) this.stop(429, ANONYMOUS_DECODED_RATE_EXCEEDED)
    } catch (error) {
      if (!(error instanceof StreamStop)) throw error
    }

    return !this.stopped
  }

  /** One line without its newline; `oversized` when it was cut at max_event_size; `atEnd` when no newline followed. */
  line(bytes: Buffer, oversized: boolean, atEnd: boolean): boolean {
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
    this.credit += bytes.length + 1
    const service = (metadata as {service: {agent: {name: string}; name: string}}).service
    this.names = {agent: service.agent.name, service: service.name}
    this.options.onMetadata?.(this.names)
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
        this.spend(bytes.length + 1, head.length + members.length + 1)
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
    this.spend(bytes.length + 1, head.length + tail.length + 1)
    this.options.output.write([head, tail])
    this.accepted++
  }

  /**
   * Counts `bytes` of output about to be written for an event line of `lineBytes` (with its newline), or
   * ends the request when the request or its client may not write them.
   */
  private spend(lineBytes: number, bytes: number): void {
    const {anonymous, outputMultiple} = this.options
    if (outputMultiple !== undefined && this.written + bytes > outputMultiple * (this.credit + lineBytes)) this.stop(400, OUTPUT_LIMIT_EXCEEDED)
    if (anonymous?.output && !anonymous.output.allow(bytes)) this.stop(429, ANONYMOUS_OUTPUT_RATE_EXCEEDED)
    this.written += bytes
    this.credit += lineBytes
  }

  private reject(message: string, document: string, tooLarge = false): void {
    if (tooLarge) this.tooLarge++
    else this.invalid++
    this.status = Math.max(this.status, 400)
    if (this.errors.length < MAX_LISTED_ERRORS) this.errors.push({message, document})
    if (this.invalid + this.tooLarge > MAX_REJECTED_LINES) this.stop(400, TOO_MANY_REJECTED_LINES)
  }
}

/** The line is within MAX_LINE_DEPTH and MAX_LINE_CONTAINERS: checked before JSON.parse and JSON.stringify see it. */
function withinLineBounds(line: Buffer): boolean {
  return jsonDepthWithin(line, MAX_LINE_DEPTH, MAX_LINE_CONTAINERS)
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
