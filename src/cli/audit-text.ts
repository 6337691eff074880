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

/** Key names in a human line: a few, then a count. */
function describeKeys(keys: string[]): string {
  return keys.length <= 5 ? keys.join(', ') : `${keys.slice(0, 5).join(', ')} and ${keys.length - 5} more`
}

export function describeEntry(entry: AuditLineResult, anchored: boolean): string {
  if (entry.command === null) return `${entry.line}  (not an audit line)`
  const who = `${entry.user ?? '?'} (uid ${entry.uid ?? '?'}) on ${entry.host}, pid ${entry.pid}`
  const outcome = entry.result === 'failed' ? `failed (${entry.error ?? 'unknown error'})` : 'ok'
  const note = anchored && !entry.confirmed && entry.result === 'ok' ? ', not confirmed by the keystore (its command stopped before writing the keystore)' : ''
  return `${entry.line}  ${entry.time}  ${who}: ${entry.command}${entry.keys.length > 0 ? ` ${describeKeys(entry.keys)}` : ''}: ${outcome}${note}`
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
