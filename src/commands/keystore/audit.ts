/**
 * `apm-server keystore audit [KEY] [--verify]`: the keystore's history from its audit trail, and the check of the trail against the keystore.
 */
import {Args, Flags} from '@oclif/core'

import {BaseCommand, EXIT} from '../../cli/base-command.js'
import {assertValidKeyName} from '../../core/entries.js'
import {KeystoreError} from '../../core/errors.js'

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

export interface AuditResult {
  path: string
  entries: AuditLineResult[]
  /** with --verify */
  verified?: {ok: boolean; lines: number; confirmed: number; problem: null | {line: number; message: string}}
}

/** Key names in a human line: a few, then a count. */
function describeKeys(keys: string[]): string {
  return keys.length <= 5 ? keys.join(', ') : `${keys.slice(0, 5).join(', ')} and ${keys.length - 5} more`
}

export default class Audit extends BaseCommand<typeof Audit> {
  static summary = 'Show who changed the keystore, and with --verify check that its audit trail is intact.'
  static description = `Every command that changes the keystore appends a line to the audit trail beside it (<keystore>.audit, mode 0600): time, user id and name, host, pid, command, key names and result ("failed" with an error code when it was refused once it held the keystore's lock). Never a value. The lines are hash-chained, and the keystore records the chain's length and last hash at each write.

--verify checks the chain against the keystore and exits 1 naming the first line that was changed, removed or cut off. A line the keystore does not record, after the last one it does or marked so by a later line, is what a command that stopped between its line and its keystore write leaves: shown as "not confirmed", never as tampering. The trail of a Beats v1 keystore is chained but anchored nowhere (Beats v1 has no place for it): a cut at its end cannot be seen; "keystore upgrade" anchors it. The keystore is opened (its password when it has one) to read its anchor.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'The whole history'},
    {command: '<%= config.bin %> <%= command.id %> APM_SECRET_TOKEN', description: 'Only the lines naming one key'},
    {command: '<%= config.bin %> <%= command.id %> --verify', description: 'Check the trail; exit 1 naming the first bad line'},
  ]

  static args = {key: Args.string({description: 'show only the lines naming this key'})}
  static flags = {
    verify: Flags.boolean({description: "check the hash chain against the keystore's record of it; exit 1 naming the first bad line"}),
  }

  async run(): Promise<AuditResult> {
    const {readAuditTrail} = await import('../../core/audit-verify.js')
    const {keystore: file} = await this.paths()
    const {key} = this.args
    if (key !== undefined) assertValidKeyName(key)
    const report = await readAuditTrail(file, this.openOptions())
    const entries = report.entries
      .filter(({record}) => key === undefined || (record?.keys.includes(key) ?? true))
      .map(({confirmed, line, record}): AuditLineResult => {
        const {command = null, error = null, host = null, keys = [], pid = null, result = null, time = null, uid = null, user = null} = record ?? {}
        return {command, confirmed, error, host, keys, line, pid, result, time, uid, user}
      })
    if (!this.jsonEnabled()) for (const entry of entries) process.stdout.write(`${this.describe(entry, report.anchor !== undefined)}\n`)
    const result: AuditResult = {entries, path: report.file}
    const {problem} = report
    if (!this.flags.verify) {
      if (problem) this.note(`${problem.message} ("keystore audit --verify" fails on it)`)
      return result
    }

    const confirmed = report.entries.filter((entry) => entry.confirmed).length
    result.verified = {confirmed, lines: report.entries.length, ok: !problem, problem: problem ?? null}
    const refused = report.entries.filter((entry) => entry.record?.result === 'failed').length
    if (problem) {
      if (this.jsonEnabled()) this.logJson(result)
      process.stderr.write(`error: ${problem.message}\n`)
      this.exit(EXIT.error)
    }

    this.say(this.verdict(report, confirmed, refused))
    return result
  }

  private describe(entry: AuditLineResult, anchored: boolean): string {
    if (entry.command === null) return `${entry.line}  (not an audit line)`
    const who = `${entry.user ?? '?'} (uid ${entry.uid ?? '?'}) on ${entry.host}, pid ${entry.pid}`
    const outcome = entry.result === 'failed' ? `failed (${entry.error ?? 'unknown error'})` : 'ok'
    const note = anchored && !entry.confirmed && entry.result === 'ok' ? ', not confirmed by the keystore (its command stopped before writing the keystore)' : ''
    return `${entry.line}  ${entry.time}  ${who}: ${entry.command}${entry.keys.length > 0 ? ` ${describeKeys(entry.keys)}` : ''}: ${outcome}${note}`
  }

  private verdict(report: {anchor?: unknown; exists: boolean; file: string; format: string; partialBytes: number; entries: unknown[]}, confirmed: number, refused: number): string {
    if (!report.exists || report.entries.length === 0) return `No audit trail at ${report.file} yet: the keystore records none.`
    const partial = report.partialBytes > 0 ? `; a half-written last line (${report.partialBytes} bytes, a command stopped while writing it) is removed by the next change` : ''
    if (!report.anchor) {
      if (report.format !== 'beats-v1') throw new KeystoreError('EAUDIT', `keystore records no audit trail for ${report.file}`)
      return `Audit trail ${report.file}: ${report.entries.length} lines, chained; not anchored (a Beats v1 keystore cannot record it: "keystore upgrade" anchors it)${partial}.`
    }

    const unconfirmed = report.entries.length - confirmed - refused
    const counts = [`${confirmed} change${confirmed === 1 ? '' : 's'} confirmed by the keystore`, ...(refused > 0 ? [`${refused} refused`] : []), ...(unconfirmed > 0 ? [`${unconfirmed} not confirmed`] : [])]
    return `Audit trail ${report.file} OK: ${report.entries.length} lines, ${counts.join(', ')}${partial}.`
  }
}
