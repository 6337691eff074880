/**
 * The Redis output (Beats' `output.redis`): each accepted event is one element of a Redis list (RPUSH)
 * or one message on a channel (PUBLISH), the same ndjson document the file output writes as a line.
 *
 * At least once: `flush()` resolves only once Redis acknowledged every event written before it, so an
 * event answered 202 is in Redis. Events are batched (at most `bulk_max_size` a batch, cut at the end
 * of the tick they were written in or at a flush) and pipelined to the hosts (./redis-host.ts): to the
 * least busy connected host with `loadbalance`, else to one host until it fails. A batch whose send
 * fails is sent again, ahead of newer ones, to whichever host is up (an RPUSH a cut connection failed,
 * in halves, alone on its connection, and PUBLISHes half as many at a time: a link that carries only a
 * few KiB still carries them); after
 * `max_retries` sends in a row that got none of it acknowledged, not counting a cut RPUSH that could be
 * halved, it is dropped (never an event answered 202: its request's flush rejects). An acknowledged
 * batch or part is never sent again.
 *
 * Bounded: events not yet acknowledged are held up to {@link QUEUE_BYTES}; past it a write is refused,
 * and a flush that Redis does not answer within `timeout` rejects. Both are {@link OutputFullError}s:
 * the intake answers 503 `queue is full` and the agent retries later, while the server goes on serving
 * and the hosts reconnect with their backoff. On close, what is queued is retried until the deadline;
 * what is then still unacknowledged is counted in the log.
 */
import {KeystoreError} from '../../core/errors.js'
import type {RedisOutputConfig, ServerConfig} from '../config/server-config.js'
import type {Logger} from '../logger.js'
import {Output, OutputFullError, OutputStats} from './output.js'
import {Batch, RedisHost} from './redis-host.js'
import {hostCredentials, LinkTarget, RedisLink, RedisLinkError} from './redis-link.js'
import {encodeCommand, lineLength, LineParts, splitCommand} from './redis-resp.js'
import {readTlsOptions, TlsByHost} from './redis-tls.js'

/** Events held until Redis acknowledged them, at most (the client's encoded copy in flight comes on top: see maxQueuedBytes). */
export const QUEUE_BYTES = 32 * 1024 * 1024
/** A batch is cut at this size whatever bulk_max_size says: one RPUSH stays a few MiB. */
export const BATCH_MAX_BYTES = 4 * 1024 * 1024

const RPUSH = Buffer.from('RPUSH')
const PUBLISH = Buffer.from('PUBLISH')

/** The batch being written: its lines as the intake gave them, encoded into commands once it is sealed. */
interface OpenBatch {
  id: number
  lines: LineParts[]
  bytes: number
}

interface Waiter {
  /** the id of the last batch written before the flush */
  through: number
  resolve: () => void
  reject: (error: Error) => void
  timer: NodeJS.Timeout
}

/** The credentials in force: output.redis.username/password, and each host URL's own. */
interface Credentials {
  username?: string
  password?: string
  hosts: Array<{username?: string; password?: string}>
}

function credentialsOf(config: RedisOutputConfig): Credentials {
  return {hosts: config.hosts.map(({password, username}) => ({password, username})), password: config.password, username: config.username}
}

export class RedisOutput implements Output {
  /** Our queue, and as much again for the copies the client encodes and the socket holds while a batch is in flight. */
  readonly maxQueuedBytes = 2 * QUEUE_BYTES
  private readonly hosts: RedisHost[]
  private open: OpenBatch
  private readonly key: Buffer
  private nextId = 1
  /** sealed batches waiting for a host, oldest first (a batch sent again goes first) */
  private readonly ready: Batch[] = []
  /** every batch not yet acknowledged or given up, by id (so in the order written) */
  private readonly unsettled = new Map<number, Batch>()
  private queuedBytes = 0
  private waiters: Waiter[] = []
  private scheduled: NodeJS.Immediate | undefined
  private active: RedisHost | undefined
  private turn = 0
  private failureCount = 0
  private latestFailure: Error | undefined
  private readonly counts = {failed: 0, published: 0, retried: 0}
  private closed = false
  private drained: (() => void) | undefined
  private credentials: Credentials

  private constructor(
    private readonly config: RedisOutputConfig,
    tls: TlsByHost,
    private readonly logger: Logger,
  ) {
    this.credentials = credentialsOf(config)
    this.open = this.newBatch()
    this.key = Buffer.from(config.key)
    const options = {backoff: config.backoff, datatype: config.datatype}
    this.hosts = config.hosts.map(
      (host, index) =>
        new RedisHost(host.label, () => this.targetOf(index, tls), options, {answered: (from, batch, failed, reason, behind) => this.answered(from, batch, failed, reason, behind), ready: () => this.pump()}, logger),
    )
  }

