/**
 * What the routes share while the server runs: the configuration in force, authentication, the
 * anonymous rate limits, the memory budget, the output, the counters, and the requests in flight.
 * A reload replaces what it may through {@link ApiContext.apply}; shutdown sets `closing`.
 */
import type {ServerResponse} from 'node:http'
import type {Socket} from 'node:net'

import {RateLimitStore} from '../anonymous.js'
import {AuthCounts, Authenticator, AuthSettings} from '../auth.js'
import type {ConnectionGate} from '../connections.js'
import type {ServerConfig} from '../config/server-config.js'
import {H2_STREAM_IDLE_MS} from '../h2.js'
import {ANONYMOUS_DECODED_BYTES_PER_EVENT, ANONYMOUS_OUTPUT_BYTES_PER_EVENT, clip, MEMORY_BUDGET_BYTES, MemoryBudget} from '../limits.js'
import {type Logger, requestLogger} from '../logger.js'
import {PreviousTokenStats, PreviousTokenUses} from '../monitoring/previous-token.js'
import type {Output, OutputStats} from '../outputs/output.js'
import {InFlight} from '../shutdown.js'

export interface ServerStats {
  requests: number
  /** responses by status code */
  responses: Record<string, number>
  events: {accepted: number; invalid: number; tooLarge: number}
  /** the output's counts (RunningServer.stats() adds them) */
  output?: OutputStats
  /** how requests authenticated (RunningServer.stats() adds them) */
  auth?: AuthCounts
  /** the requests the previous token let in (RunningServer.stats() adds them) */
  previousToken?: PreviousTokenStats
}

export interface ContextOptions {
  /** milliseconds clock for the token grace period and rate limits; tests pass a fake one */
  now?: () => number
  /** request data held in memory at once, queued output included; default {@link MEMORY_BUDGET_BYTES} */
  memoryBudgetBytes?: number
  /** how long a gRPC call's stream may stay idle; default H2_STREAM_IDLE_MS (../h2.ts) */
  streamIdleMs?: number
  /** how often the previous-token summaries look at the clock; default CHECK_MS (../monitoring/previous-token.ts) */
  summaryCheckMs?: number
}

export class ApiContext {
  /** the configuration in force: host, output, TLS on/off and the monitoring endpoint stay as started (they need a restart) */
  config: ServerConfig
  /** set once shutdown began: new requests get 503, every answer closes its connection */
  closing = false
  readonly authenticator: Authenticator
  /** the requests the previous token lets in during a grace period, summarised in the log */
  readonly previousToken: PreviousTokenUses
  /** per-IP limiters of anonymous clients' events, of the bytes their events may write, and of the bytes they may send decoded */
  rateLimits: RateLimitStore
  outputLimits: RateLimitStore
  decodedLimits: RateLimitStore
  readonly memory: MemoryBudget
  readonly stats: ServerStats = {events: {accepted: 0, invalid: 0, tooLarge: 0}, requests: 0, responses: {}}
  /** the connections of the requests being read: shutdown cuts them when it runs out of time, which ends their reading */
  readonly reading = new Set<Socket>()
  readonly inFlight = new InFlight()
  /** what went wrong, for the request log line (messages only: never a document or a header) */
  readonly failures = new WeakMap<ServerResponse, string>()
  /** `logger` for the request log lines, whose fixed fields need no redaction (see requestLogger) */
  readonly requestLog: Logger
  /** the connection caps, told which connections presented the token */
  connections?: ConnectionGate
  /** how long a gRPC call's stream may stay idle before it is answered DEADLINE_EXCEEDED */
  readonly streamIdleMs: number
  private readonly now: () => number

  constructor(
    config: ServerConfig,
    readonly output: Output,
    readonly logger: Logger,
    options: ContextOptions = {},
  ) {
    this.config = config
    this.now = options.now ?? Date.now
    this.requestLog = requestLogger(logger)
    this.streamIdleMs = options.streamIdleMs ?? H2_STREAM_IDLE_MS
    this.authenticator = new Authenticator(authSettings(config), this.now)
    this.previousToken = new PreviousTokenUses(logger, this.now, options.summaryCheckMs)
    this.rateLimits = new RateLimitStore(config.anonymous.rateLimit.eventLimit, config.anonymous.rateLimit.ipLimit, this.now)
    this.outputLimits = byteLimitStore(config, ANONYMOUS_OUTPUT_BYTES_PER_EVENT, this.now)
    this.decodedLimits = byteLimitStore(config, ANONYMOUS_DECODED_BYTES_PER_EVENT, this.now)
    // The output's queue is a fixed share of the budget.
    this.memory = new MemoryBudget((options.memoryBudgetBytes ?? MEMORY_BUDGET_BYTES) - output.maxQueuedBytes)
  }

  /** Applies a reloaded configuration: a new token (with its grace period), anonymous rules, limits. */
  apply(next: ServerConfig): void {
    this.authenticator.update(authSettings(next))
    this.previousToken.watch(this.authenticator.gracePeriodEnds)
    const limits = next.anonymous.rateLimit
    if (limits.eventLimit !== this.rateLimits.eventLimit || limits.ipLimit !== this.rateLimits.ipLimit) {
      this.rateLimits = new RateLimitStore(limits.eventLimit, limits.ipLimit, this.now)
      this.outputLimits = byteLimitStore(next, ANONYMOUS_OUTPUT_BYTES_PER_EVENT, this.now)
      this.decodedLimits = byteLimitStore(next, ANONYMOUS_DECODED_BYTES_PER_EVENT, this.now)
    }

    const current = this.config
    this.config = {...next, host: current.host, monitoring: current.monitoring, output: current.output, ssl: {...next.ssl, enabled: current.ssl.enabled}}
  }

  /** An error that is not the client's doing: one log line (its stack only at debug level). */
  logBug(error: Error, message: string): void {
    const stack = this.logger.isLevelEnabled('debug') ? {'error.stack_trace': error.stack} : {}
    this.logger.error({'error.message': clip(error.message, 1024), 'error.type': error.name, ...stack}, message)
  }
}

function authSettings(config: ServerConfig): AuthSettings {
  return {anonymous: config.anonymous.enabled, secretToken: config.secretToken, secretTokenGracePeriodMs: config.secretTokenGracePeriodMs}
}

/** Per-IP limiters of bytes, `perEvent` a second per event of the anonymous rate limit: see ANONYMOUS_OUTPUT_BYTES_PER_EVENT, ANONYMOUS_DECODED_BYTES_PER_EVENT. */
function byteLimitStore(config: ServerConfig, perEvent: number, now: () => number): RateLimitStore {
  const {eventLimit, ipLimit} = config.anonymous.rateLimit
  return new RateLimitStore(eventLimit * perEvent, ipLimit, now)
}
