/**
 * Agent authentication as Elastic's APM Server does it (internal/beater/auth): `Authorization: Bearer
 * <secret token>`, anonymous access when enabled, and the same 401 messages. API keys are not supported,
 * so an `ApiKey` header fails like a wrong token.
 *
 * Tokens are never compared directly: both sides go through HMAC-SHA256 under a key made fresh for this
 * process, and the fixed-length digests are compared with `timingSafeEqual`. The time taken does not
 * depend on where the strings differ, nor on the presented token's length, and only digests are kept.
 */
import {createHmac, randomBytes, timingSafeEqual} from 'node:crypto'

import {clip} from './limits.js'

/** The 401 body for a wrong token, an `ApiKey` header, or an empty Bearer token. */
export const AUTH_FAILED = 'authentication failed'
const EXPECTED_HEADER = "expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'"
/** The 401 body for a missing header or one without a scheme and a space. */
export const AUTH_MISSING = `${AUTH_FAILED}: missing or improperly formatted Authorization header: ${EXPECTED_HEADER}`
/** The 401 body for a scheme other than Bearer and ApiKey (schemes are case-sensitive, as in Go); a long one is cut. */
export function unknownSchemeMessage(scheme: string): string {
  return `${AUTH_FAILED}: unknown Authentication header ${clip(scheme)}: ${EXPECTED_HEADER}`
}

/** `none`: no auth configured, everyone is let in; `anonymous`: no credentials, anonymous access allowed. */
export type AuthMethod = 'anonymous' | 'none' | 'secret_token'
/** `previous`: let in by the token a rotation replaced, during its grace period (../monitoring/previous-token.ts counts those). */
export type AuthOutcome = {method: AuthMethod; ok: true; previous?: true} | {message: string; ok: false}

/** How the requests that were checked authenticated, for the monitoring endpoint's stats. */
export interface AuthCounts {
  anonymous: number
  failed: number
  none: number
  previous_token: number
  secret_token: number
}

/** The outcomes of a Bearer token, by which token it matched (shared, frozen: nobody changes an outcome). */
const BEARER_OUTCOMES: Readonly<Record<'current' | 'none' | 'previous', AuthOutcome>> = Object.freeze({
  current: Object.freeze({method: 'secret_token', ok: true} as const),
  none: Object.freeze({message: AUTH_FAILED, ok: false} as const),
  previous: Object.freeze({method: 'secret_token', ok: true, previous: true} as const),
})

/** The counter of each outcome. */
const COUNTED_AS: Readonly<Record<'failed' | 'previous' | AuthMethod, keyof AuthCounts>> = Object.freeze({
  anonymous: 'anonymous',
  failed: 'failed',
  none: 'none',
  previous: 'previous_token',
  secret_token: 'secret_token',
})

/** Splits "<scheme> <credentials>" at the first space, as the Go server does; no space means no scheme. */
export function parseAuthorizationHeader(value: string | undefined): {scheme: string; credentials: string} {
  const space = value ? value.indexOf(' ') : -1
  if (!value || space <= 0) return {credentials: '', scheme: ''}
  return {credentials: value.slice(space + 1), scheme: value.slice(0, space)}
}

const HMAC_KEY = randomBytes(32)

/** HMAC-SHA256 of a token under this process's random key: 32 bytes whatever the token's length. */
export function tokenDigest(token: Buffer | string): Buffer {
  return createHmac('sha256', HMAC_KEY).update(token).digest()
}

/** Constant-time comparison of two secrets of any lengths, through their digests. */
export function secretsEqual(a: Buffer | string, b: Buffer | string): boolean {
  return timingSafeEqual(tokenDigest(a), tokenDigest(b))
}

export interface AuthSettings {
  /** undefined: no auth configured */
  secretToken?: string
  /** after a reload that changed the token, the old one is still accepted for this long */
  secretTokenGracePeriodMs: number
  /** let requests without credentials in (restricted later by agent/service and rate limit) */
  anonymous: boolean
}