  /**
   * Connects to every host (within `timeout`) before taking events. A host that refuses the credentials
   * or the database fails the start (ECONFIG); one that cannot be reached is logged and retried.
   */
  static async open(config: RedisOutputConfig, logger: Logger): Promise<RedisOutput> {
    const output = new RedisOutput(config, readTlsOptions(config), logger)
    const results = await Promise.all(output.hosts.map((host) => host.connect()))
    const refused = results.findIndex((result) => result !== undefined && result.kind !== 'transport')
    if (refused !== -1) {
      await output.close(Date.now())
      const setting = results[refused]!.kind === 'auth' ? 'output.redis.password (and username)' : 'output.redis.db and the ACL rules'
      throw new KeystoreError('ECONFIG', `redis host ${config.hosts[refused].label}: ${results[refused]!.message}; check ${setting}`)
    }

    return output
  }

  get congested(): boolean {
    return this.queuedBytes >= QUEUE_BYTES / 2
  }

  get failures(): number {
    return this.failureCount
  }

  get lastFailure(): Error | undefined {
    return this.latestFailure
  }

  write(line: string | readonly Buffer[]): void {
    if (this.closed) throw new Error('the output is closed')
    // The parts are kept as given (the metadata head and the event's bytes) until the batch is encoded.
    const parts = typeof line === 'string' ? [Buffer.from(line)] : line
    const bytes = lineLength(parts)
    if (this.queuedBytes + bytes > QUEUE_BYTES) {
      this.fail(1, new OutputFullError(`the Redis output's queue is full (${QUEUE_BYTES / 2 ** 20} MiB not yet acknowledged by Redis)`))
      return
    }

    this.open.lines.push(parts)
    this.open.bytes += bytes
    this.queuedBytes += bytes
    const {bulkMaxSize} = this.config
    if ((bulkMaxSize > 0 && this.open.lines.length >= bulkMaxSize) || this.open.bytes >= BATCH_MAX_BYTES) this.seal()
    else this.scheduled ??= setImmediate(() => this.seal())
  }

