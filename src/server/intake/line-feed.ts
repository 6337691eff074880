/**
 * Decoded body bytes into the event reader, one line at a time, with back-pressure: no request holds
 * the event loop for long, however much output its lines make (each repeats the metadata). The
 * splitter stops after the line that made the output `congested` once this request had its fair share
 * of the turn, and reading goes on (the rest of that chunk first) after a flush() and a turn of the
 * event loop, its source paused meanwhile.
 */
import type {Readable} from 'node:stream'
import {setImmediate as nextTurn} from 'node:timers/promises'

import type {MemoryAccount} from '../limits.js'
import type {EventSink} from '../outputs/output.js'
import type {EventReader} from './events.js'
import {LineSplitter} from './line-splitter.js'

const EMPTY = Buffer.alloc(0)

/**
 * What a request may write in a turn of the event loop even when the output is congested: the first
 * request of a turn may use all of the output's budget, and without this share the others would wait
 * turn after turn behind one that keeps using it. An agent's usual request (tens of KiB) takes one turn.
 */
export const FAIR_SHARE_BYTES = 256 * 1024
/** A body read whole is split into lines this many decoded bytes at a time, one turn of the event loop each. */
export const WHOLE_BODY_SLICE_BYTES = 64 * 1024

/** The memory budget refused what the request needed to hold. */
export class OverBudget extends Error {}
/** A flush of the output failed: the events queued may be lost. */
export class OutputFailure extends Error {
  constructor(readonly failure: Error) {
    super(failure.message)
  }
}

/** How the reading of one request ends: once `finish` was called, `finished` is set and nothing more is read. */
export interface Ending {
  readonly finished: boolean
  finish(error?: unknown): void
  /** A listener's body: whatever it throws ends the request, never the process. */
  guard<A extends unknown[]>(body: (...args: A) => void): (...args: A) => void
}

export class LineFeed {
  /** output.failures when this request read its first line: a write failing later may have held its lines */
  failuresBefore: number | undefined
  private readonly splitter: LineSplitter
  /** reader.writtenBytes at the start of this turn's reading */
  private turnStart = 0
  /** chunks that arrived while waiting for the output, to split in order; undefined when not waiting */
  private waiting: Buffer[] | undefined
  /** set when the decoded bytes ended while waiting: a paused stream with nothing buffered still ends */
  private endAfterWaiting = false

  constructor(
    private readonly reader: EventReader,
    private readonly output: EventSink,
    maxEventSize: number,
    memory: MemoryAccount | undefined,
    private readonly ending: Ending,
  ) {
    this.splitter = new LineSplitter(
      Math.max(1, maxEventSize),
      (line, oversized, atEnd) => {
        this.failuresBefore ??= output.failures
        return reader.line(line, oversized, atEnd) && !this.overShare()
      },
      memory,
    )
  }

  /** The decoded bytes ended: the last line (unless waiting for the output, which ends it after). */
  endOfLines(): void {
    if (this.waiting) {
      this.endAfterWaiting = true
      return
    }

    if (!this.reader.done) this.splitter.end()
    this.ending.finish()
  }

  /** Decoded bytes into lines; while the output is congested, whoever feeds us (`source`) is paused. */
  consume(chunk: Buffer, source: Pick<Readable, 'pause' | 'resume'>): void {
    if (!this.reader.decoded(chunk.length)) return this.ending.finish()
    if (this.waiting) return void this.waiting.push(chunk)
    const rest = this.split(chunk)
    if (rest === undefined || this.ending.finished) return
    source.pause()
    this.waiting = [rest]
    this.catchUp(this.waiting).then(
      this.ending.guard(() => {
        this.waiting = undefined
        if (this.ending.finished) return
        if (this.endAfterWaiting) this.endOfLines()
        else source.resume()
      }),
      (error: unknown) => this.ending.finish(error),
    )
  }

  /** A body read whole and decoded: split a slice a turn, then its end. */
  async consumeWhole(data: Buffer): Promise<void> {
    for (let at = 0; at < data.length; at += WHOLE_BODY_SLICE_BYTES) {
      if (at > 0) await nextTurn() // eslint-disable-line no-await-in-loop -- one slice a turn
      if (this.ending.finished) return
      this.turnStart = this.reader.writtenBytes
      const slice = data.subarray(at, at + WHOLE_BODY_SLICE_BYTES)
      if (!this.reader.decoded(slice.length)) return this.ending.finish()
      const rest = this.split(slice)
      if (rest !== undefined) await this.catchUp([rest]) // eslint-disable-line no-await-in-loop
      if (this.ending.finished) return
    }

    this.endOfLines()
  }

  /** The output is congested and this request had its fair share of this turn: stop reading until the next. */
  private overShare(): boolean {
    return this.output.congested && this.reader.writtenBytes - this.turnStart >= FAIR_SHARE_BYTES
  }

  /**
   * Decoded bytes into lines: undefined when all are read and the output can take more; else what is
   * left of the chunk (maybe nothing), to split once the output caught up. Ends the request when the
   * reader stopped it, or the memory budget refused the start of a line.
   */
  private split(chunk: Buffer): Buffer | undefined {
    if (this.splitter.push(chunk)) return this.overShare() ? EMPTY : undefined
    if (this.splitter.refused) this.ending.finish(new OverBudget())
    else if (!this.reader.done) return this.splitter.rest
    else this.ending.finish()
    return undefined
  }

  /** Splits `chunks` in order, starting with a rest; each time the output is congested, flushes it and waits for the next turn. */
  private async catchUp(chunks: Buffer[]): Promise<void> {
    let rest = chunks.shift()
    while (rest !== undefined) {
      // eslint-disable-next-line no-await-in-loop -- one wait after another
      await this.output.flush().catch((error: Error) => {
        throw new OutputFailure(error)
      })
      await nextTurn() // eslint-disable-line no-await-in-loop
      if (this.ending.finished) return
      this.turnStart = this.reader.writtenBytes
      rest = this.split(rest)
      while (rest === undefined && !this.ending.finished && chunks.length > 0) rest = this.split(chunks.shift()!)
      if (this.ending.finished) return
    }
  }
}
