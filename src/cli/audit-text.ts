/**
 * The audit trail for a person (`keystore audit`): one line per entry, and the verdict of --verify.
 */
import type {AuditReport} from '../core/audit-verify.js'

/** One entry of the trail, as `keystore audit --json` gives it. */
export interface AuditLineResult {
  line: number
  time: null | string
  uid: null | number
  user: null | string
  host: null | string
  pid: null | number
  command: null | string
  keys: string[]
  result: null | string
  /** the error code of a refused change, else null */
  error: null | string
  /** the keystore records the line, so its change happened; always false for a refusal (result failed) */
  confirmed: boolean
}

/**
 * Every recorded string on its way to a terminal: control characters (C0, DEL, C1) escaped as JSON
 * escapes them, so a line that got past the reader's checks, or a field added later, can never move
 * the cursor, conceal text or start a new line of fabricated history.
 */
export function printable(text: null | string): string {
  if (text === null) return '?'
  // eslint-disable-next-line no-control-regex -- control characters are what it escapes
  return text.replaceAll(/[\u0000-\u001F\u007F-\u009F]/g, (char) => ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

const ESCAPES: Record<string, string> = {'\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t'}

/** Key names in a human line: a few, then a count. */
function describeKeys(keys: string[]): string {
  const shown = keys.slice(0, 5).map((key) => printable(key)).join(', ')
  return keys.length <= 5 ? shown : `${shown} and ${keys.length - 5} more`
}

export function describeEntry(entry: AuditLineResult, anchored: boolean): string {
  if (entry.command === null) return `${entry.line}  (not an audit line)`
  const who = `${printable(entry.user)} (uid ${entry.uid ?? '?'}) on ${printable(entry.host)}, pid ${entry.pid}`
  const outcome = entry.result === 'failed' ? `failed (${printable(entry.error ?? 'unknown error')})` : 'ok'
  const note = anchored && !entry.confirmed && entry.result === 'ok' ? ', not confirmed by the keystore (its command stopped before writing the keystore)' : ''
  return `${entry.line}  ${printable(entry.time)}  ${who}: ${printable(entry.command)}${entry.keys.length > 0 ? ` ${describeKeys(entry.keys)}` : ''}: ${outcome}${note}`
}

/** The verdict of a trail that verified. */
export function describeVerified(report: AuditReport): string {
  if (!report.exists || report.entries.length === 0) return `No audit trail at ${report.file} yet: the keystore records none.`
  const partial = report.partialBytes > 0 ? `; a half-written last line (${report.partialBytes} bytes, a command stopped while writing it) is removed by the next change` : ''
  if (!report.anchor) return `Audit trail ${report.file}: ${report.entries.length} lines, chained; not anchored (a Beats v1 keystore cannot record it: "keystore upgrade" anchors it)${partial}.`
  const confirmed = report.entries.filter((entry) => entry.confirmed).length
  const refused = report.entries.filter((entry) => entry.record?.result === 'failed').length
  const unconfirmed = report.entries.length - confirmed - refused
  const counts = [`${confirmed} change${confirmed === 1 ? '' : 's'} confirmed by the keystore`, ...(refused > 0 ? [`${refused} refused`] : []), ...(unconfirmed > 0 ? [`${unconfirmed} not confirmed`] : [])]
  return `Audit trail ${report.file} OK: ${report.entries.length} lines, ${counts.join(', ')}${partial}.`
}
