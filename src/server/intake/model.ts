/**
 * The event model of the intake: the event types an agent sends, the result of reading a request (what
 * was accepted, what was rejected and why) and the errors it lists, with Elastic's APM Server's messages.
 * Every wire format (intake v2 now; OTLP later) reports in these terms.
 */

export const EVENT_TYPES = new Set(['error', 'log', 'metricset', 'span', 'transaction'])
/** Go's InvalidInputError message for an oversized line (the wording, with its full stop). */
export const EVENT_TOO_LARGE = 'event exceeded the permitted size.'
/** At most this many per-line errors are listed; a request-ending error is added after them, as in Go. */
export const MAX_LISTED_ERRORS = 5

export interface IntakeError {
  message: string
  document?: string
}

export interface IntakeResult {
  /** 202 when all went well, else the highest status among the errors (400, 403, 429, 500) */
  status: number
  accepted: number
  /** listed errors (see MAX_LISTED_ERRORS) */
  errors: IntakeError[]
  /** counts of every rejected line, listed or not */
  invalid: number
  tooLarge: number
  /** true when reading stopped before the end of the body */
  stopped: boolean
}


/** A request that ends before its body is read, with one error. */
export function failure(status: number, message: string): IntakeResult {
  return {accepted: 0, errors: [{message}], invalid: 0, status, stopped: true, tooLarge: 0}
}

/** The response body: `{"accepted": N, "errors": [...]}` on failure, `{"accepted": N}` with ?verbose, else none. */
export function intakeResponseBody(result: IntakeResult, verbose: boolean): undefined | {accepted: number; errors?: IntakeError[]} {
  if (result.status >= 400) return {accepted: result.accepted, errors: result.errors}
  return verbose ? {accepted: result.accepted} : undefined
}
