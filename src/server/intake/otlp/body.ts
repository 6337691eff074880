/**
 * An OTLP request body read whole, bounded and accounted: at most `maxBytes` as sent and again once
 * decompressed (gzip, or zlib's deflate, named by Content-Encoding or, as Elastic's APM Server does,
 * sniffed from the first bytes), every byte held reserved in the request's memory account first.
 * A small compressed body is decompressed in one synchronous call bounded by `maxBytes` (as intake v2
 * decompresses its small bodies: ../v2.ts); a larger one, or one whose bound cannot be reserved,
 * streams on the thread pool. Either way a gzip bomb is stopped at the bound, not after it. The bytes
 * are copied into one buffer as they come (../held-bytes.ts: what is held is what is charged, however
 * small the pieces), and an anonymous client's decoded bytes are charged to its address as intake v2
 * charges them.
 */
import type {EventEmitter} from 'node:events'
import type {Readable, Transform} from 'node:stream'
import {createGunzip, createInflate, gunzipSync, inflateSync} from 'node:zlib'

import {ANONYMOUS_DECODED_RATE_EXCEEDED, MemoryAccount, QUEUE_FULL} from '../../limits.js'
import {HeldBytes} from '../held-bytes.js'

export type BodyResult = {body: Buffer} | {status: number; message: string}

export interface BodyOptions {
  /** Content-Encoding: gzip, deflate, identity or none (then sniffed); anything else was refused before */
  contentEncoding?: string
  /** the declared Content-Length, when there is one */
  contentLength?: number
  maxBytes: number
  memory?: MemoryAccount
  /** the connection: when it closes, reading ends at once */
  connection?: Pick<EventEmitter, 'off' | 'once'>
  /** an anonymous client's allowance of decoded bytes (../../limits.ts, ANONYMOUS_DECODED_BYTES_PER_EVENT) */
  decoded?: {allow(bytes: number): boolean}
}

/**
 * A compressed body at most this long is decompressed in one synchronous call: a stream's hand-offs to
 * the thread pool (and its chunks, gathered again) cost more main-thread time than inflating a small
 * body on the spot, even a bomb's 8 MiB (some 6 ms against 10 to 18). The bound is reserved in the
 * memory budget first, the unused part released at once: when it cannot be (an anonymous client's
 * share is smaller), the body streams as before.
 */
export const WHOLE_BODY_MAX_BYTES = 64 * 1024

/** The Content-Encodings an OTLP body may have. */
export const BODY_ENCODINGS = new Set(['', 'deflate', 'gzip', 'identity'])

/** Reads the body; never rejects (an error of the client's is a result). */
export function readBody(request: Readable, options: BodyOptions): Promise<BodyResult> {
  if (options.contentLength !== undefined && options.contentLength > options.maxBytes) return Promise.resolve(tooLarge(options.maxBytes, 'as sent'))
  return new BodyRead(request, options).read()
}

const RATE_EXCEEDED = {message: ANONYMOUS_DECODED_RATE_EXCEEDED, status: 429}

function tooLarge(maxBytes: number, what: string): {status: number; message: string} {
  return {message: `request body too large: more than ${maxBytes} bytes ${what}`, status: 413}
}

class BodyRead {
  private readonly raw: HeldBytes
  private readonly decoded: HeldBytes
  private decoder: Transform | undefined
  private settled = false
  private resolve: (result: BodyResult) => void = () => {}

  constructor(
    private readonly request: Readable,
    private readonly options: BodyOptions,
  ) {
    // A declared length is held in one buffer of that size.
    this.raw = new HeldBytes(options.memory, options.maxBytes, options.contentLength || undefined)
    this.decoded = new HeldBytes(options.memory, options.maxBytes)
  }

  read(): Promise<BodyResult> {
    return new Promise((resolve) => {
      this.resolve = resolve
      this.request.on('data', this.onData)
      this.request.once('end', this.onEnd)
      this.request.once('error', this.onGone)
      this.request.once('close', this.onClose)
      this.options.connection?.once('close', this.onGone)
      this.request.resume()
    })
  }

  private readonly onData = (chunk: Buffer) => {
    if (this.settled) return
    if (this.raw.length + chunk.length > this.options.maxBytes) return this.settle(tooLarge(this.options.maxBytes, 'as sent'))
    if (!this.raw.append(chunk)) return this.settle({message: QUEUE_FULL, status: 503})
  }

