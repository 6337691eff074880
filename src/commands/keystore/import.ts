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
  /** the signer whose signature the bundle carries, or null when it is not signed */
  signer: null | string
  /** when it was sealed (ISO 8601), or null for a version 1 bundle */
  created: null | string
}

export default class Import extends BaseCommand<typeof Import> {
  static summary = "Import a sealed bundle with this host's key: every key in it, all or nothing."
  static description = `Opens a bundle made by "keystore seal" for this host's recipient and adds every key in it under one lock and one atomic write: all of them, or none when anything is wrong. A key the keystore already holds with another value is refused unless --force; one with the same value is left as it is, so importing the same bundle again changes nothing. A bundle sealed to other hosts, changed in any byte, of an unknown version or holding more than a keystore may hold is refused with one line, the keystore untouched. --expires gives the keys added or replaced an expiry.

Who sealed it: --from SIGNER (repeat for several; "keystore recipient" on the sealing host shows its signer) refuses a bundle not signed by one of them, naming the signer it found. Without --from, an unsigned bundle, or one signed by a sender nobody pinned, is imported with a warning: anyone who knows this host's recipient could have made it; runbooks should always pin the sender. With --force, a bundle sealed before the value it would replace was last changed here (an old bundle replayed, or a version 1 bundle, which carries no time) is refused, naming the key, unless --allow-older; a signed bundle's value counts as changed no earlier than the bundle was sealed, so the sealer's next bundle is judged by its own clock. A bundle sealed more than 5 minutes ahead of this host's clock is refused: one of the two clocks is wrong.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> fleet.bundle --from "$(cat workstation.signer)"', description: 'Import the keys sealed to this host, if the workstation signed them'},
    {command: '<%= config.bin %> <%= command.id %> fleet.bundle --force --from "$(cat workstation.signer)"', description: 'Rotation: replace the values of existing keys'},
    {command: 'ssh workstation cat fleet.bundle | <%= config.bin %> <%= command.id %> - --from "$SIGNER"', description: 'Read the bundle from stdin'},
  ]

  static args = {bundle: Args.string({description: 'the bundle file, or - for stdin', required: true})}
  static flags = {
    expires: expiresFlag,
    'allow-older': Flags.boolean({dependsOn: ['force'], description: 'with --force: replace values even with a bundle sealed before they were last changed here (restoring an older value on purpose)'}),
    force: Flags.boolean({char: 'f', description: 'replace keys that exist with another value'}),
    from: Flags.string({description: 'refuse the bundle unless signed by this signer ("keystore recipient" on the sealing host shows it; repeat for several)', helpValue: 'SIGNER', multiple: true, multipleNonGreedy: true}),
  }

  async run(): Promise<ImportResult> {
    // Loaded when run, not with the command map: `keystore list` must not compile the bundle code (test/cli/start-modules.test.ts).
    const [{importBundle, readBundleFile}, {MAX_BUNDLE_FILE_BYTES}, {parseSigner}] = await Promise.all([import('../../core/bundles.js'), import('../../core/format/bundle.js'), import('../../core/recipient.js')])
    const from = (this.flags.from ?? []).map((text) => parseSigner(text))
    const {keystore: file} = await this.paths()
    const expires = this.expiresAt(this.flags.expires)
    const source = this.args.bundle
    const data =
      source === '-'
        ? await readStdin(MAX_BUNDLE_FILE_BYTES, () => new KeystoreError('ELIMITS', `stdin holds more than ${MAX_BUNDLE_FILE_BYTES} bytes, larger than any bundle a keystore can hold; it is not a bundle`))
        : await readBundleFile(source)
    const label = source === '-' ? 'the bundle on stdin' : `bundle ${source}`
    const imported = await importBundle(file, data, label, {...this.writeOptions(), allowOlder: this.flags['allow-older'], expires, force: this.flags.force, from})
    const {added, created, signer, unchanged, updated} = imported
    if (from.length === 0 && signer === null) this.note(`${label} is not signed: anyone who knows this host's recipient could have made it; pin the sender with --from SIGNER ("apm-server keystore recipient" on the sealing host shows it)`)
    if (from.length === 0 && signer !== null) this.note(`${label} is signed by ${signer}, a sender nobody pinned: anyone with a keystore could have made it; once you know it is the sealing host's, pin it with --from ${signer}`)
    const parts = [added.length > 0 ? `added ${added.join(', ')}` : '', updated.length > 0 ? `replaced ${updated.join(', ')}` : '', `${unchanged} unchanged`]
    this.say(`Imported into ${file}: ${parts.filter(Boolean).join('; ')}.`)
    return {added, created, path: file, signer, unchanged, updated}
  }
}
