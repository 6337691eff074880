/**
 * The intake v2 reader (`POST /intake/v2/events`), as Elastic's APM Server reads it (apm-data
 * input/elasticapm and apm-server internal/beater/api/intake):
 *
 * - the body is ndjson, plain, gzip or deflate (zlib): Content-Encoding decides, else the first two
 *   bytes are sniffed; it is read as it arrives, since agents keep a request open for many seconds;
 * - lines are cut by ./line-splitter.ts, fed with back-pressure by ./line-feed.ts, and read by
 *   ./events.ts: the metadata first, then one event a line;
 * - a bad metadata line, a denied or rate-limited anonymous client, or a broken compressed stream end
 *   the request; every line is held to the bounds of ../limits.ts before it is parsed, and so is what it
 *   costs: a request's output against its own size, its memory against the server's budget (past it,
 *   `503 queue is full`), and the client text its errors echo.
 * - an output that cannot hold the events (full, or its store unavailable: an OutputFullError) is
 *   answered 503 `queue is full` too; any other failed publish is a 500.
 *
 * The result is computed only after the output holds every accepted event.
 */
import type {EventEmitter} from 'node:events'
import type {Readable, Transform} from 'node:stream'
import {createGunzip, createInflate, gunzipSync, inflateSync} from 'node:zlib'

import {clip, MemoryAccount, QUEUE_FULL} from '../limits.js'
import {EventSink, isOutputFull} from '../outputs/output.js'
import type {TokenBucket} from '../anonymous.js'
import {EventReader} from './events.js'
import {Ending, LineFeed, OutputFailure, OverBudget} from './line-feed.js'
import {failure, IntakeResult} from './model.js'

export interface IntakeOptions {
  maxEventSize: number
  output: EventSink
  /** the body's declared length (Content-Length), when it has one: see {@link WHOLE_BODY_MAX_BYTES} */
  contentLength?: number
  /**
   * set for anonymous clients: who they may send data for, their event rate limiter, and (when set) the
   * limiters of the bytes their events may write and of the bytes they may send decoded
   */
  anonymous?: {allowAgent: readonly string[]; allowService: readonly string[]; limiter: TokenBucket; output?: TokenBucket; decoded?: TokenBucket}
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
  /** told the service and agent names of the metadata once it is read */
  onMetadata?: (names: {agent: string; service: string}) => void
}

