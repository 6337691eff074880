/**
 * Bytes a request holds until it has them all (an OTLP body, a gRPC message), copied as they arrive
 * into one buffer that doubles as it grows, its whole size reserved in the request's memory account
 * first. A list of the pieces as they came would keep a Buffer object per piece: an HTTP chunk or an
 * HTTP/2 DATA frame may carry one byte, and ~100 bytes of heap charged as 1 is how 80 connections of
 * 1-byte chunks ran the server out of memory (fix-net finding 1). Here what is held is what is charged,
 * however small the pieces.
 */
import type {MemoryAccount} from '../limits.js'

/** The smallest buffer; it doubles from there. */
const HELD_MIN_BYTES = 16 * 1024

export class HeldBytes {
  private buffer: Buffer | undefined
  private held = 0

  /**
   * @param memory where the buffer's size is reserved (none: not accounted)
   * @param max the most this will hold (the caller refuses more): the buffer never grows past it
   * @param first the size of the first buffer, when the final size is known (a declared length)
   */
  constructor(
    private readonly memory: MemoryAccount | undefined,
    private readonly max: number,
    private readonly first = HELD_MIN_BYTES,
  ) {}

  get length(): number {
    return this.held
  }

  /** Copies `piece` after what is held, growing the buffer (reserved first); false, nothing copied, when the reservation is refused. */
  append(piece: Buffer): boolean {
    const needed = this.held + piece.length
    const capacity = this.buffer?.length ?? 0
    if (needed > capacity) {
      const size = Math.max(needed, Math.min(this.max, Math.max(2 * capacity, this.first)))
      if (this.memory && !this.memory.reserve(size - capacity)) return false
      const grown = Buffer.allocUnsafe(size)
      this.buffer?.copy(grown, 0, 0, this.held)
      this.buffer = grown
    }

    piece.copy(this.buffer!, this.held)
    this.held = needed
    return true
  }

  /** What is held, as one view (its reservation stays with the account until the request ends). */
  bytes(): Buffer {
    return this.buffer ? this.buffer.subarray(0, this.held) : Buffer.alloc(0)
  }
}
