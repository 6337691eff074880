/**
 * `apm-server keystore upgrade`: rewrite the keystore in the current native format.
 */
import {BaseCommand} from '../../cli/base-command.js'
import {KeystoreFormat, updateKeystore} from '../../core/keystore.js'

export interface UpgradeResult {
  path: string
  from: KeystoreFormat
  to: KeystoreFormat
}

export default class Upgrade extends BaseCommand<typeof Upgrade> {
  static summary = 'Rewrite the keystore in the current native format, entries intact.'
  static description = `Converts a Beats v1 keystore (the Go apm-server's) to the native format. After this the Go apm-server can no longer read the file; keep a copy if you still need it. A native keystore is rewritten with a fresh salt and nonce.`
  static examples = [{command: '<%= config.bin %> <%= command.id %>', description: 'Convert a Go apm-server keystore'}]

  async run(): Promise<UpgradeResult> {
    const {keystore: file} = await this.paths()
    const from = await updateKeystore(file, this.writeOptions(), (keystore) => {
      const previous = keystore.format
      keystore.convertTo('native')
      return previous
    })
    this.say(from === 'native' ? `Keystore ${file} is already native; rewritten.` : `Upgraded ${file} from ${from} to native.`)
    return {from, path: file, to: 'native'}
  }
}