  private readonly onEnd = () => {
    if (this.settled) return
    const body = this.raw.bytes()
    const codec = codecOf(this.options.contentEncoding, body)
    if (codec === 'plain') return this.settle(this.charged(body.length) ? {body} : RATE_EXCEEDED)
    if (body.length <= WHOLE_BODY_MAX_BYTES && this.hold(this.options.maxBytes)) return this.settle(this.decodeWhole(codec, body))
    this.decode(codec, body)
  }

  private readonly onClose = () => {
    if (!this.request.readableEnded) this.onGone()
  }

  private readonly onGone = () => this.settle({message: 'the client closed the request before its end', status: 400})

  /**
   * Decompresses in one call of at most `maxBytes` output, that bound held reserved (the caller's)
   * and what is not kept released. Same answers as the stream: zlib's messages, the same 413.
   */
  private decodeWhole(codec: 'gzip' | 'zlib', body: Buffer): BodyResult {
    const {maxBytes, memory} = this.options
    try {
      const decoded = codec === 'gzip' ? gunzipSync(body, {maxOutputLength: maxBytes}) : inflateSync(body, {maxOutputLength: maxBytes})
      memory?.release(maxBytes - decoded.length)
      return this.charged(decoded.length) ? {body: decoded} : RATE_EXCEEDED
    } catch (error) {
      memory?.release(maxBytes)
      if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return tooLarge(maxBytes, 'decompressed')
      return {message: `data decoding error: ${codec === 'gzip' ? 'gzip' : 'deflate'}: ${(error as Error).message}`, status: 400}
    }
  }

  /** Decompresses on the thread pool, each output chunk reserved and counted against the bound. */
  private decode(codec: 'gzip' | 'zlib', body: Buffer): void {
    const decoder = codec === 'gzip' ? createGunzip() : createInflate()
    this.decoder = decoder
    decoder.on('data', (chunk: Buffer) => {
      if (this.settled) return
      if (this.decoded.length + chunk.length > this.options.maxBytes) return this.settle(tooLarge(this.options.maxBytes, 'decompressed'))
      if (!this.charged(chunk.length)) return this.settle(RATE_EXCEEDED)
      if (!this.decoded.append(chunk)) return this.settle({message: QUEUE_FULL, status: 503})
    })
    decoder.once('end', () => this.settle({body: this.decoded.bytes()}))
    decoder.on('error', (error: Error) => this.settle({message: `data decoding error: ${codec === 'gzip' ? 'gzip' : 'deflate'}: ${error.message}`, status: 400}))
    decoder.end(body)
  }

  private hold(bytes: number): boolean {
    return this.options.memory?.reserve(bytes) ?? true
  }

  /** An anonymous client's decoded bytes, charged to its address; false past its allowance. */
  private charged(bytes: number): boolean {
    return this.options.decoded?.allow(bytes) ?? true
  }

  private settle(result: BodyResult): void {
    if (this.settled) return
    this.settled = true
    this.request.off('data', this.onData)
    this.request.off('end', this.onEnd)
    this.request.off('error', this.onGone)
    this.request.off('close', this.onClose)
    this.options.connection?.off('close', this.onGone)
    if (this.decoder) {
      this.decoder.removeAllListeners()
      this.decoder.on('error', () => {}) // a late zlib error after destroy has nobody to tell
      this.decoder.destroy()
    }

    this.resolve(result)
  }
}

/** Content-Encoding decides; without one, gzip's magic or zlib's method nibble is sniffed, as Elastic's APM Server does. */
function codecOf(contentEncoding: string | undefined, body: Buffer): 'gzip' | 'plain' | 'zlib' {
  if (contentEncoding === 'gzip') return 'gzip'
  if (contentEncoding === 'deflate') return 'zlib'
  if (contentEncoding === 'identity' || body.length < 2) return 'plain'
  if (body[0] === 0x1f && body[1] === 0x8b) return 'gzip'
  // A protobuf export request starts with field 1, length-delimited (0x0a); a JSON body with "{" or
  // a blank: neither has zlib's method nibble (8), so sniffing never mistakes one for deflate.
  if ((body[0] & 0x0f) === 8 && (body[0] * 256 + body[1]) % 31 === 0) return 'zlib'
  return 'plain'
}
