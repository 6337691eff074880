/**
 * `apm-server keystore sync DIR`: makes the keystore hold a directory's files (file name as key, bytes as value), writing only on a change.
 */
import {Args, Flags} from '@oclif/core'

import {BaseCommand, EXIT, expiresFlag} from '../../cli/base-command.js'
import {beatsHasNoExpiry, inspectKeystore, NewKeystoreSpec} from '../../core/keystore.js'
import {kdfParamsFromEnvironment, passwordFromEnvironment} from '../../core/password-env.js'
import type {SyncChanges} from '../../core/sync.js'

export default class Sync extends BaseCommand<typeof Sync> {
  static summary = 'Make the keystore hold the files of a directory: file name as key, file bytes as value.'
  static description = `Every file in DIR whose name is a valid key name becomes that key, its value the file's exact bytes (as "add --file"). A mounted Kubernetes Secret works as it is: its entries are symbolic links into ..data/; names starting with "." and folders are skipped. One version is read: ..data is resolved once and read again after the files (a plain directory: each file's identity), and DIR is read again when it changed (up to 3 times). Under strict perms (the default) DIR is judged as the keystore's path is (owned by you or root, not writable by others unless sticky), and a file, link target or link owned by another user is refused by name; --strict.perms=false allows them. Files whose name is not a valid key, or that are empty, unreadable, not regular files (a FIFO, a device, a link loop) or over 64 MiB are named in one line, each kind of problem with its files, and nothing is changed (exit 1). Keys not in DIR are kept, or removed with --prune. One lock, one atomic write, and no write at all when the keystore already matches, so it can run at every container start. --check changes nothing: exit 0 when the keystore matches DIR, else exit 1 with the names that would change. A missing keystore is created, with the password from APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE when one is set. Works on native and Beats v1 keystores. --expires gives the keys added or updated an expiry (native only).`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> /mnt/secrets --prune', description: 'Kubernetes init container: the keystore holds exactly the mounted Secret'},
    {command: '<%= config.bin %> <%= command.id %> /etc/apm-server/secrets.d', description: 'Add and update keys from a directory, keeping the others'},
    {command: '<%= config.bin %> <%= command.id %> /mnt/secrets --prune --check', description: 'Exit 1 naming the keys that differ, changing nothing'},
  ]

  static args = {dir: Args.string({description: 'directory of files, one per key', required: true})}
  static flags = {
    check: Flags.boolean({description: 'change nothing; exit 1 naming the keys that would be added, updated or removed'}),
    expires: expiresFlag,
    prune: Flags.boolean({description: 'remove the keys that have no file in DIR'}),
  }

  async run(): Promise<SyncChanges> {
    // Loaded when run, not with the command map: `keystore list` must not compile the bundle code (test/cli/start-modules.test.ts).
    const {syncKeystore} = await import('../../core/sync.js')
    const {keystore: file} = await this.paths()
    const {check, prune} = this.flags
    const expires = this.expiresAt(this.flags.expires)
    const options = this.writeOptions()
    const info = await inspectKeystore(file, options)
    if (expires !== undefined && info?.format === 'beats-v1') throw beatsHasNoExpiry(file)
    let createIfMissing: NewKeystoreSpec | undefined
    if (!check && !info) {
      const password = await passwordFromEnvironment(process.env)
      const kdf = kdfParamsFromEnvironment(process.env)
      if (password && kdf.warning) this.note(kdf.warning)
      createIfMissing = {format: 'native', kdfParams: kdf.params, password}
    }

    const changes = await syncKeystore(file, this.args.dir, {...options, check, createIfMissing, expires, prune})
    const verbs = check ? ['would add', 'would update', 'would remove'] : ['added', 'updated', 'removed']
    const named = [changes.added, changes.updated, changes.removed].map((names, i) => (names.length > 0 ? `${verbs[i]}: ${names.join(', ')}` : ''))
    for (const line of [...named.filter(Boolean), `unchanged: ${changes.unchanged}`]) this.say(line)
    if (createIfMissing) this.note(`created ${file}${createIfMissing.password ? ', password protected' : ' without a password; run "apm-server keystore passwd" to protect it'}`)
    const differs = changes.added.length + changes.updated.length + changes.removed.length > 0
    if (check && differs) {
      if (!this.jsonEnabled()) process.stderr.write(`Keystore ${file} does not match ${this.args.dir}; run sync without --check to apply.\n`)
      process.exitCode = EXIT.error
    }

    return changes
  }
}
