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
 *   line, a denied or rate-limited anonymous client, or a broken compressed stream end the request.
 *
 * Each accepted event goes to the output as one line `{"metadata": {...}, "<type>": {...}}`; the result
 * is computed only after the output holds every accepted event.
 */
import type {Readable, Transform} from 'node:stream'
import {createGunzip, createInflate} from 'node:zlib'

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

/** Where accepted events go (a FileOutput). */
export interface EventSink {
  write(line: string): void
  flush(): Promise<void>
  readonly congested: boolean
}

export interface IntakeOptions {
  maxEventSize: number
  output: EventSink
  /** set for anonymous clients: who they may send data for, and their rate limiter */
  anonymous?: {allowAgent: readonly string[]; allowService: readonly string[]; limiter: TokenBucket}
}

/** The HTTP-level checks before the body is read (Go's validateRequest), as a result, or undefined when fine. */
export function checkIntakeRequest(method: string | undefined, contentType: string | undefined): IntakeResult | undefined {
  if (method !== 'POST') return failure(400, 'only POST requests are supported')
  if (contentType && !contentType.includes('application/x-ndjson')) return failure(400, `invalid content type: '${contentType}'`)
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
  private metadataText: string | undefined
  private metadata: Record<string, unknown> | undefined
  private accepted = 0
  private invalid = 0
  private tooLarge = 0
  private status = 202
  private readonly errors: IntakeError[] = []
  private stopped = false

  constructor(private readonly options: IntakeOptions) {}

  get done(): boolean {
    return this.stopped
  }

  /** One line without its newline; `oversized` when it was cut at max_event_size; `atEnd` when no newline followed. */
  line(bytes: Buffer, oversized: boolean, atEnd: boolean): boolean {
    try {
      if (this.metadataText === undefined) this.readMetadata(bytes, oversized, atEnd)
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
    const text = bytes.toString('utf8')
    if (oversized) this.stop(400, EVENT_TOO_LARGE, text)
    if (atEnd) this.stop(400, 'EOF while reading metadata', text)
    if (identifyType(text) !== 'metadata') this.stop(400, METADATA_REQUIRED, text)
    const parsed = parseLine(text)
    if (typeof parsed === 'string') this.stop(400, parsed, text)
    const problem = metadataProblem((parsed as Record<string, unknown>).metadata)
    if (problem) this.stop(400, `validation error: ${problem}`, text)
    this.metadata = (parsed as {metadata: Record<string, unknown>}).metadata
    this.metadataText = JSON.stringify(this.metadata)
  }

  private readEvent(bytes: Buffer, oversized: boolean): void {
    if (bytes.length === 0 && !oversized) return
    const text = bytes.toString('utf8')
    if (oversized) return this.reject(EVENT_TOO_LARGE, text, true)
    const type = identifyType(text)
    if (type === undefined || !EVENT_TYPES.has(type)) return this.reject(`did not recognize object type: ${JSON.stringify(type ?? '')}`, text)
    const parsed = parseLine(text)
    if (typeof parsed === 'string') return this.reject(parsed, text)
    const event = (parsed as Record<string, unknown>)[type]
    if (!isObject(event)) return this.reject(`validation error: '${type}' required`, text)
    const {anonymous} = this.options
    if (anonymous) {
      const [agent, service] = effectiveNames(this.metadata!, event)
      const denied = anonymousIngestDenied(anonymous.allowAgent, anonymous.allowService, agent, service)
      if (denied) this.stop(403, denied)
      if (!anonymous.limiter.allow(1)) this.stop(429, RATE_LIMIT_EXCEEDED)
    }

    this.options.output.write(`{"metadata":${this.metadataText},${JSON.stringify(type)}:${JSON.stringify(event)}}`)
    this.accepted++
  }

  private reject(message: string, document: string, tooLarge = false): void {
    if (tooLarge) this.tooLarge++
    else this.invalid++
    this.status = Math.max(this.status, 400)
    if (this.errors.length < MAX_LISTED_ERRORS) this.errors.push({message, document})
  }
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

/** Agent and service names an event is sent for: the event's own service context overrides the metadata. */
function effectiveNames(metadata: Record<string, unknown>, event: Record<string, unknown>): [string, string] {
  const base = metadata.service as {agent: {name: string}; name: string}
  const context = isObject(event.context) && isObject(event.context.service) ? event.context.service : isObject(event.service) ? event.service : {}
  const agent = isObject(context.agent) && typeof context.agent.name === 'string' ? context.agent.name : base.agent.name
  const service = typeof context.name === 'string' ? context.name : base.name
  return [agent, service]
}

/**
 * Splits a byte stream into lines of at most `max` bytes. A longer line is handed over once, cut at
 * `max` bytes and flagged, and the rest of it is dropped as it arrives, so memory stays bounded.
 */
class LineSplitter {
  private pieces: Buffer[] = []
  private length = 0
  private skipping = false

  constructor(
    private readonly max: number,
    private readonly onLine: (line: Buffer, oversized: boolean, atEnd: boolean) => boolean,
  ) {}

  /** False once onLine asked to stop. */
  push(chunk: Buffer): boolean {
    let start = 0
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start)
      const end = newline === -1 ? chunk.length : newline
      if (!this.skipping && end > start) {
        const piece = chunk.subarray(start, end)
        if (this.length + piece.length > this.max) {
          const cut = Buffer.concat([...this.pieces, piece.subarray(0, this.max - this.length)])
          this.reset()
          this.skipping = true
          if (!this.onLine(cut, true, false)) return false
        } else {
          this.pieces.push(piece)
          this.length += piece.length
        }
      }

      if (newline === -1) break
      if (this.skipping) {
        this.skipping = false
      } else {
        const line = this.take()
        if (!this.onLine(line, false, false)) return false
      }

      start = newline + 1
    }

    return true
  }

  /** The last line when the body did not end with a newline. */
  end(): void {
    if (!this.skipping && this.length > 0) this.onLine(this.take(), false, true)
  }

  private take(): Buffer {
    const line = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.length)
    this.reset()
    return line
  }

  private reset(): void {
    this.pieces = []
    this.length = 0
  }
}