/** The HTTP-level checks before the body is read (Go's validateRequest), as a result, or undefined when fine. */
export function checkIntakeRequest(method: string | undefined, contentType: string | undefined): IntakeResult | undefined {
  if (method !== 'POST') return failure(400, 'only POST requests are supported')
  if (contentType && !contentType.includes('application/x-ndjson')) return failure(400, `invalid content type: '${clip(contentType)}'`)
  return undefined
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

/** The least zlib output buffer a gzip body's size hint may ask for: a wrong hint costs chunks, this bounds how many. */
const MIN_OUTPUT_CHUNK_BYTES = 16 * 1024

/**
 * zlib's output buffer for a whole body: gzip's trailer holds the decoded size (ISIZE, RFC 1952), so an
 * agent's body decodes into one buffer of its own size, one byte over (a full buffer makes zlib allocate
 * another before it sees the end), rather than 64 KiB. Why it matters (issue 17): V8 11 counts every
 * ArrayBuffer byte allocated since the last mark-compact as old-generation growth until a scavenge has
 * freed it, and after a mark-compact in a calm period it leaves that growth 8 MB; at 64 KiB a request,
 * the bytes of the ~160 requests between two scavenges passed it, and the server ran in phases of a
 * mark-compact every 50-250 ms. The hint is the client's, so it only sizes a buffer, within bounds: a
 * false one fails zlib's own length check, and a body of several gzip members gives its last member's
 * size, which costs more chunks, never a different result.
 */
function outputChunkSize(codec: Exclude<Codec, 'plain'>, data: Buffer): number {
  // A gzip member is at least its 10-byte header and its 8-byte trailer.
  if (codec !== 'gzip' || data.length < 18) return WHOLE_BODY_MAX_BYTES
  const decodedSize = data.readUInt32LE(data.length - 4)
  return Math.min(Math.max(decodedSize + 1, MIN_OUTPUT_CHUNK_BYTES), WHOLE_BODY_MAX_BYTES)
}

/** The body decompressed, or undefined when it does not decompress whole within the bound. */
function decodeWhole(codec: Exclude<Codec, 'plain'>, data: Buffer): Buffer | undefined {
  const options = {chunkSize: outputChunkSize(codec, data), maxOutputLength: WHOLE_BODY_DECODED_MAX_BYTES}
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
/**
 * Compressed bytes that arrive in small pieces (an HTTP chunk may hold one byte) are gathered into a
 * buffer of this size, written to the decompressor when full or at the end of the turn of the event
 * loop: each write is a hand-off to the thread pool and an object queued in the stream, so 1-byte chunks
 * written one by one cost ~200 times their size in memory, and a core. Within {@link DECODER_BYTES}.
 */
export const GATHER_BYTES = 8 * 1024
/** The 500 message of an error that is not the client's; the server logs the error itself. */
export const INTERNAL_ERROR = 'internal error: the request could not be read'

class DecodeError extends Error {}
class ClientGone extends Error {}

/**
 * Reads the body of an intake request into the output. Never rejects for bad input: see the result.
 * What the request holds (a whole body and its decoded bytes, a zlib stream, the start of a line, the
 * metadata) is reserved in `options.memory` first: a whole body that does not fit is read as a stream,
 * and anything else that does not fit ends the request with 503.
 */
export async function ingest(request: Readable, contentEncoding: string | undefined, options: IntakeOptions): Promise<IntakeResult> {
  const reader = new EventReader(options)
  const {output} = options
  const body = new BodyReader(request, contentEncoding, reader, options)
  await body.read()
  try {
    await output.flush()
    const before = body.lines.failuresBefore
    if (before !== undefined && output.failures !== before && reader.acceptedCount > 0) throw options.output.lastFailure ?? new Error('a write failed')
  } catch (error) {
    if (!body.outputFailed) stopForOutput(reader, error as Error)
  }

  return reader.result()
}

/**
 * One request body, from the request's 'data' events to decoded lines: one 'data' listener for the
 * whole body; the first two bytes pick the codec (unless Content-Encoding named it), compressed bytes go
 * through a zlib stream, and decoded bytes go to the line feed. The request is paused while the
 * decompressor or the output is behind. Every listener's body is guarded: an unexpected error ends this
 * request with a 500 (and is reported once), never the process.
 */
class BodyReader implements Ending {
  finished = false
  /** set once a failed flush ended the request: its error is listed, and not again for the same failure */
  outputFailed = false
  readonly lines: LineFeed
  private codec: Codec | undefined
  /** Node's HTTP parser delivers exactly Content-Length bytes, so holding the body is bounded. */
  private whole: boolean
  /**
   * the body read whole, copied as it arrives into one buffer of its declared length, reserved first (a
   * view of each chunk would keep a Buffer object, and the chunk's whole read buffer, per piece)
   */
  private wholeBody: Buffer | undefined
  /** the first chunks of a streamed body, until two bytes tell its codec */
  private head: Buffer[] = []
  private headLength = 0
  /** bytes of `wholeBody` reserved in `memory` */
  private headHeld = 0
  /** small compressed pieces gathered for the decompressor (see GATHER_BYTES), and their length */
  private gathered: Buffer | undefined
  private gatheredLength = 0
  private gatherScheduled = false
  private started = false
  private decoder: Transform | undefined
  private produced = false
  private requestEnded = false
  private resolve: () => void = () => {}

  constructor(
    private readonly request: Readable,
    contentEncoding: string | undefined,
    private readonly reader: EventReader,
    private readonly options: IntakeOptions,
  ) {
    this.codec = contentEncoding === 'gzip' ? 'gzip' : contentEncoding === 'deflate' ? 'zlib' : undefined
    this.whole = options.contentLength !== undefined && options.contentLength <= WHOLE_BODY_MAX_BYTES
    this.lines = new LineFeed(reader, options.output, options.maxEventSize, options.memory, this)
  }

  /** Resolves once reading ended: the body read, the request stopped, or the client gone. */
  read(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.resolve = resolve
      this.request.on('data', this.onData)
      this.request.once('end', this.onEnd)
      this.request.once('error', this.onGone)
      this.request.once('close', this.onGone)
      this.options.connection?.once('close', this.onAbort)
      this.request.resume()
    })
  }

  finish(error?: unknown): void {
    if (this.finished) return
    this.finished = true
    try {
      this.request.off('data', this.onData)
      this.request.off('end', this.onEnd)
      this.request.off('error', this.onGone)
      this.request.off('close', this.onGone)
      this.options.connection?.off('close', this.onAbort)
      this.gathered = undefined
      this.gatheredLength = 0
      if (this.decoder) {
        this.decoder.removeAllListeners()
        this.decoder.on('error', () => {}) // a late zlib error after destroy has nobody to tell
        this.decoder.destroy()
      }

      this.stopFor(error)
    } finally {
      this.resolve()
    }
  }

  guard<A extends unknown[]>(body: (...args: A) => void): (...args: A) => void {
    return (...args: A): void => {
      try {
        body(...args)
      } catch (error) {
        this.finish(error)
      }
    }
  }

  /** What ended the reading, as the request's last error. */
  private stopFor(error: unknown): void {
    const {reader} = this
    if (error instanceof DecodeError) reader.stopQuietly(400, `data decoding error: ${error.message}`)
    else if (error instanceof ClientGone) reader.stopQuietly(400, 'the client closed the request before its end')
    else if (error instanceof OverBudget) reader.stopQuietly(503, QUEUE_FULL)
    else if (error instanceof OutputFailure) {
      this.outputFailed = true
      stopForOutput(reader, error.failure)
    } else if (error !== undefined) {
      reader.stopQuietly(500, INTERNAL_ERROR)
      this.options.onUnexpectedError?.(error instanceof Error ? error : new Error(String(error)))
    }
  }

  private readonly onData = this.guard((chunk: Buffer) => {
    if (this.started) return this.decoder ? this.feed(chunk) : this.lines.consume(chunk, this.request)
    if (this.whole && this.holdWhole(chunk)) return
    this.head.push(chunk)
    this.headLength += chunk.length
    if (this.codec === undefined && this.headLength < 2) return
    const data = this.takeHead()
    this.codec ??= sniff(data)
    this.start(data)
  })

  private readonly onEnd = this.guard(() => {
    this.requestEnded = true
    if (!this.started && this.headLength > 0) {
      const data = this.takeHead()
      // A byte: no compressed stream is that short, and nothing to sniff.
      this.codec = this.headLength < 2 ? 'plain' : (this.codec ?? sniff(data))
      const decoded = this.codec === 'plain' ? data : this.decodeWithinBudget(this.codec, data)
      if (decoded) {
        this.started = true
        this.lines.consumeWhole(decoded).then(undefined, (error: unknown) => this.finish(error))
        return
      }

      this.start(data)
      if (this.finished) return
    }

    if (this.decoder) {
      this.writeGathered()
      this.decoder.end()
    } else {
      this.lines.endOfLines()
    }
  })

  private readonly onGone = this.guard(() => {
    if (!this.requestEnded) this.finish(new ClientGone())
  })

  // The connection is gone: nobody waits for the answer, so reading ends, also after the body's end
  // (a decompressor could otherwise go on for minutes, and shutdown wait for it).
  private readonly onAbort = () => this.finish(new ClientGone())

  private start(data: Buffer): void {
    this.started = true
    this.releaseHead()
    if (this.codec === 'plain') return this.lines.consume(data, this.request)
    const {memory} = this.options
    if (memory && !memory.reserve(DECODER_BYTES)) return this.finish(new OverBudget())
    const codec = this.codec
    const decoder = codec === 'gzip' ? createGunzip() : createInflate()
    this.decoder = decoder
    decoder.on(
      'data',
      this.guard((chunk: Buffer) => {
        this.produced = true
        this.lines.consume(chunk, decoder)
      }),
    )
    decoder.once('end', this.guard(() => this.lines.endOfLines()))
    decoder.on(
      'error',
      this.guard((error: Error) => {
        const header = !this.produced && error.message === 'incorrect header check'
        this.finish(new DecodeError(header ? `${codec}: invalid header` : error.message))
      }),
    )
    decoder.on(
      'drain',
      this.guard(() => this.request.resume()),
    )
    this.feed(data)
  }

  /** Compressed bytes to the decompressor: a large piece at once, small ones gathered (see GATHER_BYTES). */
  private feed(data: Buffer): void {
    if (this.gatheredLength === 0 && data.length >= GATHER_BYTES) return this.write(data)
    for (let at = 0; at < data.length; ) {
      this.gathered ??= Buffer.allocUnsafe(GATHER_BYTES)
      const copied = data.copy(this.gathered, this.gatheredLength, at)
      this.gatheredLength += copied
      at += copied
      if (this.gatheredLength === GATHER_BYTES) this.writeGathered()
    }

    if (this.gatheredLength > 0 && !this.gatherScheduled) {
      this.gatherScheduled = true
      setImmediate(this.onGatherTurn)
    }
  }

  private readonly onGatherTurn = this.guard(() => {
    this.gatherScheduled = false
    if (!this.finished && !this.requestEnded) this.writeGathered()
  })

  /** The gathered bytes to the decompressor, in a buffer of their own: it keeps what it is given until it has read it. */
  private writeGathered(): void {
    if (this.gatheredLength === 0) return
    const data = this.gathered!.subarray(0, this.gatheredLength)
    this.gathered = undefined
    this.gatheredLength = 0
    this.write(data)
  }

  private write(data: Buffer): void {
    if (!this.decoder!.write(data)) this.request.pause()
  }

  /** The bytes held before the codec was known (or the whole body), as one buffer. */
  private takeHead(): Buffer {
    if (this.wholeBody) return this.wholeBody.subarray(0, this.headLength)
    const data = this.head.length === 1 ? this.head[0] : Buffer.concat(this.head, this.headLength)
    this.head = []
    return data
  }

  /**
   * A body read whole is copied into one buffer of its declared length, reserved with its first chunk;
   * false when that reservation is refused, and the body is then streamed.
   */
  private holdWhole(chunk: Buffer): boolean {
    if (!this.wholeBody) {
      const size = this.options.contentLength!
      const {memory} = this.options
      if (memory && !memory.reserve(size)) {
        this.whole = false
        return false
      }

      if (memory) this.headHeld = size
      this.wholeBody = Buffer.allocUnsafe(size)
    }

    this.headLength += chunk.copy(this.wholeBody, this.headLength)
    return true
  }

  /** The compressed bytes of the head are consumed at once or handed to a decoder (whose reservation covers them). */
  private releaseHead(): void {
    if (this.headHeld === 0) return
    this.options.memory!.release(this.headHeld)
    this.headHeld = 0
  }

  /** A whole body decompressed, if it fits the memory budget (reserved at its bound, then at its size) and the bound. */
  private decodeWithinBudget(codec: Exclude<Codec, 'plain'>, data: Buffer): Buffer | undefined {
    const {memory} = this.options
    if (memory && !memory.reserve(WHOLE_BODY_DECODED_MAX_BYTES)) return undefined
    const decoded = decodeWhole(codec, data)
    memory?.release(WHOLE_BODY_DECODED_MAX_BYTES - (decoded?.length ?? 0))
    if (decoded) this.releaseHead()
    return decoded
  }
}

/** A failed publish: 503 `queue is full` when the output is full or its store unavailable (the agent retries later), else 500. */
function stopForOutput(reader: EventReader, error: Error): void {
  if (isOutputFull(error)) reader.stopQuietly(503, QUEUE_FULL)
  else reader.stopQuietly(500, outputError(error))
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
