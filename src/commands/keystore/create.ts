/**
 * `apm-server keystore create`: a new empty keystore, native (optionally with a password) or Beats v1.
 */
import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {confirm, interactive, readNewPassword} from '../../cli/secrets.js'
import {KeystoreError} from '../../core/errors.js'
import {createKeystore, inspectKeystore, KEYSTORE_FORMATS, KeystoreFormat} from '../../core/keystore.js'
import {kdfParamsFromEnvironment} from '../../core/password-env.js'

export interface CreateResult {
  path: string
  format: KeystoreFormat
  passwordProtected: boolean
}

export default class Create extends BaseCommand<typeof Create> {
  static summary = 'Create an empty keystore.'
  static description = `Without --password the keystore is only obfuscated, as Beats' keystore is: anyone who can read the file can read its secrets. With --password it is encrypted with a key derived from the password (argon2id); the password comes from APM_SERVER_KEYSTORE_PASSWORD, the file named by APM_SERVER_KEYSTORE_PASSWORD_FILE, or is asked twice on a terminal.

--format beats-v1 writes the format Elastic's Go apm-server reads (it cannot have a password); later writes keep it.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> --password', description: 'Create a password-protected keystore, asking for the password'},
    {command: 'APM_SERVER_KEYSTORE_PASSWORD_FILE=/run/secrets/ks <%= config.bin %> <%= command.id %> --password --force', description: 'Replace any keystore with a new one, password from a file'},
    {command: '<%= config.bin %> <%= command.id %> --format beats-v1 --path.data /var/lib/apm-server', description: 'Create a keystore the Go apm-server can read'},
  ]

  static flags = {
    force: Flags.boolean({char: 'f', description: 'overwrite an existing keystore without asking'}),
    format: Flags.string({default: 'native', description: 'file format', options: [...KEYSTORE_FORMATS]}),
    password: Flags.boolean({description: 'protect the keystore with a password (never given as a flag value)'}),
  }

  async run(): Promise<CreateResult> {
    const {keystore: file} = await this.paths()
    const format = this.flags.format as KeystoreFormat
    if (this.flags.password && format === 'beats-v1') {
      throw new KeystoreError('EUSAGE', '--format beats-v1 cannot have a password (the Go apm-server always opens it with an empty one); drop --password or use --format native')
    }

    let overwrite = this.flags.force
    if (!overwrite && (await inspectKeystore(file, {strictPerms: false}).catch(() => ({exists: true})))) {
      if (!interactive()) throw new KeystoreError('EEXISTS', `keystore ${file} already exists; use --force to overwrite it`)
      if (!(await confirm(`A keystore already exists at ${file}. Overwrite it? Its secrets will be lost.`))) {
        throw new KeystoreError('EEXISTS', `keystore ${file} was kept; use --force to overwrite it`)
      }

      overwrite = true
    }

    const password = this.flags.password ? await readNewPassword() : undefined
    const kdf = kdfParamsFromEnvironment(process.env)
    if (password && kdf.warning) this.note(kdf.warning)
    const keystore = await createKeystore(file, {audit: this.writeOptions().audit, format, kdfParams: kdf.params, overwrite, password, strictPerms: this.strictPerms})
    this.say(`Created ${format} keystore at ${file}${keystore.passwordProtected ? ', password protected' : ''}.`)
    if (!keystore.passwordProtected) {
      this.note('the keystore has no password: it is obfuscated, not protected; anyone who can read the file can read its secrets. Use --password to protect it.')
    }

    return {format, passwordProtected: keystore.passwordProtected, path: file}
  }
}
