/**
 * `apm-server keystore list`: the key names, sorted; never a value.
 */
import {BaseCommand} from '../../cli/base-command.js'
import {openKeystore} from '../../core/keystore.js'

export default class List extends BaseCommand<typeof List> {
  static summary = 'List the keys in the keystore, sorted. Never their values.'
  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'One key name per line'},
    {command: '<%= config.bin %> <%= command.id %> --json', description: 'A JSON array of key names'},
  ]

  async run(): Promise<string[]> {
    const {keystore: file} = await this.paths()
    const keys = (await openKeystore(file, this.openOptions())).keys()
    if (!this.jsonEnabled() && keys.length > 0) process.stdout.write(`${keys.join('\n')}\n`)
    return keys
  }
}
