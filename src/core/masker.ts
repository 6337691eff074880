/**
 * Conceals secret values in a stream of bytes (`keystore run`'s view of a command's output): every
 * occurrence of any value is replaced by a fixed mask, also when it arrives split across chunks or
 * lines. Overlapping or touching occurrences are concealed as one run: no byte of any value shows.
 *
 * An Aho-Corasick automaton over all the values, made a deterministic table (one lookup per byte, over
 * the byte classes the values use), reads each chunk once. Bytes are held back only while they may
 * still be the start of a value: at most the longest value less one byte. A held-back prefix that the
 * stream ends on is written as it is (only whole values are concealed).
 * Written here rather than taken from an Aho-Corasick package: those on npm match JavaScript strings,
 * whole, not bytes of a stream that a value can be cut anywhere in.
 */
import {KeystoreError} from './errors.js'

export const MASK = '<concealed by apm-server>'

/**
 * The automaton's table may hold this many entries (32 MiB, and as much again while it is built): about
 * 100 KiB of base64 values, far more than tokens and passwords need.
 */
const MAX_TABLE_ENTRIES = 8 * 1024 * 1024

/** A run of masked bytes, [start, end) in stream offsets, and whether its mask was written yet. */
interface Run {
  start: number
  end: number
  shown: boolean
}

/** The automaton for a set of values: shared by the streams it conceals them in. */
export class MaskTable {
  /** byte -> class; 0 for bytes no value holds (they always lead back to the root) */
  readonly classes = new Uint8Array(256)
  readonly width: number
  /**
   * (state offset + class) -> next state's offset (state index × width), negated when a value ends in
   * the next state: the one test the hot loop makes.
   */
  readonly next: Int32Array
  /** per state index: the longest value ending there (0: none), and its distance from the root */
  readonly longest: Int32Array
  readonly depth: Int32Array

  constructor(values: readonly Uint8Array[]) {
    const patterns = values.filter((value) => value.length > 0)
    let width = 1
    for (const value of patterns) for (const byte of value) if (this.classes[byte] === 0) this.classes[byte] = width++
    this.width = width
    const maxStates = 1 + patterns.reduce((sum, value) => sum + value.length, 0)
    if (maxStates * width > MAX_TABLE_ENTRIES) {
      throw new KeystoreError(
        'ELIMITS',
        `the values to conceal (${maxStates - 1} bytes over ${width - 1} distinct byte values) are too many or too large to mask; choose fewer keys with --key, or pass --no-mask`,
      )
    }

    const goto = new Int32Array(maxStates * width).fill(-1)
    this.longest = new Int32Array(maxStates)
    this.depth = new Int32Array(maxStates)
    const states = this.buildTrie(patterns, goto)
    this.next = this.buildTable(goto, states)
  }

  /** The trie of the values in `goto` (state index × width + class -> state index, -1 for none); returns the state count. */
  private buildTrie(patterns: Uint8Array[], goto: Int32Array): number {
    let states = 1
    for (const value of patterns) {
      let state = 0
      for (const byte of value) {
        const at = state * this.width + this.classes[byte]
        if (goto[at] === -1) {
          this.depth[states] = this.depth[state] + 1
          goto[at] = states++
        }

        state = goto[at]
      }

      this.longest[state] = value.length
    }

    return states
  }

  /** Failure links breadth first, folded into a full table; each state's longest value includes its suffixes'. */
  private buildTable(goto: Int32Array, states: number): Int32Array {
    const {width} = this
    const fail = new Int32Array(states)
    const next = new Int32Array(states * width)
    const queue = new Int32Array(states)
    let head = 0
    let tail = 0
    for (let c = 0; c < width; c++) {
      const child = goto[c]
      next[c] = child === -1 ? 0 : child
      if (child > 0) queue[tail++] = child
    }

    while (head < tail) {
      const state = queue[head++]
      this.longest[state] = Math.max(this.longest[state], this.longest[fail[state]])
      for (let c = 0; c < width; c++) {
        const child = goto[state * width + c]
        if (child === -1) {
          next[state * width + c] = next[fail[state] * width + c]
        } else {
          fail[child] = next[fail[state] * width + c]
          next[state * width + c] = child
          queue[tail++] = child
        }
      }
    }

    // Offsets instead of indexes, and the sign for "a value ends here": the hot loop then needs no multiply.
    for (let i = 0; i < next.length; i++) next[i] = this.longest[next[i]] > 0 ? -(next[i] * width) : next[i] * width
    return next
  }
}

/** One stream's concealment: feed it chunks in order, write what it returns, then what {@link end} returns. */
export class Masker {
  private state = 0
  /** bytes read so far */
  private total = 0
  /** stream offset of held[0]; everything before it was written */
  private written = 0
  private held: Buffer = Buffer.alloc(0)
  private readonly runs: Run[] = []
  private readonly mask: Buffer

  constructor(
    private readonly table: MaskTable,
    mask: string = MASK,
  ) {
    this.mask = Buffer.from(mask)
  }

  /** Reads `chunk`; returns the bytes that can be written now, values concealed. */
  push(chunk: Uint8Array): Buffer {
    const {classes, longest, next, width} = this.table
    let state = this.state
    for (let i = 0; i < chunk.length; i++) {
      state = next[state + classes[chunk[i]]]
      if (state < 0) {
        state = -state
        this.conceal(this.total + i + 1, longest[state / width])
      }
    }

    this.state = state
    this.total += chunk.length
    this.held = this.held.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length) : Buffer.concat([this.held, chunk])
    // A value that ends later starts no earlier than the longest suffix read that begins one.
    return this.release(this.total - this.table.depth[state / width])
  }

  /** The end of the stream: everything held back. */
  end(): Buffer {
    return this.release(this.total)
  }

  /**
   * A value ends at `end`: its bytes join every run they touch (a value ending later may start earlier
   * than one ending before it: "b" then "abc"). Runs whose mask was written never grow backwards: a value
   * that ends later starts no earlier than what was released.
   */
  private conceal(end: number, length: number): void {
    let start = end - length
    let shown = false
    while (this.runs.length > 0 && this.runs.at(-1)!.end >= start) {
      const run = this.runs.pop()!
      start = Math.min(start, run.start)
      end = Math.max(end, run.end)
      shown ||= run.shown
    }

    this.runs.push({end, shown, start})
  }

  /** Writes everything before `until`, each run as one mask (and a run reaching past `until` as well: it is masked whatever follows). */
  private release(until: number): Buffer {
    const out: Buffer[] = []
    const raw = (to: number) => {
      if (to > this.written) out.push(this.held.subarray(this.written - (this.total - this.held.length), to - (this.total - this.held.length)))
      this.written = Math.max(this.written, to)
    }

    while (this.runs.length > 0 && this.runs[0].start <= until) {
      const run = this.runs[0]
      raw(run.start)
      if (!run.shown) out.push(this.mask)
      run.shown = true
      this.written = Math.max(this.written, run.end)
      // A run a later value may still touch (one starts no earlier than `until`) is kept, marked shown, to grow.
      if (run.end < until) this.runs.shift()
      else break
    }

    raw(until)
    this.held = this.held.subarray(this.held.length - (this.total - this.written))
    return out.length === 1 ? out[0] : Buffer.concat(out)
  }
}
