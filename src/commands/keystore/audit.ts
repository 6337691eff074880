/**
 * `apm-server keystore audit [KEY] [--verify | --restart]`: the keystore's history from its audit trail, the check of the trail against the keystore, a new trail.
 */
import {Args, Flags} from '@oclif/core'

import type {AuditLineResult} from '../../cli/audit-text.js'
import {BaseCommand, EXIT} from '../../cli/base-command.js'
import {assertValidKeyName} from '../../core/entries.js'

export interface AuditResult {
  path: string
  entries: AuditLineResult[]
  /** with --verify */
  verified?: {ok: boolean; lines: number; confirmed: number; problem: null | {line: number; message: string}}
  /** with --restart: where the previous trail was kept (null when there was none), its size and SHA-256 */
  restarted?: {file: null | string; bytes: number; sha256: string}
}

export default class Audit extends BaseCommand<typeof Audit> {
  static summary = 'Show who changed the keystore, and with --verify check that its audit trail is intact.'
  static description = `Every command that changes the keystore appends a line to the audit trail beside it (<keystore>.audit, mode 0600): time, user id and name, host, pid, command, key names and result ("failed" with an error code when it was refused once it held the keystore's lock). Never a value. The lines are hash-chained, and the keystore records the chain's length and last hash at each write.

--verify checks the chain against the keystore and exits 1 naming the first line that was changed, removed or cut off. A line the keystore does not record, after the last one it does or marked so by a later line, is what a command that stopped between its line and its keystore write leaves: shown as "not confirmed", never as tampering. The trail of a Beats v1 keystore is chained but anchored nowhere (Beats v1 has no place for it): a cut at its end cannot be seen; "keystore upgrade" anchors it. The keystore is opened (its password when it has one) to read its anchor.

--restart keeps the trail aside as <trail>.<time> and starts a new one whose first line names it, with its size and SHA-256: for a trail grown past what this command reads (64 MiB, 100,000 lines), or one found changed once you have looked into it.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'The whole history'},
    {command: '<%= config.bin %> <%= command.id %> APM_SECRET_TOKEN', description: 'Only the lines naming one key'},
    {command: '<%= config.bin %> <%= command.id %> --verify', description: 'Check the trail; exit 1 naming the first bad line'},
    {command: '<%= config.bin %> <%= command.id %> --restart', description: 'Keep the trail aside and start a new one'},
  ]

  static args = {key: Args.string({description: 'show only the lines naming this key'})}
  static flags = {
    restart: Flags.boolean({description: 'keep the trail aside (<trail>.<time>) and start a new one that names it', exclusive: ['verify']}),
    verify: Flags.boolean({description: "check the hash chain against the keystore's record of it; exit 1 naming the first bad line"}),
  }

  async run(): Promise<AuditResult> {
    const [{readAuditTrail, restartAuditTrail}, {describeEntry, describeVerified}] = await Promise.all([import('../../core/audit-verify.js'), import('../../cli/audit-text.js')])
    const {keystore: file} = await this.paths()
    const {key} = this.args
    if (key !== undefined) assertValidKeyName(key)
    let restarted: AuditResult['restarted']
    if (this.flags.restart) {
      restarted = (await restartAuditTrail(file, this.openOptions())).restarted
      this.say(restarted.file ? `Kept the audit trail as ${restarted.file} (${restarted.bytes} bytes, SHA-256 ${restarted.sha256}); started a new one.` : 'Started a new audit trail.')
    }

    const report = await readAuditTrail(file, this.openOptions())
    const entries = report.entries
      .filter(({record}) => key === undefined || (record?.keys.includes(key) ?? true))
      .map(({confirmed, line, record}): AuditLineResult => {
        const {command = null, error = null, host = null, keys = [], pid = null, result = null, time = null, uid = null, user = null} = record ?? {}
        return {command, confirmed, error, host, keys, line, pid, result, time, uid, user}
      })
    if (!this.jsonEnabled()) for (const entry of entries) process.stdout.write(`${describeEntry(entry, report.anchor !== undefined)}\n`)
    const result: AuditResult = {entries, path: report.file, ...(restarted ? {restarted} : {})}
    const {problem} = report
    if (!this.flags.verify) {
      if (problem) this.note(`${problem.message} ("keystore audit --verify" fails on it)`)
      return result
    }

    const confirmed = report.entries.filter((entry) => entry.confirmed).length
    result.verified = {confirmed, lines: report.entries.length, ok: !problem, problem: problem ?? null}
    if (problem) {
      if (this.jsonEnabled()) this.logJson(result)
      process.stderr.write(`error: ${problem.message}\n`)
      this.exit(EXIT.error)
    }

    this.say(describeVerified(report))
    return result
  }
}
