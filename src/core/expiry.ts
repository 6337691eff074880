/**
 * Expiry of keystore entries: reading `--expires` (a duration from now, or a date), the clock it is
 * judged by, and how soon is "soon". The times themselves live in the native keystore's metadata.
 */
import {KeystoreError} from './errors.js'

/** A referenced secret that expires within this is warned about (test config, run). */
export const EXPIRY_WARNING_MS = 14 * 24 * 60 * 60 * 1000

const DAY_MS = 24 * 60 * 60 * 1000
/** Far enough for any rotation policy, near enough that a typo (90000d) is caught. */
const MAX_AHEAD_MS = 100 * 366 * DAY_MS
const UNITS: Record<string, number> = {d: DAY_MS, h: 60 * 60 * 1000, w: 7 * DAY_MS}
const DURATION = /^([1-9]\d{0,5})([dhw])$/
const DATE = /^\d{4}-\d{2}-\d{2}$/
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})$/

/**
 * The variable that fixes "now" for expiry, in tests only: an ISO 8601 time. Whoever honours it says so
 * in a warning line, so that it cannot silently hide an expired secret in production.
 */
export const TEST_NOW_ENV = 'APM_SERVER_TEST_NOW'

export interface Clock {
  now: number
  /** set when TEST_NOW_ENV fixed `now`: the warning to print */
  warning?: string
}

/** Now, or the time TEST_NOW_ENV gives (with its warning). */
export function clockOf(env: NodeJS.ProcessEnv): Clock {
  const text = env[TEST_NOW_ENV]
  if (!text) return {now: Date.now()}
  const now = Date.parse(text)
  if (!DATE_TIME.test(text) || Number.isNaN(now)) {
    throw new KeystoreError('EUSAGE', `${TEST_NOW_ENV} is not an ISO 8601 time such as 2027-03-01T00:00:00Z; unset it (it is for tests only)`)
  }

  return {now, warning: `${TEST_NOW_ENV} is set: expiry is judged as of ${new Date(now).toISOString()}; it is for tests only, unset it`}
}

/**
 * `--expires`: a duration from `now` (`90d`, `12w`, `36h`) or a date (`2027-03-01`, midnight UTC) or an
 * ISO 8601 time with its zone; in the future, at most 100 years ahead. Returns ms since the epoch.
 */
export function parseExpires(text: string, now: number): number {
  const duration = DURATION.exec(text)
  let at: number
  if (duration) at = now + Number(duration[1]) * UNITS[duration[2]]
  else if (DATE.test(text) || DATE_TIME.test(text)) at = Date.parse(DATE.test(text) ? `${text}T00:00:00Z` : text)
  else at = Number.NaN
  // Date.parse accepts 2027-02-30 as March 2nd: a date must read back as written.
  if (Number.isNaN(at) || (DATE.test(text) && new Date(at).toISOString().slice(0, 10) !== text)) {
    throw new KeystoreError('EUSAGE', `--expires ${JSON.stringify(text.slice(0, 40))} is neither a duration (90d, 12w, 36h) nor a date (2027-03-01, or 2027-03-01T12:00:00Z); give one of those`)
  }

  if (at <= now) throw new KeystoreError('EUSAGE', `--expires ${text} is not in the future (now is ${new Date(now).toISOString()}); give a later date`)
  if (at - now > MAX_AHEAD_MS) throw new KeystoreError('EUSAGE', `--expires ${text} is more than 100 years ahead; give a nearer date`)
  return at
}

export type ExpiryState = 'expired' | 'soon' | 'later'

/** Whether `at` has passed, comes within {@link EXPIRY_WARNING_MS}, or is later. */
export function expiryState(at: number, now: number): ExpiryState {
  return at <= now ? 'expired' : at - now <= EXPIRY_WARNING_MS ? 'soon' : 'later'
}

/** "in 3 days", "in 5 hours", "2 days ago": how far `at` is from `now`, for messages. */
export function describeDistance(at: number, now: number): string {
  const ms = Math.abs(at - now)
  const [count, unit] = ms >= DAY_MS ? [Math.floor(ms / DAY_MS), 'day'] : [Math.floor(ms / 3_600_000), 'hour']
  const text = count === 0 ? 'less than an hour' : `${count} ${unit}${count === 1 ? '' : 's'}`
  return at > now ? `in ${text}` : `${text} ago`
}
