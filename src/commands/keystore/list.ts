/**
 * `apm-server keystore list`: the key names, sorted; with --long their times and expiry. Never a value.
 */
import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {clockOf, expiryState} from '../../core/expiry.js'
import {openKeystore} from '../../core/keystore.js'

/** One key with --long: ISO 8601 times, null where the format records none (Beats v1) or it never expires. */
export interface ListEntry {
  name: string
  created: null | string
  updated: null | string
  expires: null | string
}

const time = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null)

export default class List extends BaseCommand<typeof List> {
  static summary = 'List the keys in the keystore, sorted. Never their values.'
  static description = `With --long, each key's created, updated and expiry times (UTC; "-" where there is none: Beats v1 keystores record no times), expired ones marked. --json alone prints the names; with --long, an object per key.`
  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'One key name per line'},
    {command: '<%= config.bin %> <%= command.id %> --json', description: 'A JSON array of key names'},
    {command: '<%= config.bin %> <%= command.id %> --long', description: 'Names with created, updated and expiry times'},
  ]

  static flags = {
    long: Flags.boolean({char: 'l', description: 'also show when each key was created, updated, and when it expires'}),
  }

  async run(): Promise<ListEntry[] | string[]> {
    const {keystore: file} = await this.paths()
    const keystore = await openKeystore(file, this.openOptions())
    const keys = keystore.keys()
    if (!this.flags.long) {
      if (!this.jsonEnabled() && keys.length > 0) process.stdout.write(`${keys.join('\n')}\n`)
      return keys
    }

    const entries = keys.map((name): ListEntry => {
      const {created, updated} = keystore.describe(name)
      return {created: time(created), expires: time(keystore.expiry(name)), name, updated: time(updated)}
    })
    if (!this.jsonEnabled()) this.printTable(entries, keystore)
    return entries
  }

  private printTable(entries: ListEntry[], keystore: {expiry(name: string): number | undefined}): void {
    const clock = clockOf(process.env)
    if (clock.warning) this.note(clock.warning)
    const mark = (name: string) => {
      const at = keystore.expiry(name)
      const state = at === undefined ? 'later' : expiryState(at, clock.now)
      return state === 'expired' ? ' (expired)' : state === 'soon' ? ' (expires soon)' : ''
    }

    const rows = [['NAME', 'CREATED', 'UPDATED', 'EXPIRES'], ...entries.map((entry) => [entry.name, entry.created ?? '-', entry.updated ?? '-', `${entry.expires ?? '-'}${mark(entry.name)}`])]
    const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column].length)))
    process.stdout.write(rows.map((row) => row.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]) : cell)).join('  ')).join('\n') + '\n')
  }
}