/**
 * Holds the digests of the current token and, during a grace period after a rotation, of the previous
 * one. `update` applies a reloaded configuration; `authenticate` checks one request's header.
 */
export class Authenticator {
  private current?: Buffer
  /** the token a rotation replaced, valid until `until`; `since` is when the rotation was applied */
  private previous?: {digest: Buffer; since: number; until: number}
  private anonymous = false
  readonly counts: AuthCounts = {anonymous: 0, failed: 0, none: 0, previous_token: 0, secret_token: 0}

  constructor(settings: AuthSettings, private readonly now: () => number = Date.now) {
    this.update(settings)
  }

  get enabled(): boolean {
    return this.current !== undefined
  }

  /** True while a previous token is still accepted. */
  get inGracePeriod(): boolean {
    return this.previous !== undefined && this.now() < this.previous.until
  }

  /** When the running grace period ends (a `now()` time), or undefined when no previous token is accepted. */
  get gracePeriodEnds(): number | undefined {
    return this.inGracePeriod ? this.previous!.until : undefined
  }

  /**
   * Applies new settings. When the token changed and a grace period is set, the token being replaced
   * stays valid for that long. A reload that keeps the token may shorten a running grace period (to 0:
   * the replaced token is refused at once, as after a leak it must be), never lengthen it.
   * Turning auth off or on never keeps an old token: "no token" is never a token.
   */
  update(settings: AuthSettings): void {
    const next = settings.secretToken === undefined ? undefined : tokenDigest(settings.secretToken)
    const changed = next === undefined || this.current === undefined || !timingSafeEqual(next, this.current)
    if (next === undefined) {
      this.previous = undefined
    } else if (changed) {
      const now = this.now()
      this.previous =
        this.current && settings.secretTokenGracePeriodMs > 0 ? {digest: this.current, since: now, until: now + settings.secretTokenGracePeriodMs} : undefined
    } else if (this.previous) {
      const until = Math.min(this.previous.until, this.previous.since + settings.secretTokenGracePeriodMs)
      this.previous = until > this.now() ? {...this.previous, until} : undefined
    }

    this.current = next
    this.anonymous = settings.anonymous
  }

  /** Checks an Authorization header value (undefined when absent), and counts the outcome. */
  authenticate(header: string | undefined): AuthOutcome {
    const outcome = this.check(header)
    // One keyed increment whatever the outcome: a branch per outcome made the right token measurably
    // slower than a wrong one in-process (the timing torture check).
    this.counts[COUNTED_AS[outcome.ok ? (outcome.previous ? 'previous' : outcome.method) : 'failed']]++
    return outcome
  }

  private check(header: string | undefined): AuthOutcome {
    if (this.current === undefined) return {method: 'none', ok: true}
    const {credentials, scheme} = parseAuthorizationHeader(header)
    switch (scheme) {
      case '': {
        return this.anonymous ? {method: 'anonymous', ok: true} : {message: AUTH_MISSING, ok: false}
      }

      case 'ApiKey': {
        return {message: AUTH_FAILED, ok: false}
      }

      case 'Bearer': {
        // A table, not branches: the same work whichever token matched, or none.
        return BEARER_OUTCOMES[this.matches(credentials)]
      }

      default: {
        return {message: unknownSchemeMessage(scheme), ok: false}
      }
    }
  }

  /** Which token the presented one is, if any. */
  private matches(presented: string): 'current' | 'none' | 'previous' {
    const digest = tokenDigest(presented)
    const current = timingSafeEqual(digest, this.current!)
    // The previous digest is compared whenever one is held, so the timing does not tell which matched.
    const previous = this.previous ? timingSafeEqual(digest, this.previous.digest) && this.now() < this.previous.until : false
    if (this.previous && this.now() >= this.previous.until) this.previous = undefined
    return current ? 'current' : previous ? 'previous' : 'none'
  }
}
