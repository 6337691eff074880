/**
 * `apm-server keystore passwd`: set, change or remove the keystore's password.
 */
import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {interactive, promptNewPassword, readStdin, splitLines} from '../../cli/secrets.js'
import {KeystoreError} from '../../core/errors.js'
import {inspectKeystore, openKeystore, updateKeystore} from '../../core/keystore.js'
import {kdfParamsFromEnvironment, MAX_PASSWORD_BYTES} from '../../core/password-env.js'

export interface PasswdResult {
  path: string
  passwordProtected: boolean
}

export default class Passwd extends BaseCommand<typeof Passwd> {
  static summary = 'Set, change or remove the keystore password.'
  static description = `The current password comes from APM_SERVER_KEYSTORE_PASSWORD, the file named by APM_SERVER_KEYSTORE_PASSWORD_FILE, or a prompt. The new one is asked twice on a terminal, or with --stdin is the first line of stdin (at most 4 KiB).`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Set or change the password at prompts'},
    {command: "printf '%s\\n' \"$NEW\" | APM_SERVER_KEYSTORE_PASSWORD=\"$OLD\" <%= config.bin %> <%= command.id %> --stdin", description: 'Change it from a script'},
    {command: '<%= config.bin %> <%= command.id %> --remove', description: 'Remove the password (the keystore becomes obfuscated only)'},
  ]

  static flags = {
    remove: Flags.boolean({description: 'remove the password', exclusive: ['stdin']}),
    stdin: Flags.boolean({description: 'read the new password from the first line of stdin', exclusive: ['remove']}),
  }

  async run(): Promise<PasswdResult> {
    const {keystore: file} = await this.paths()
    // The variables are the current password, which this command may be about to set: no warning that it is unused.
    const options = {...this.writeOptions(), onUnprotected: undefined}
    const info = await inspectKeystore(file, options)
    if (!info) throw new KeystoreError('ENOKEYSTORE', `no keystore at ${file}; create one with "apm-server keystore create --password"`)
    if (info.format !== 'native') {
      throw new KeystoreError('EUNSUPPORTED', `keystore ${file} is in Beats v1 format, which cannot hold a password; run "apm-server keystore upgrade" first`)
    }

    if (this.flags.remove && !info.passwordProtected) {
      this.say(`Keystore ${file} has no password; nothing to remove.`)
      return {passwordProtected: false, path: file}
    }

    let password: Buffer | undefined
    if (this.flags.stdin) {
      const input = await readStdin(
        MAX_PASSWORD_BYTES,
        () => new KeystoreError('EUSAGE', `stdin holds more than ${MAX_PASSWORD_BYTES} bytes, more than a password may be; give the new password as the first line`),
      )
      password = splitLines(input)[0] ?? Buffer.alloc(0)
      if (password.length === 0) throw new KeystoreError('EPASSWORD', 'the new password on stdin is empty; give it as the first line')
    } else if (!this.flags.remove) {
      if (!interactive()) throw new KeystoreError('EUSAGE', 'no terminal to ask for the new password; give it with --stdin, or use --remove')
      // Check the current password before asking for a new one twice.
      if (info.passwordProtected) await openKeystore(file, options)
      password = await promptNewPassword()
    }

    const kdf = kdfParamsFromEnvironment(process.env)
    if (password && kdf.warning) this.note(kdf.warning)
    await updateKeystore(file, options, (keystore) => keystore.setPassword(password, kdf.params))
    this.say(password ? `Password of ${file} ${info.passwordProtected ? 'changed' : 'set'}.` : `Password removed from ${file}; it is now obfuscated only.`)
    return {passwordProtected: password !== undefined, path: file}
  }
}