type Codec = 'gzip' | 'plain' | 'zlib'

class DecodeError extends Error {}
class ClientGone extends Error {}

/**
 * Reads the body of an intake request into the output. Never rejects for bad input: see the result.
 *
 * One 'data' listener on the request for the whole body: the first two bytes pick the codec (unless
 * Content-Encoding named it), compressed bytes go through a zlib stream, and decoded bytes go to the
 * line splitter. The request is paused while the decompressor or the output is behind.
 */
export async function ingest(request: Readable, contentEncoding: string | undefined, options: IntakeOptions): Promise<IntakeResult> {
  const reader = new EventReader(options)
  const splitter = new LineSplitter(Math.max(1, options.maxEventSize), (line, oversized, atEnd) => reader.line(line, oversized, atEnd))
  let codec: Codec | undefined = contentEncoding === 'gzip' ? 'gzip' : contentEncoding === 'deflate' ? 'zlib' : undefined
  let head: Buffer[] = []
  let headLength = 0
  let started = false
  let decoder: Transform | undefined
  let produced = false
  let requestEnded = false
  let waitingForOutput = false
  let finished = false

  await new Promise<void>((resolve) => {
    const finish = (error?: Error) => {
      if (finished) return
      finished = true
      request.off('data', onData)
      request.off('end', onEnd)
      request.off('error', onGone)
      request.off('close', onGone)
      if (decoder) {
        decoder.removeAllListeners()
        decoder.on('error', () => {}) // a late zlib error after destroy has nobody to tell
        decoder.destroy()
      }

      if (error instanceof DecodeError) reader.stopQuietly(400, `data decoding error: ${error.message}`)
      else if (error instanceof ClientGone) reader.stopQuietly(400, 'the client closed the request before its end')
      else if (error) reader.stopQuietly(500, `internal error: cannot write to the output: ${(error as NodeJS.ErrnoException).code ?? error.message}`)
      resolve()
    }

    const endOfLines = () => {
      if (!reader.done) splitter.end()
      finish()
    }

    /** Decoded bytes into lines; waits for a congested output by pausing whoever feeds us. */
    const consume = (chunk: Buffer) => {
      if (!splitter.push(chunk)) return finish()
      if (!options.output.congested || waitingForOutput) return
      waitingForOutput = true
      const source = decoder ?? request
      source.pause()
      options.output.flush().then(
        () => {
          waitingForOutput = false
          if (!finished) source.resume()
        },
        (error: Error) => finish(error),
      )
    }

    const start = (data: Buffer) => {
      started = true
      if (codec === 'plain') return consume(data)
      decoder = codec === 'gzip' ? createGunzip() : createInflate()
      decoder.on('data', (chunk: Buffer) => {
        produced = true
        consume(chunk)
      })
      decoder.once('end', endOfLines)
      decoder.on('error', (error: Error) => {
        const header = !produced && error.message === 'incorrect header check'
        finish(new DecodeError(header ? `${codec}: invalid header` : error.message))
      })
      decoder.on('drain', () => request.resume())
      feed(data)
    }

    const feed = (data: Buffer) => {
      if (!decoder!.write(data)) request.pause()
    }

    const onData = (chunk: Buffer) => {
      if (started) return decoder ? feed(chunk) : consume(chunk)
      head.push(chunk)
      headLength += chunk.length
      if (codec === undefined && headLength < 2) return
      const data = head.length === 1 ? head[0] : Buffer.concat(head, headLength)
      head = []
      codec ??= sniff(data)
      start(data)
    }

    const onEnd = () => {
      requestEnded = true
      if (!started && headLength > 0) {
        // A byte: no compressed stream is that short, and nothing to sniff.
        codec = 'plain'
        start(Buffer.concat(head, headLength))
      }

      if (decoder) decoder.end()
      else endOfLines()
    }

    const onGone = () => {
      if (!requestEnded) finish(new ClientGone())
    }

    request.on('data', onData)
    request.once('end', onEnd)
    request.once('error', onGone)
    request.once('close', onGone)
    request.resume()
  })

  try {
    await options.output.flush()
  } catch (error) {
    reader.stopQuietly(500, `internal error: cannot write to the output: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }

  return reader.result()
}

/** gzip's magic, else zlib's compression-method nibble, else plain (Go's sniffing, quirks included). */
function sniff(head: Buffer): Codec {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip'
  if ((head[0] & 0x0f) === 8) return 'zlib'
  return 'plain'
}
