/**
 * The output interface: where accepted events go, whatever holds them (a file now; Redis, say, later).
 *
 * An output takes one event line at a time (`write`, never blocking) into its current batch and
 * publishes the batch as a whole: at `flush()`, at the end of the tick the lines were written in, or as
 * soon as the batch passes its own size bound. `flush()` resolves once every line written before it is
 * published, that is held by the output (written to the file; for an output whose store acknowledges,
 * acknowledged), and rejects when any of them was lost: the intake answers 202 only after it. Lines of
 * several requests share a batch, so `failures` counts the failed batches and a request compares it
 * before and after its own lines. `congested` is the back-pressure signal: a writer stops after its
 * current line, flushes and waits for the next turn of the event loop before it writes more.
 *
 * An output that acknowledges (Redis) holds what it queued until its store acknowledged it, within a
 * bound of memory: past it, or when its store does not acknowledge in time, it fails the lines with an
 * {@link OutputFullError}, which the intake answers as Elastic's APM Server answers a full queue (503
 * `queue is full`; the agent retries later). So a request is answered 202 only once its events are held.
 *
 * A new output is one module here implementing {@link Output}, a branch in `openOutput` (./open.ts) and
 * its section in the settings table (../config/settings.ts); nothing in the intake or the API changes.
 */
import type {ServerConfig} from '../config/server-config.js'

/**
 * The output cannot take or hold these events now: its queue is full, or its store is down, refusing or
 * slow to acknowledge. Answered 503 `queue is full`, as Elastic's APM Server answers when its queue is full.
 */
export class OutputFullError extends Error {
  readonly code = 'EQUEUEFULL'

  constructor(message: string) {
    super(message)
    this.name = 'OutputFullError'
  }
}

/** An {@link OutputFullError}, known by its code (a class test fails across two copies of this module). */
export function isOutputFull(error: unknown): boolean {
  return (error as {code?: unknown} | undefined)?.code === 'EQUEUEFULL'
}

/** What the intake sees of an output: lines in, a flush to wait for, back-pressure and failures. */
export interface EventSink {
  /**
   * Queues one line, without its newline: a string, or the concatenation of byte parts (kept, not copied).
   * An output whose queue is full drops the line instead, counted in `failures` (an {@link OutputFullError}).
   */
  write(line: string | readonly Buffer[]): void
  /** Resolves once every line queued so far is published; rejects when publishing it failed. */
  flush(): Promise<void>
  /**
   * True when the output took enough for now: the reader then stops after the current line, calls
   * flush() and waits for the next turn of the event loop (setImmediate) before reading on.
   */
  readonly congested: boolean
  /**
   * Batches that failed so far. Lines of several requests share a batch, so a request whose lines were
   * queued while this changed may have lost some even though its own flush succeeds.
   */
  readonly failures: number
  /** the error of the latest failed batch */
  readonly lastFailure?: Error
}

/** Counts of events, for logs and monitoring. */
export interface OutputStats {
  /** events the output holds: written, or acknowledged by an output that acknowledges */
  published: number
  /** events lost in failed batches */
  failed: number
  /** events queued, not published yet */
  pending: number
  /** events sent again after a failed send (an output that retries) */
  retried?: number
  /** per host of an output with several (Redis): events sent (each try), acknowledged, sent again, given up */
  hosts?: Record<string, {published: number; acknowledged: number; retried: number; failed: number}>
}

export interface Output extends EventSink {
  /** The most bytes of events held in memory before they are published: taken out of the server's memory budget. */
  readonly maxQueuedBytes: number
  /**
   * Publishes what is queued, makes it durable (fsync, or the store's acknowledgement) and lets go.
   * Idempotent. An output that waits for a store stops trying at `deadline` (a Date.now() time) and
   * logs what it could not publish.
   */
  close(deadline?: number): Promise<void>
  stats(): OutputStats
  /**
   * Takes what a reloaded configuration changes that this output can change while it runs (a store's
   * credentials, for its new connections), after checking it works; rejects, changing nothing, when it
   * does not. Returns the changed settings that need a restart. Absent: every change needs a restart.
   */
  reload?(next: ServerConfig['output']): Promise<string[]>
}
