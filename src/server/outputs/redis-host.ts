/**
 * One host of the Redis output: its connection kept up (reconnected `backoff.init` after a failure,
 * doubling up to `backoff.max`, back to `backoff.init` once connected, as Beats' backoff client does),
 * the batches it has in flight (Redis answers a pipeline in order), and its counters. A batch is one
 * RPUSH of its events (datatype list: atomic, all or none; after a cut connection, a few RPUSHes of
 * parts of it) or one PUBLISH per event (channel).
 */
import type {Logger} from '../logger.js'
import {LinkTarget, RedisLink, RedisLinkError} from './redis-link.js'

/** Events sent as one unit, until acknowledged or given up. `id`s grow in the order the events were written. */
export interface Batch {
  id: number
  /** encoded (./redis-resp.ts): one RPUSH of all its events (datatype list), or one PUBLISH per event (channel) */
  commands: Buffer[]
  /** events in it */
  events: number
  /** events in each of its commands (an RPUSH split after a cut holds part of the batch) */
  counts: number[]
  /** bytes of its commands */
  bytes: number
  /** failed sends that count against max_retries (see redis.ts) */
  tries: number
  /** PUBLISHes of a channel batch sent at once, halved by each cut connection (undefined: all of them) */
  perSend?: number
  /** set once a send of it failed: its events were all on the wire then, so each later send is a retry */
  resent: boolean
}

export interface HostEvents {
  /** the host can take a batch */
  ready(host: RedisHost): void
  /**
   * A batch was answered: `failed` holds its commands that were not acknowledged (none: all were), with
   * the events in them and the reason; `behind` when its connection had already failed a batch sent
   * before it (answers come in the order sent): it failed for the one in front, not for its own sake.
   */
  answered(host: RedisHost, batch: Batch, failed: {commands: Buffer[]; counts: number[]; events: number}, reason: RedisLinkError | undefined, behind: boolean): void
}

export interface HostOptions {
  datatype: 'channel' | 'list'
  backoff: {initMs: number; maxMs: number}
}

/** Batches one connection has in flight at most: enough to keep a round trip busy, few to resend after a failure. */
export const MAX_IN_FLIGHT = 8

export class RedisHost {
  readonly stats = {acknowledged: 0, failed: 0, published: 0, retried: 0}
  private link: RedisLink | undefined
  private state: 'closed' | 'connecting' | 'ready' | 'waiting' = 'waiting'
  private readonly inFlight = new Set<Batch>()
  /**
   * Batches in flight at most now: one after a connection failed under a batch, doubling with each
   * acknowledged send up to MAX_IN_FLIGHT. Whatever is in flight is on the wire before the first reply
   * comes back, so a link that is cut after a few KiB would cut all of it, each time, however small the
   * first batch got (a batch sent again is split: see redis.ts).
   */
  private window = MAX_IN_FLIGHT
  /** the connections lost under a batch */
  private readonly failedOn = new WeakSet<RedisLink>()
  private backoffMs: number
  private timer: NodeJS.Timeout | undefined
  /** set when Redis refused a command: no new batches; the connection is renewed once the ones in flight are answered */
  private draining = false
  /** set while the host is down after having been up (or never up): the next connection is logged */
  private down = true

  constructor(
    readonly label: string,
    private readonly target: () => LinkTarget,
    private readonly options: HostOptions,
    private readonly events: HostEvents,
    private readonly logger: Logger,
  ) {
    this.backoffMs = options.backoff.initMs
  }

  /** Connected and not draining. */
  get up(): boolean {
    return this.state === 'ready' && !this.draining
  }

  /** Up, with room in its pipeline. */
  get canTake(): boolean {
    return this.up && this.inFlight.size < this.window
  }

  private get isClosed(): boolean {
    return this.state === 'closed'
  }

  /** Batches in flight. */
  get load(): number {
    return this.inFlight.size
  }

  /** Connects now; resolves with the error when it failed (the host then retries after its backoff). */
  async connect(): Promise<RedisLinkError | undefined> {
    this.state = 'connecting'
    try {
      const link = await RedisLink.open(this.target())
      if (this.isClosed) {
        link.close()
        return undefined
      }

      this.adopt(link)
      return undefined
    } catch (error) {
      const reason = error instanceof RedisLinkError ? error : new RedisLinkError('transport', 'connection failed')
      if (!this.isClosed) this.retryLater(reason)
      return reason
    }
  }