  /** Resolves once Redis acknowledged every event written so far; rejects when one is given up or Redis does not answer within `timeout`. */
  flush(): Promise<void> {
    this.seal()
    // The last batch sealed, not the open one (its id is taken): events written after this flush go
    // there, and waiting for them made a request wait on (and time out behind) another request's events.
    const through = this.open.id - 1
    if (!this.pendingThrough(through)) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter.timer !== timer)
        reject(new OutputFullError(`Redis did not acknowledge the events within ${this.config.timeoutMs / 1000} s (output.redis.timeout)`))
      }, this.config.timeoutMs)
      this.waiters.push({reject, resolve, through, timer})
    })
  }

  async close(deadline = Date.now() + this.config.timeoutMs): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.seal()
    if (this.unsettled.size > 0) {
      for (const host of this.hosts) host.hurry()
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        new Promise<void>((resolve) => {
          this.drained = resolve
        }),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))
        }),
      ])
      clearTimeout(timer)
    }

    const left = [...this.unsettled.values()].reduce((sum, batch) => sum + batch.events, 0)
    for (const host of this.hosts) host.close()
    if (left > 0) {
      this.logger.warn({'events.unacknowledged': left}, `redis output: ${left} events were not acknowledged by Redis before the shutdown timeout; they may be missing`)
      for (const batch of this.unsettled.values()) this.giveUp(batch, batch.events, new OutputFullError('the output closed before Redis acknowledged the events'))
    }

    this.logger.info({hosts: this.stats().hosts}, 'redis output: closed')
  }

  stats(): OutputStats {
    const hosts: NonNullable<OutputStats['hosts']> = {}
    for (const host of this.hosts) hosts[host.label] = {...host.stats}
    let pending = 0
    for (const batch of this.unsettled.values()) pending += batch.events
    return {failed: this.counts.failed, hosts, pending, published: this.counts.published, retried: this.counts.retried}
  }

  /**
   * A reload may change the credentials (a rotated password): they are tried on a new connection to
   * every host first, and taken for later connections only when no host refuses them and one accepts
   * them; the connections running keep theirs. Any other change of output.redis needs a restart.
   */
  async reload(next: ServerConfig['output']): Promise<string[]> {
    if (!next.redis) return ['output.redis']
    if (JSON.stringify(withoutCredentials(next.redis)) !== JSON.stringify(withoutCredentials(this.config))) return ['output.redis']
    const credentials = credentialsOf(next.redis)
    if (JSON.stringify(credentials) === JSON.stringify(this.credentials)) return []
    await checkCredentials(next.redis, readTlsOptions(next.redis))
    this.credentials = credentials
    this.logger.info('redis output: new credentials checked on every host that answered; new connections use them')
    return []
  }

  private targetOf(index: number, tls: TlsByHost): LinkTarget {
    return linkTarget(this.config, index, this.credentials, tls)
  }

  private newBatch(): OpenBatch {
    return {bytes: 0, id: this.nextId++, lines: []}
  }

  /** The batch being written is complete: queued for a host, and a new one started. */
  private seal(): void {
    if (this.scheduled) clearImmediate(this.scheduled)
    this.scheduled = undefined
    const {bytes: lineBytes, id, lines} = this.open
    if (lines.length === 0) return
    this.open = this.newBatch()
    // Encoded once, here: the lines' parts are let go, and a batch sent again is sent as it is.
    const commands = this.config.datatype === 'list' ? [encodeCommand(RPUSH, this.key, lines)] : lines.map((line) => encodeCommand(PUBLISH, this.key, [line]))
    let bytes = 0
    for (const command of commands) bytes += command.length
    this.queuedBytes += bytes - lineBytes
    const counts = this.config.datatype === 'list' ? [lines.length] : lines.map(() => 1)
    const batch: Batch = {bytes, commands, counts, events: lines.length, id, resent: false, tries: 0}
    this.unsettled.set(id, batch)
    this.ready.push(batch)
    this.pump()
  }

  /** Hands waiting batches to hosts that can take them. */
  private pump(): void {
    while (this.ready.length > 0) {
      const host = this.pick()
      if (!host) return
      host.send(this.ready.shift()!)
    }
  }

  private pick(): RedisHost | undefined {
    const candidates = this.hosts.filter((host) => host.canTake)
    if (candidates.length === 0) return undefined
    if (!this.config.loadbalance) {
      // One host until it is down, then another at random (Beats' failover mode).
      if (!this.active?.up) this.active = candidates[Math.floor(Math.random() * candidates.length)]
      return this.active.canTake ? this.active : undefined
    }

    const least = Math.min(...candidates.map((host) => host.load))
    const idle = candidates.filter((host) => host.load === least)
    return idle[this.turn++ % idle.length]
  }

  private answered(host: RedisHost, batch: Batch, failed: {commands: Buffer[]; counts: number[]; events: number}, reason: RedisLinkError | undefined, behind: boolean): void {
    this.counts.published += batch.events - failed.events
    if (failed.events === 0) {
      this.settle(batch)
      return
    }

    // A send the connection never wrote (it was already gone) is no try: back in line as it was.
    if (reason?.unsent) {
      this.requeue(batch)
      this.pump()
      return
    }

    // Retried: the events this send carried and lost (what it sent less what Redis acknowledged), not the
    // parts of a split batch waiting their turn, which were counted again after every part acknowledged.
    const sent = host.sending(batch)
    const lost = reason === undefined ? 0 : sent.events - (batch.events - failed.events)
    // Sent again, but only what Redis did not acknowledge; after a cut connection, each RPUSH in halves.
    const {commands, counts} = reason?.kind === 'transport' ? halves(failed) : failed
    let bytes = 0
    for (const command of commands) bytes += command.length
    this.queuedBytes -= batch.bytes - bytes
    batch.commands = commands
    batch.counts = counts
    // A try is a send that got nothing acknowledged, for its own sake: one that got part of the batch
    // through made progress, and what is left has its max_retries again (bounded: every such send takes
    // events off the batch); one behind another batch its connection failed lost only its turn (bounded:
    // each failed connection charges the first batch it failed). An RPUSH of several events that a cut
    // connection failed is no try either: its halves are the next one (bounded: log2 of its events).
    // Counted, a batch of 1 MiB through a link cut after 64 KiB was given up before a part small enough
    // went through.
    // PUBLISHes are one event each: a channel batch's next send after a cut carries half as many of them
    // (its PUBLISHes, all written at once, were cut the same way however often they were sent).
    const halved = reason?.kind === 'transport' && (this.config.datatype === 'list' ? failed.counts[0] > 1 : sent.commands > 1)
    if (halved && this.config.datatype === 'channel') batch.perSend = Math.floor(sent.commands / 2)
    // (A send that failed had all the batch's events on the wire: a split batch's rest was in the RPUSH
    // that was cut. Every later send of them is a retry, for the host's count, whatever max_retries says.)
    if (reason !== undefined) batch.resent = true
    if (failed.events < batch.events) batch.tries = 0
    else if (!behind && !halved) batch.tries++
    batch.events = failed.events
    batch.bytes = bytes
    const {maxRetries} = this.config
    if (maxRetries >= 0 && batch.tries > maxRetries) {
      host.stats.failed += failed.events
      this.giveUp(batch, failed.events, new OutputFullError(`Redis did not acknowledge ${failed.events} events after ${batch.tries} sends: ${reason?.message ?? 'no reply'}`))
      return
    }

    this.counts.retried += lost
    this.requeue(batch)
    this.pump()
  }

  /**
   * Back in line in the order written (the oldest batch first, before every newer one): the batches of a
   * cut connection fail in the order sent, and each put first in turn went back reversed, the oldest
   * last, the one every later flush waits for.
   */
  private requeue(batch: Batch): void {
    const before = this.ready.findIndex((other) => other.id > batch.id)
    if (before === -1) this.ready.push(batch)
    else this.ready.splice(before, 0, batch)
  }

  private settle(batch: Batch): void {
    this.unsettled.delete(batch.id)
    this.queuedBytes -= batch.bytes
    this.wake()
  }

  private giveUp(batch: Batch, events: number, error: OutputFullError): void {
    this.fail(events, error)
    for (const waiter of this.waiters) if (waiter.through >= batch.id) this.release(waiter, error)
    this.settle(batch)
  }

  private fail(events: number, error: OutputFullError): void {
    this.failureCount++
    this.counts.failed += events
    this.latestFailure = error
  }

  /** Resolves the flushes whose batches are all acknowledged. */
  private wake(): void {
    const oldest = this.unsettled.keys().next().value
    for (const waiter of this.waiters) if (oldest === undefined || oldest > waiter.through) this.release(waiter)
    if (this.unsettled.size === 0) this.drained?.()
  }

  private release(waiter: Waiter, error?: Error): void {
    clearTimeout(waiter.timer)
    this.waiters = this.waiters.filter((other) => other !== waiter)
    if (error) waiter.reject(error)
    else waiter.resolve()
  }

  private pendingThrough(id: number): boolean {
    const oldest = this.unsettled.keys().next().value
    return oldest !== undefined && oldest <= id
  }
}

