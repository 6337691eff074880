/**
 * Browser (RUM) intake rules, as Elastic's APM Server applies them: CORS per `apm-server.rum.allow_origins`,
 * anonymous access restricted by agent and service name, and a per-IP event rate limit for anonymous
 * clients (429 when exceeded). Decisions only: the server writes the responses.
 */
import {clip} from './limits.js'

/** 403 body when RUM is off (internal/beater/api/mux.go, rumMiddleware). */
export const RUM_DISABLED_MESSAGE =
  'forbidden request: RUM endpoint is disabled. Configure the `apm-server.rum` section in apm-server.yml to enable ingestion of RUM events. ' +
  'If you are not using the RUM agent, you can safely ignore this error.'

/** 429 body (ratelimit.ErrRateLimitExceeded behind the "too many requests" keyword). */
export const RATE_LIMITED_MESSAGE = 'too many requests: rate limit exceeded'
/** the per-stream error when the limit runs out part way through a request */
export const RATE_LIMIT_EXCEEDED = 'rate limit exceeded'

const CORS_ALLOWED_HEADERS = ['Content-Type', 'Content-Encoding', 'Accept']

/** go-glob semantics: `*` matches any run of characters (also none); nothing else is special. */
export function globMatch(pattern: string, subject: string): boolean {
  if (pattern === '*') return true
  const parts = pattern.split('*')
  if (parts.length === 1) return pattern === subject
  const first = parts[0]
  const last = parts.at(-1)!
  if (!subject.startsWith(first)) return false
  let position = first.length
  for (const middle of parts.slice(1, -1)) {
    const found = subject.indexOf(middle, position)
    if (found === -1) return false
    position = found + middle.length
  }

  return subject.length - position >= last.length && subject.endsWith(last)
}

export type CorsDecision =
  | {headers: Record<string, string>; kind: 'allowed'}
  | {headers: Record<string, string>; kind: 'preflight'}
  | {kind: 'forbidden'; message: string}

/** What CORS says about a request to a RUM endpoint (cors_middleware.go). */
export function corsDecision(method: string, origin: string | undefined, allowOrigins: readonly string[]): CorsDecision {
  const received = origin ?? ''
  const valid = allowOrigins.some((allowed) => globMatch(allowed, received))
  if (method === 'OPTIONS') {
    return {
      headers: {
        ...(valid ? {'Access-Control-Allow-Origin': received} : {}),
        'Access-Control-Allow-Headers': CORS_ALLOWED_HEADERS.join(', '),
        'Access-Control-Allow-Methods': 'POST, OPTIONS',
        'Access-Control-Expose-Headers': 'Etag',
        'Access-Control-Max-Age': '3600',
        Vary: 'Origin',
      },
      kind: 'preflight',
    }
  }

  if (valid) return {headers: {'Access-Control-Allow-Origin': received}, kind: 'allowed'}
  return {kind: 'forbidden', message: `forbidden request: origin: '${clip(received)}' is not allowed`}
}

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
