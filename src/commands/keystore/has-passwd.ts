/**
 * `apm-server keystore has-passwd`: whether the keystore is password protected, as the exit code.
 */
import {BaseCommand, EXIT} from '../../cli/base-command.js'
import {inspectKeystore} from '../../core/keystore.js'

export interface HasPasswdResult {
  path: string
  exists: boolean
  passwordProtected: boolean
}

export default class HasPasswd extends BaseCommand<typeof HasPasswd> {
  static summary = 'Exit 0 if the keystore is password protected, 1 if not or if there is no keystore.'
  static examples = [
    {command: '<%= config.bin %> <%= command.id %> && echo protected', description: 'Use in a script'},
  ]

  async run(): Promise<HasPasswdResult> {
    const {keystore: file} = await this.paths()
    const info = await inspectKeystore(file, {strictPerms: this.strictPerms})
    const passwordProtected = info?.passwordProtected ?? false
    if (passwordProtected) this.say(`Keystore ${file} is password protected.`)
    else if (!this.jsonEnabled()) process.stderr.write(info ? `Keystore ${file} is not password protected.\n` : `No keystore at ${file}.\n`)
    if (!passwordProtected) process.exitCode = EXIT.error
    return {exists: info !== undefined, passwordProtected, path: file}
  }
}
