/**
 * The file output: accepted events appended as ndjson, one event a line, rotated by size the way Beats'
 * file output rotates (`apm-server` is written; when it would pass `rotate_every_kb` it becomes
 * `apm-server.1`, the older ones shift up, and at most `number_of_files` files are kept).
 *
 * Lines are queued in memory and written in batches by one writer; `flush()` resolves once everything
 * queued before the call is in the file, which is when the server answers 202. `close()` flushes and
 * fsyncs, so a clean shutdown loses nothing.
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'

export interface FileOutputOptions {
  /** directory */
  path: string
  filename: string
  rotateEveryKb: number
  numberOfFiles: number
  /** file mode of new files; default 0600 as Beats */
  permissions?: number
}

/** How much queued data makes writers wait for the file: bounds memory under load. */
const HIGH_WATER_BYTES = 4 * 1024 * 1024

interface Waiter {
  seq: number
  resolve: () => void
  reject: (error: Error) => void
}

const NEWLINE = Buffer.from('\n')

export class FileOutput {
  /** the bytes of the queued lines, newlines included, and how many bytes each line has */
  private parts: Buffer[] = []
  private lineSizes: number[] = []
  private queuedBytes = 0
  /** number of lines handed to write() so far, and how many of them are in the file */
  private enqueued = 0
  private written = 0
  private waiters: Waiter[] = []
  private running: Promise<void> | undefined
  private closed = false

  private constructor(
    private handle: fs.FileHandle,
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
    const file = path.join(full.path, full.filename)
    const handle = await fs.open(file, 'a', full.permissions)
    const {size} = await handle.stat()
    return new FileOutput(handle, size, full)
  }

  /** The file being written now. */
  get currentFile(): string {
    return path.join(this.options.path, this.options.filename)
  }

  /** True when writers should wait for `flush()` before queueing more. */
  get congested(): boolean {
    return this.queuedBytes >= HIGH_WATER_BYTES
  }

  /**
   * Queues one line, without its newline: a string, or the concatenation of byte parts. Parts are kept
   * as they are until written (no copy), so the caller must not change them.
   */
  write(line: string | readonly Buffer[]): void {
    if (this.closed) throw new Error('the output is closed')
    let bytes = 0
    if (typeof line === 'string') {
      const data = Buffer.from(`${line}\n`, 'utf8')
      this.parts.push(data)
      bytes = data.length
    } else {
      for (const part of line) {
        this.parts.push(part)
        bytes += part.length
      }

      this.parts.push(NEWLINE)
      bytes++
    }

    this.lineSizes.push(bytes)
    this.queuedBytes += bytes
    this.enqueued++
    this.schedule()
  }

  /** Resolves when every line queued before this call is written (not yet fsynced). */
  flush(): Promise<void> {
    if (this.written >= this.enqueued) return Promise.resolve()
    return new Promise((resolve, reject) => {
      this.waiters.push({reject, resolve, seq: this.enqueued})
      this.schedule()
    })
  }

  /** Writes what is queued, fsyncs and closes the file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.flush().catch(() => {})
    await this.running
    await this.handle.sync()
    await this.handle.close()
  }

  private schedule(): void {
    // setImmediate lets the lines of one network chunk, and of other requests, join the same write.
    this.running ??= new Promise<void>((resolve) => {
      setImmediate(resolve)
    }).then(() => this.drain())
  }

  private async drain(): Promise<void> {
    try {
      while (this.lineSizes.length > 0) {
        const {lineSizes, parts, queuedBytes} = this
        this.parts = []
        this.lineSizes = []
        this.queuedBytes = 0
        try {
          // eslint-disable-next-line no-await-in-loop -- one writer, batches in order
          await this.writeLines(parts, lineSizes, queuedBytes)
          this.written += lineSizes.length
          this.settle()
        } catch (error) {
          // The batch is lost to the file: the requests waiting for it must not be answered 202.
          this.written += lineSizes.length
          this.settle(error as Error)
        }
      }
    } finally {
      this.running = undefined
      if (this.lineSizes.length > 0) this.schedule()
    }
  }

  private settle(error?: Error): void {
    const done = this.waiters.filter((waiter) => waiter.seq <= this.written)
    this.waiters = this.waiters.filter((waiter) => waiter.seq > this.written)
    for (const waiter of done) {
      if (error) waiter.reject(error)
      else waiter.resolve()
    }
  }

  /** One writev for the batch unless it crosses the rotation size; then line by line around the rotations. */
  private async writeLines(parts: Buffer[], lineSizes: number[], bytes: number): Promise<void> {
    const limit = this.options.rotateEveryKb * 1024
    if (this.size + bytes <= limit) return this.append(parts, bytes)
    let first = 0
    let chunkBytes = 0
    let part = 0
    for (const lineSize of lineSizes) {
      if (this.size + chunkBytes > 0 && this.size + chunkBytes + lineSize > limit) {
        // eslint-disable-next-line no-await-in-loop -- rotation must follow the write
        await this.append(parts.slice(first, part), chunkBytes)
        first = part
        chunkBytes = 0
        // eslint-disable-next-line no-await-in-loop -- in order
        await this.rotate()
      }

      // The parts of this line: up to and including its newline.
      for (let seen = 0; seen < lineSize; part++) seen += parts[part].length
      chunkBytes += lineSize
    }

    await this.append(parts.slice(first, part), chunkBytes)
  }

  private async append(chunk: Buffer[], bytes: number): Promise<void> {
    if (bytes === 0) return
    await this.handle.writev(chunk)
    this.size += bytes
  }

  /** filename -> filename.1 -> ... -> filename.(n-1); the oldest is removed. The moved file is fsynced first. */
  private async rotate(): Promise<void> {
    await this.handle.sync()
    await this.handle.close()
    const base = this.currentFile
    const name = (index: number) => (index === 0 ? base : `${base}.${index}`)
    await fs.rm(name(this.options.numberOfFiles - 1), {force: true})
    for (let index = this.options.numberOfFiles - 2; index >= 0; index--) {
      // eslint-disable-next-line no-await-in-loop -- renames in order
      await fs.rename(name(index), name(index + 1)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error
      })
    }

    this.handle = await fs.open(base, 'a', this.options.permissions)
    this.size = 0
    await syncDirectory(this.options.path)
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await fs.open(directory, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
