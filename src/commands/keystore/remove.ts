/**
 * `apm-server keystore remove`: remove keys.
 */
import {Args} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {assertValidKeyName} from '../../core/entries.js'
import {updateKeystore} from '../../core/keystore.js'

export interface RemoveResult {
  path: string
  removed: string[]
}

export default class Remove extends BaseCommand<typeof Remove> {
  static summary = 'Remove keys from the keystore: all of them, or none if any is missing.'
  static examples = [
    {command: '<%= config.bin %> <%= command.id %> APM_SECRET_TOKEN', description: 'Remove one key'},
    {command: '<%= config.bin %> <%= command.id %> ES_PASSWORD TLS_KEY_PASSPHRASE', description: 'Remove several keys at once'},
  ]

  static args = {key: Args.string({description: 'key names to remove', required: true})}
  static strict = false
  static usage = '<%= command.id %> KEY...'

  async run(): Promise<RemoveResult> {
    const {keystore: file} = await this.paths()
    const names = [...new Set(this.positionals)]
    for (const name of names) assertValidKeyName(name)
    await updateKeystore(file, this.writeOptions(names), (keystore) => keystore.remove(names))
    this.say(`Removed ${names.join(', ')} from ${file}.`)
    return {path: file, removed: names}
  }
}
