/**
 * The intake's line splitter: a byte stream (a request body, decoded) cut into lines of at most
 * `max_event_size` bytes, with bounded memory whatever the client sends.
 */
import type {MemoryAccount} from '../limits.js'

const EMPTY = Buffer.alloc(0)
/** The smallest buffer a line held across chunks starts in; it doubles as the line grows. */
export const HELD_LINE_MIN_BYTES = 1024

/**
 * Splits a byte stream into lines of at most `max` bytes. A longer line is handed over once, cut at
 * `max` bytes and flagged, and the rest of it is dropped as it arrives, so memory stays bounded. Empty
 * lines after the first are skipped without a call. The start of a line held across chunks is copied into one buffer
 * of its own, whose whole size is reserved in `memory` first, when given: what a line holds is what it
 * is charged, however many pieces it came in (a view of each piece would keep its chunk, and a Buffer
 * object, alive: 1-byte HTTP chunks held ~200 times what they were charged). When a reservation is
 * refused, push() returns false with `refused` set.
 */
export class LineSplitter {
  /** After push() returned false: the part of its chunk not read yet (to push later to read on). */
  rest: Buffer = EMPTY
  /** set when push() stopped because `memory` refused to hold the start of a line */
  refused = false
  /** the start of the line held across chunks: `held.subarray(0, length)`; its whole size is reserved */
  private held: Buffer = EMPTY
  private length = 0
  private skipping = false
  /** set once a line was handed over */
  private lineSeen = false

  constructor(
    private readonly max: number,
    private readonly onLine: (line: Buffer, oversized: boolean, atEnd: boolean) => boolean,
    private readonly memory?: MemoryAccount,
  ) {}

  /** False once onLine asked to stop, or memory was refused. */
  push(chunk: Buffer): boolean {
    let start = 0
    while (start < chunk.length) {
      // Empty lines after the first line (and runs of them) cost nothing but this scan; the first line is
      // the metadata, which an empty line is not.
      if (this.lineSeen && this.length === 0 && !this.skipping && chunk[start] === 0x0a) {
        start++
        continue
      }

      const newline = chunk.indexOf(0x0a, start)
      const end = newline === -1 ? chunk.length : newline
      // The common case, a whole line inside the chunk and nothing pending: handed over as a view.
      if (newline !== -1 && this.length === 0 && !this.skipping && end - start <= this.max) {
        if (!this.emit(chunk.subarray(start, end), false, false)) return this.stop(chunk, newline + 1)
        start = newline + 1
        continue
      }

      if (!this.skipping && end > start) {
        const piece = chunk.subarray(start, end)
        if (this.length + piece.length > this.max) {
          const cut = Buffer.concat([this.held.subarray(0, this.length), piece.subarray(0, this.max - this.length)])
          this.reset()
          this.skipping = true
          if (!this.emit(cut, true, false)) return this.stop(chunk, end)
        } else if (newline === -1 && !this.hold(piece)) {
          this.refused = true
          return this.stop(chunk, start)
        } else if (newline !== -1) {
          // The end of a held line is handed over at once, joined to its start.
          const line = Buffer.concat([this.held.subarray(0, this.length), piece])
          this.reset()
          if (!this.emit(line, false, false)) return this.stop(chunk, newline + 1)
          start = newline + 1
          continue
        }
      }

      if (newline === -1) break
      if (this.skipping) {
        this.skipping = false
      } else if (this.length > 0) {
        const line = this.take()
        if (!this.emit(line, false, false)) return this.stop(chunk, newline + 1)
      }

      start = newline + 1
    }

    return true
  }

  /** The last line when the body did not end with a newline. */
  end(): void {
    if (!this.skipping && this.length > 0) this.emit(this.take(), false, true)
  }

  private emit(line: Buffer, oversized: boolean, atEnd: boolean): boolean {
    this.lineSeen = true
    return this.onLine(line, oversized, atEnd)
  }

  private stop(chunk: Buffer, next: number): false {
    this.rest = chunk.subarray(next)
    return false
  }

  /** Copies `piece` after the held start of the line, growing its buffer (reserved first); false when refused. */
  private hold(piece: Buffer): boolean {
    const needed = this.length + piece.length
    if (needed > this.held.length) {
      const size = Math.min(this.max, Math.max(needed, 2 * this.held.length, HELD_LINE_MIN_BYTES))
      if (this.memory && !this.memory.reserve(size - this.held.length)) return false
      const grown = Buffer.allocUnsafe(size)
      this.held.copy(grown, 0, 0, this.length)
      this.held = grown
    }

    piece.copy(this.held, this.length)
    this.length = needed
    return true
  }

  /** The held line, handed over: its buffer is the line's now (the output may keep views of it), never reused. */
  private take(): Buffer {
    const line = this.held.subarray(0, this.length)
    this.reset()
    return line
  }

  private reset(): void {
    if (this.held.length > 0) this.memory?.release(this.held.length)
    this.held = EMPTY
    this.length = 0
  }
}
