/**
 * `apm-server keystore show`: one key's value, as its exact bytes (its size and times with --json).
 */
import {Args} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {assertValidKeyName} from '../../core/entries.js'
import {openKeystore} from '../../core/keystore.js'

export interface ShowResult {
  key: string
  bytes: number
  created: null | string
  updated: null | string
  /** when the value expires; null when it does not */
  expires: null | string
}

export default class Show extends BaseCommand<typeof Show> {
  static summary = 'Write the stored bytes of a key to stdout.'
  static description = `The value is written exactly as stored; a newline is added only when stdout is a terminal.
With --json only the entry's size, times and expiry are printed: secrets never go into JSON output.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> APM_SECRET_TOKEN', description: 'Print the secret token'},
    {command: '<%= config.bin %> <%= command.id %> TLS_KEY > key.pem', description: 'Write a stored file back out, byte for byte'},
  ]

  static args = {key: Args.string({description: 'key name', required: true})}

  async run(): Promise<ShowResult> {
    const {keystore: file} = await this.paths()
    assertValidKeyName(this.args.key)
    const keystore = await openKeystore(file, this.openOptions())
    const value = keystore.get(this.args.key)
    if (!this.jsonEnabled()) {
      process.stdout.write(value)
      if (process.stdout.isTTY) process.stdout.write('\n')
    }

    const {created, updated} = keystore.describe(this.args.key)
    const time = (ms: number) => (ms ? new Date(ms).toISOString() : null)
    return {bytes: value.length, created: time(created), expires: time(keystore.expiry(this.args.key) ?? 0), key: this.args.key, updated: time(updated)}
  }
}
