/**
 * `apm-server keystore import BUNDLE|-`: opens a sealed bundle with this host's key and adds its entries, all or nothing.
 */
import {Args, Flags} from '@oclif/core'

import {BaseCommand, expiresFlag} from '../../cli/base-command.js'
import {readStdin} from '../../cli/secrets.js'
import {KeystoreError} from '../../core/errors.js'

export interface ImportResult {
  path: string
  added: string[]
  updated: string[]
  /** keys the keystore already held with the same value */
  unchanged: number
}

export default class Import extends BaseCommand<typeof Import> {
  static summary = "Import a sealed bundle with this host's key: every key in it, all or nothing."
  static description = `Opens a bundle made by "keystore seal" for this host's recipient and adds every key in it under one lock and one atomic write: all of them, or none when anything is wrong. A key the keystore already holds with another value is refused unless --force; one with the same value is left as it is, so importing the same bundle again changes nothing. A bundle sealed to other hosts, changed in any byte, of an unknown version or holding more than a keystore may hold is refused with one line, the keystore untouched. --expires gives the keys added or replaced an expiry.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> fleet.bundle', description: 'Import the keys sealed to this host'},
    {command: '<%= config.bin %> <%= command.id %> fleet.bundle --force', description: 'Rotation: replace the values of existing keys'},
    {command: 'ssh workstation cat fleet.bundle | <%= config.bin %> <%= command.id %> -', description: 'Read the bundle from stdin'},
  ]

  static args = {bundle: Args.string({description: 'the bundle file, or - for stdin', required: true})}
  static flags = {
    expires: expiresFlag,
    force: Flags.boolean({char: 'f', description: 'replace keys that exist with another value'}),
  }

  async run(): Promise<ImportResult> {
    // Loaded when run, not with the command map: `keystore list` must not compile the bundle code (test/cli/start-modules.test.ts).
    const [{importBundle, readBundleFile}, {MAX_BUNDLE_FILE_BYTES}] = await Promise.all([import('../../core/bundles.js'), import('../../core/format/bundle.js')])
    const {keystore: file} = await this.paths()
    const expires = this.expiresAt(this.flags.expires)
    const source = this.args.bundle
    const data =
      source === '-'
        ? await readStdin(MAX_BUNDLE_FILE_BYTES, () => new KeystoreError('ELIMITS', `stdin holds more than ${MAX_BUNDLE_FILE_BYTES} bytes, larger than any bundle a keystore can hold; it is not a bundle`))
        : await readBundleFile(source)
    const label = source === '-' ? 'the bundle on stdin' : `bundle ${source}`
    const {added, unchanged, updated} = await importBundle(file, data, label, {...this.writeOptions(), expires, force: this.flags.force})
    const parts = [added.length > 0 ? `added ${added.join(', ')}` : '', updated.length > 0 ? `replaced ${updated.join(', ')}` : '', `${unchanged} unchanged`]
    this.say(`Imported into ${file}: ${parts.filter(Boolean).join('; ')}.`)
    return {added, path: file, unchanged, updated}
  }
}
