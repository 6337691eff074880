/**
 * `apm-server keystore recipient`: prints this host's recipient (its X25519 public key as text), making the key pair on first use.
 */
import {BaseCommand} from '../../cli/base-command.js'

export interface RecipientResult {
  path: string
  recipient: string
  fingerprint: string
  /** true when this run made the key pair */
  created: boolean
}

export default class Recipient extends BaseCommand<typeof Recipient> {
  static summary = "Print this host's recipient: the public key that sealed bundles for this host are sealed to."
  static description = `The recipient is "apm-recipient1" followed by an X25519 public key and a checksum that catches typos. It is not a secret: collect it from each host and give it to "keystore seal --to". The key pair is made on first use and kept inside the keystore, under its password when it has one; its private half is never printed, listed or exported, and is kept by passwd, upgrade and sync. "create --force" makes a new keystore, and with it a new recipient. A Beats v1 keystore cannot hold the key: run "keystore upgrade" first.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: "Print this host's recipient (made on first use)"},
    {command: 'ssh web-01 apm-server <%= command.id %> >> fleet.recipients', description: 'Collect the recipients of a fleet'},
    {command: '<%= config.bin %> <%= command.id %> --json', description: 'The recipient and its fingerprint, as JSON'},
  ]

  async run(): Promise<RecipientResult> {
    // Loaded when run, not with the command map: `keystore list` must not compile the bundle code (test/cli/start-modules.test.ts).
    const {hostRecipient} = await import('../../core/bundles.js')
    const {keystore: file} = await this.paths()
    const {created, fingerprint, recipient} = await hostRecipient(file, this.writeOptions())
    this.say(recipient)
    if (created && !this.jsonEnabled()) process.stderr.write(`Made this host's key pair in ${file} (fingerprint ${fingerprint}).\n`)
    return {created, fingerprint, path: file, recipient}
  }
}
