/**
 * The file output, the first {@link Output}: accepted events appended as ndjson, one event a line,
 * rotated by size the way Beats' file output rotates (`apm-server` is written; when it would pass
 * `rotate_every_kb` it becomes `apm-server.1`, the older ones shift up, and at most `number_of_files`
 * files are kept; the file system work is in ./files.ts).
 *
 * Lines are queued in memory and appended with one synchronous `writev` per batch: when a request
 * calls `flush()` (it answers 202 only after that), at the end of the tick they were queued in, or as
 * soon as the queue passes {@link HIGH_WATER_BYTES}. Synchronous on purpose: an append to the page
 * cache of one request's events (tens of KiB) takes microseconds, while a thread-pool round trip per
 * batch kept every waiting request (and so the agents' connections) idle for far longer; the intake
 * benchmark measured the asynchronous writer at about half the throughput. `close()` writes what is
 * queued, fsyncs and closes, so a clean shutdown loses nothing.
 *
 * Synchronous writes must not hold the event loop: one small request can make hundreds of MiB of
 * output (every line repeats its metadata). So the output is `congested` once more than
 * {@link TICK_BUDGET_BYTES} were written or queued in the current turn of the event loop, and writers
 * are expected to wait for the next turn (a setImmediate) before writing more.
 */
import {closeSync, fsyncSync, ftruncateSync, promises as fs, writeSync, writevSync} from 'node:fs'
import path from 'node:path'

import {LineBatch} from './batch.js'
import {openOutputFile, rotateFiles, syncRotated} from './files.js'
import type {Output, OutputStats} from './output.js'

export interface FileOutputOptions {
  /** directory */
  path: string
  filename: string
  rotateEveryKb: number
  numberOfFiles: number
  /** file mode of new files; default 0600 as Beats */
  permissions?: number
}

/** Queued bytes that are written at once rather than at the end of the tick: bounds memory. */
export const HIGH_WATER_BYTES = 4 * 1024 * 1024
/** Bytes written or queued in one turn of the event loop past which the output reports itself `congested`. */
export const TICK_BUDGET_BYTES = 4 * 1024 * 1024

export class FileOutput implements Output {
  readonly maxQueuedBytes = HIGH_WATER_BYTES
  /** the lines queued for the next write */
  private readonly queue = new LineBatch()
  private scheduled: NodeJS.Immediate | undefined
  /** bytes written in this turn of the event loop, and the immediate that sets it back to 0 */
  private tickBytes = 0
  private tickReset: NodeJS.Immediate | undefined
  private readonly resetTick = () => {
    this.tickBytes = 0
    this.tickReset = undefined
  }
  private failureCount = 0
  private latestFailure: Error | undefined
  private published = 0
  private failed = 0
  /** fsyncs of rotated files, running in the background; close() waits for them */
  private readonly syncs = new Set<Promise<void>>()
  private closed = false
  /**
   * set when a failed rotation left the current file without its name: each later batch first tries to
   * open a new file under the name, and fails with that error rather than write to a history file
   */
  private broken = false
  /** set when a failed write left part of a line in the file and it could not be cut back: the next write ends that line first */
  private torn = false

  private constructor(
    private fd: number,
    private size: number,
    private readonly options: Required<FileOutputOptions>,
  ) {}

  /** Opens (creating the directory and file if needed) and appends to the current file. */
  static async open(options: FileOutputOptions): Promise<FileOutput> {
    const full = {permissions: 0o600, ...options}
    if (!Number.isFinite(full.rotateEveryKb) || full.rotateEveryKb < 1) throw new Error(`output.file.rotate_every_kb must be at least 1, got ${full.rotateEveryKb}`)
    if (!Number.isInteger(full.numberOfFiles) || full.numberOfFiles < 2 || full.numberOfFiles > 1024) {
      throw new Error(`output.file.number_of_files must be between 2 and 1024, got ${full.numberOfFiles}`)
    }

    await fs.mkdir(full.path, {mode: 0o750, recursive: true})
    // A plain descriptor: every write is synchronous (see above).
    const {fd, size} = openOutputFile(path.join(full.path, full.filename), full.permissions)
    return new FileOutput(fd, size, full)
  }

  /**
   * True once more than {@link TICK_BUDGET_BYTES} were written or queued in this turn of the event loop:
   * a writer should then flush() and wait for the next turn (setImmediate) before writing more, so that
   * one request's output cannot hold the event loop. Writes are still taken.
   */
  get congested(): boolean {
    return this.tickBytes + this.queue.bytes > TICK_BUDGET_BYTES
  }

  /** The file being written now. */
  get currentFile(): string {
    return path.join(this.options.path, this.options.filename)
  }

  /** Writes that failed so far. A writer that sees this change while its lines were queued may have lost some. */
  get failures(): number {
    return this.failureCount
  }

  /** The error of the latest failed write. */
  get lastFailure(): Error | undefined {
    return this.latestFailure
  }

  stats(): OutputStats {
    return {failed: this.failed, pending: this.queue.count, published: this.published}
  }