  send(batch: Batch): void {
    const link = this.link!
    this.inFlight.add(batch)
    const sending = this.sending(batch)
    this.stats.published += sending.events
    if (batch.resent) this.stats.retried += sending.events
    void link.send(this.options.datatype === 'list' ? 'rpush' : 'publish', batch.commands.slice(0, sending.commands)).then((results) => this.answer(link, batch, results))
  }

  /**
   * What of the batch goes in this send: all of it, but of a list batch split after a cut connection
   * (several RPUSHes) only the first part, acknowledged before the next is written: written at once, the
   * parts would all be on the wire again before the first reply, and cut again with it. Of a channel
   * batch, its first perSend PUBLISHes.
   */
  sending(batch: Batch): {commands: number; events: number} {
    if (this.options.datatype === 'channel') {
      // One event a PUBLISH: after a cut, the first perSend of them, for the same reason.
      const commands = Math.min(batch.commands.length, batch.perSend ?? Infinity)
      return {commands, events: commands}
    }

    if (batch.commands.length === 1) return {commands: 1, events: batch.events}
    return {commands: 1, events: batch.counts[0]}
  }

  /**
   * At a stop: a host waiting out its backoff (up to backoff.max, 60 s) reconnects now, and from
   * backoff.init again, so what is queued is retried until the shutdown deadline, not dropped at it.
   */
  hurry(): void {
    this.backoffMs = this.options.backoff.initMs
    if (this.state !== 'waiting') return
    clearTimeout(this.timer)
    void this.connect()
  }

  /** Stops reconnecting and closes the connection: what is in flight fails. */
  close(): void {
    this.state = 'closed'
    clearTimeout(this.timer)
    this.link?.close()
  }

  private answer(link: RedisLink, batch: Batch, results: Array<RedisLinkError | undefined>): void {
    this.inFlight.delete(batch)
    // An RPUSH is all or none; each PUBLISH is one event. Commands past the results were not in this send.
    const failedAt = batch.commands.map((_command, index) => index).filter((index) => index >= results.length || results[index] !== undefined)
    const commands = failedAt.map((index) => batch.commands[index])
    const counts = failedAt.map((index) => batch.counts[index])
    const events = counts.reduce((sum, count) => sum + count, 0)
    const reason = results.find((result) => result !== undefined)
    this.stats.acknowledged += batch.events - events
    if (reason?.kind === 'transport' && !reason.unsent) this.window = 1
    else if (events < batch.events) this.window = Math.min(this.window * 2, MAX_IN_FLIGHT)
    if (reason?.unsent) {
      // Not written after all (the connection was gone): not counted as sent.
      const {events: sent} = this.sending(batch)
      this.stats.published -= sent
      if (batch.resent) this.stats.retried -= sent
    }
    // A refusal (WRONGTYPE, OOM, NOPERM, LOADING...): finish what is in flight, then a new connection after the backoff, as Beats does.
    if (reason?.kind === 'refused' && link === this.link && !this.draining) {
      this.draining = true
      this.logger.warn({'error.message': reason.message, 'redis.host': this.label}, 'redis output: Redis refused a batch; reconnecting after the backoff')
    }

    // A refusal is the batch's own; a lost connection is charged to the first batch it failed.
    const lost = reason?.kind === 'transport' && !reason.unsent
    const behind = lost && this.failedOn.has(link)
    if (lost) this.failedOn.add(link)
    this.events.answered(this, batch, {commands, counts, events}, reason, behind)
    if (this.draining && this.inFlight.size === 0 && link === this.link) link.close(reason)
    else if (this.canTake) this.events.ready(this)
  }

  private adopt(link: RedisLink): void {
    this.link = link
    this.state = 'ready'
    this.draining = false
    this.backoffMs = this.options.backoff.initMs
    link.onClose = (reason) => {
      if (this.link !== link) return
      this.link = undefined
      if (this.state !== 'closed') this.retryLater(reason)
    }
    if (this.down) this.logger.info({'redis.host': this.label}, 'redis output: connected')
    this.down = false
    this.events.ready(this)
  }

  private retryLater(reason: RedisLinkError): void {
    this.state = 'waiting'
    this.down = true
    const level = reason.kind === 'auth' ? 'error' : 'warn'
    this.logger[level]({'error.message': reason.message, 'event.duration': this.backoffMs * 1e6, 'redis.host': this.label}, `redis output: no connection; trying again in ${this.backoffMs / 1000} s`)
    clearTimeout(this.timer)
    this.timer = setTimeout(() => void this.connect(), this.backoffMs)
    this.timer.unref()
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.backoff.maxMs)
  }
}
