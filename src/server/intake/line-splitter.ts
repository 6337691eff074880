/**
 * The intake's line splitter: a byte stream (a request body, decoded) cut into lines of at most
 * `max_event_size` bytes, with bounded memory whatever the client sends.
 */
import type {MemoryAccount} from '../limits.js'

const EMPTY = Buffer.alloc(0)

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