  /**
   * Queues one line, without its newline: a string, or the concatenation of byte parts. Parts are kept
   * as they are until written (no copy), so the caller must not change them.
   */
  write(line: string | readonly Buffer[]): void {
    if (this.closed) throw new Error('the output is closed')
    this.queue.add(line)
    if (this.queue.bytes >= HIGH_WATER_BYTES) this.writeQueued()
    else this.scheduled ??= setImmediate(() => this.writeQueued())
  }

  /** Writes every queued line now (not fsynced); rejects when that write fails, and the lines are lost. */
  flush(): Promise<void> {
    try {
      this.writeQueued(true)
      return Promise.resolve()
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** Writes what is queued, fsyncs and closes the file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    try {
      this.writeQueued()
    } finally {
      if (this.tickReset) clearImmediate(this.tickReset)
      this.tickReset = undefined
      this.tickBytes = 0
      await Promise.all(this.syncs)
      try {
        fsyncSync(this.fd)
      } finally {
        closeSync(this.fd)
      }
    }
  }

  /** One batch: everything queued. A failure is counted (and thrown when `rethrow`); the batch is lost. */
  private writeQueued(rethrow = false): void {
    if (this.scheduled) {
      clearImmediate(this.scheduled)
      this.scheduled = undefined
    }

    if (this.queue.count === 0) return
    const {bytes, lineSizes, parts} = this.queue.take()
    this.tickBytes += bytes
    this.tickReset ??= setImmediate(this.resetTick)
    try {
      this.writeLines(parts, lineSizes, bytes)
      this.published += lineSizes.length
    } catch (error) {
      this.failureCount++
      this.failed += lineSizes.length
      this.latestFailure = error as Error
      if (rethrow) throw error
    }
  }

  /** One writev for the batch unless it crosses the rotation size; then line by line around the rotations. */
  private writeLines(parts: Buffer[], lineSizes: number[], bytes: number): void {
    if (this.broken) this.reopen()
    const limit = this.options.rotateEveryKb * 1024
    if (this.size + bytes <= limit) return this.append(parts, bytes)
    let first = 0
    let chunkBytes = 0
    let part = 0
    for (const lineSize of lineSizes) {
      if (this.size + chunkBytes > 0 && this.size + chunkBytes + lineSize > limit) {
        this.append(parts.slice(first, part), chunkBytes)
        first = part
        chunkBytes = 0
        this.rotate()
      }

      // The parts of this line: up to and including its newline.
      for (let seen = 0; seen < lineSize; part++) seen += parts[part].length
      chunkBytes += lineSize
    }

    this.append(parts.slice(first, part), chunkBytes)
  }

  /**
   * Appends whole lines. A write that fails part way (a full disk writes what fits, then fails) must not
   * leave the start of a line behind: the next line appended would be glued to it, unreadable, and its
   * request answered 202. So the file is cut back to where this write began.
   */
  private append(chunk: Buffer[], bytes: number): void {
    if (bytes === 0) return
    if (this.torn) this.endTornLine()
    const start = this.size
    try {
      let written = writevSync(this.fd, chunk)
      this.size += written
      // A short write (a signal, a full disk at the limit): the rest, from where it stopped.
      while (written < bytes) {
        let skip = written
        let index = 0
        while (skip >= chunk[index].length) skip -= chunk[index++].length
        const rest = [chunk[index].subarray(skip), ...chunk.slice(index + 1)]
        const more = writevSync(this.fd, rest)
        this.size += more
        written += more
      }
    } catch (error) {
      this.cutBack(start)
      throw error
    }
  }

  /** After a failed write: the file back to `size` bytes (appends go to its end), or, when that fails too, a newline before the next write. */
  private cutBack(size: number): void {
    if (this.size === size) return
    try {
      ftruncateSync(this.fd, size)
      this.size = size
    } catch {
      this.torn = true
    }
  }

  /** Ends the part of a line a failed write left and could not cut: it stays unreadable, but alone on its line. */
  private endTornLine(): void {
    this.size += writeSync(this.fd, '\n')
    this.torn = false
  }

  /**
   * Moves the files (./files.ts) and writes on in a new one. The moved file is fsynced in the background
   * (its descriptor kept open until then), then the directory: requests do not wait for the disk;
   * close() waits for it. A failed rotation is tried again by every later batch.
   */
  private rotate(): void {
    const {fd, removed, size} = rotateFiles(this.options, () => {
      this.broken = true
    })
    this.adopt(fd, size, removed)
  }

  /** After a rotation that left the current file without its name: a new file under the name, if it opens. */
  private reopen(): void {
    const {fd, size} = openOutputFile(this.currentFile, this.options.permissions)
    this.broken = false
    this.adopt(fd, size, undefined)
  }

  /** Makes `fd` the current file; the previous one is fsynced and closed in the background, `removed` closed. */
  private adopt(fd: number, size: number, removed: number | undefined): void {
    const rotated = this.fd
    this.fd = fd
    this.size = size
    this.torn = false
    const sync = syncRotated(rotated, removed, this.options.path).finally(() => this.syncs.delete(sync))
    this.syncs.add(sync)
  }
}