/**
 * Each RPUSH of more than one event as two, half its events each: a connection that is cut after a few
 * KiB (a proxy, a load balancer, a flaky link) fails an RPUSH bigger than what it carries every time,
 * however often it is sent, and every command behind it; halves get through, the first ones at least.
 */
function halves(failed: {commands: Buffer[]; counts: number[]}): {commands: Buffer[]; counts: number[]} {
  const commands: Buffer[] = []
  const counts: number[] = []
  for (const [index, command] of failed.commands.entries()) {
    const count = failed.counts[index]
    const split = count > 1 ? splitCommand(command) : undefined
    if (split) {
      commands.push(...split)
      counts.push(Math.floor(count / 2), count - Math.floor(count / 2))
    } else {
      commands.push(command)
      counts.push(count)
    }
  }

  return {commands, counts}
}

/** Where host `index` is, with the credentials in force (a URL's own win). */
function linkTarget(config: RedisOutputConfig, index: number, credentials: Credentials, tls: TlsByHost): LinkTarget {
  const host = config.hosts[index]
  return {
    db: config.db,
    host: host.host,
    port: host.port,
    timeoutMs: config.timeoutMs,
    ...hostCredentials(credentials.hosts[index], credentials),
    ...(tls[index] === undefined ? {} : {tls: tls[index]}),
  }
}

/**
 * Connects to every host with `config`'s credentials: rejects (ECONFIG) when a host refuses them, or
 * when no host answers at all (nothing could be checked); resolves once at least one accepted them.
 */
export async function checkCredentials(config: RedisOutputConfig, tls: TlsByHost): Promise<void> {
  const credentials = credentialsOf(config)
  const results = await Promise.all(
    config.hosts.map(async (_host, index) => {
      try {
        ;(await RedisLink.open(linkTarget(config, index, credentials, tls))).close()
        return undefined
      } catch (error) {
        return error instanceof RedisLinkError ? error : new RedisLinkError('transport', 'connection failed')
      }
    }),
  )
  const refused = results.findIndex((result) => result !== undefined && result.kind !== 'transport')
  if (refused !== -1) {
    throw new KeystoreError('ECONFIG', `redis host ${config.hosts[refused].label}: ${results[refused]!.message}; the new output.redis credentials are not taken (the running connections keep theirs): check the password and username`)
  }

  if (results.every((result) => result !== undefined)) {
    throw new KeystoreError('ECONFIG', `cannot check the new output.redis credentials: no Redis host answered (${results[0]!.message}); reload again once Redis is reachable`)
  }
}

/** The settings whose change a running Redis output cannot take: all but the credentials. */
function withoutCredentials(config: RedisOutputConfig): unknown {
  const {password: _password, username: _username, ...rest} = config
  return {...rest, hosts: config.hosts.map(({password: _p, username: _u, ...host}) => host)}
}
