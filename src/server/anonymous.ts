/**
 * The rules for anonymous clients (RUM agents without a token), as Elastic's APM Server applies them:
 * who they may send data for (agent and service names), and per-IP token buckets for their event rate
 * (429 when exceeded). Decisions only: the API and the intake write the responses.
 */
import {clip} from './limits.js'

/** 429 body (ratelimit.ErrRateLimitExceeded behind the "too many requests" keyword). */
export const RATE_LIMITED_MESSAGE = 'too many requests: rate limit exceeded'
/** the per-stream error when the limit runs out part way through a request */
export const RATE_LIMIT_EXCEEDED = 'rate limit exceeded'

/**
 * Anonymous clients may only send data for the configured agents and services (an empty list allows
 * any). Returns the stream error message when not allowed.
 */
export function anonymousIngestDenied(allowAgent: readonly string[], allowService: readonly string[], agent: string, service: string): string | undefined {
  if (allowAgent.length > 0 && !allowAgent.includes(agent)) return `unauthorized: anonymous access not permitted for agent ${JSON.stringify(clip(agent))}`
  if (allowService.length > 0 && !allowService.includes(service)) return `unauthorized: anonymous access not permitted for service ${JSON.stringify(clip(service))}`
  return undefined
}

/** A token bucket: `rate` tokens a second, holding at most `burst`. */
export class TokenBucket {
  private tokens: number
  private last: number

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.tokens = burst
    this.last = now()
  }

  allow(count = 1): boolean {
    const now = this.now()
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate)
    this.last = now
    if (this.tokens < count) return false
    this.tokens -= count
    return true
  }
}

/** Burst allowance as a multiple of the per-second limit, as the Go server's rate limit store uses. */
const BURST_FACTOR = 3

/**
 * Rate limiters per client IP, at most `ipLimit` of them (least recently used evicted). As in the Go
 * server, the limiter of an evicted IP is handed to the new one rather than a full fresh bucket, so
 * cycling through many addresses does not reset the allowance.
 */
export class RateLimitStore {
  private readonly limiters = new Map<string, TokenBucket>()

  constructor(
    readonly eventLimit: number,
    readonly ipLimit: number,
    private readonly now: () => number = Date.now,
  ) {}

  forIP(ip: string): TokenBucket {
    let limiter = this.limiters.get(ip)
    if (limiter) {
      this.limiters.delete(ip) // re-insert: Map order is the recency order
    } else if (this.limiters.size >= Math.max(1, this.ipLimit)) {
      const [oldest, reused] = this.limiters.entries().next().value as [string, TokenBucket]
      this.limiters.delete(oldest)
      limiter = reused
    } else {
      limiter = new TokenBucket(this.eventLimit, this.eventLimit * BURST_FACTOR, this.now)
    }

    this.limiters.set(ip, limiter)
    return limiter
  }
}
