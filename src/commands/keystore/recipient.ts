/**
 * `apm-server keystore recipient`: prints this host's recipient (its X25519 public key as text), making the key pair on first use.
 */
import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'

export interface RecipientResult {
  path: string
  recipient: string
  fingerprint: string
  /** this host's signer: what hosts taking bundles sealed here pin with "import --from" */
  signer: string
  /** true when this run made the key pair */
  created: boolean
}

export default class Recipient extends BaseCommand<typeof Recipient> {
  static summary = "Print this host's recipient: the public key that sealed bundles for this host are sealed to."
  static description = `The recipient is "apm-recipient1" followed by an X25519 public key and a checksum that catches typos. It is not a secret: collect it from each host and give it to "keystore seal --to". The key pair is made on first use and kept inside the keystore, under its password when it has one; its private half is never printed, listed or exported, and is kept by passwd, upgrade and sync. "create --force" makes a new keystore, and with it a new recipient. A Beats v1 keystore cannot hold the key: run "keystore upgrade" first.

The same key gives this host its signer ("apm-signer1..." with a checksum, shown on stderr, or alone on stdout with --signer): the bundles "keystore seal" makes here are signed with it, and hosts importing them pin it with "import --from SIGNER". It is not a secret either.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: "Print this host's recipient (made on first use)"},
    {command: 'ssh web-01 apm-server <%= command.id %> >> fleet.recipients', description: 'Collect the recipients of a fleet'},
    {command: '<%= config.bin %> <%= command.id %> --signer > workstation.signer', description: "This host's signer, for the hosts that import its bundles (import --from)"},
    {command: '<%= config.bin %> <%= command.id %> --json', description: 'The recipient, its fingerprint and the signer, as JSON'},
  ]

  static flags = {
    signer: Flags.boolean({description: "print this host's signer (for import --from) instead of its recipient"}),
  }

  async run(): Promise<RecipientResult> {
    // Loaded when run, not with the command map: `keystore list` must not compile the bundle code (test/cli/start-modules.test.ts).
    const {hostRecipient} = await import('../../core/bundles.js')
    const {keystore: file} = await this.paths()
    const {created, fingerprint, recipient, signer} = await hostRecipient(file, this.writeOptions())
    this.say(this.flags.signer ? signer : recipient)
    if (created && !this.jsonEnabled()) process.stderr.write(`Made this host's key pair in ${file} (fingerprint ${fingerprint}).\n`)
    if (!this.flags.signer && !this.jsonEnabled()) process.stderr.write(`Signer of the bundles sealed here (for "import --from"): ${signer}\n`)
    return {created, fingerprint, path: file, recipient, signer}
  }
}
