/**
 * `apm-server keystore seal --to RECIPIENT...`: a bundle of keystore entries (or stdin values) readable only by the recipients.
 */
import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {readStdinValues} from '../../cli/values.js'
import {assertValidKeyName} from '../../core/entries.js'
import {KeystoreError} from '../../core/errors.js'

export interface SealResult {
  keys: string[]
  /** the fingerprints of the hosts that can open the bundle */
  recipients: string[]
  /** the signer that signed it (pinned by import --from), or null when it is not signed */
  signer: null | string
  /** with --out: where the bundle was written */
  out?: string
  /** without --out: the armoured bundle (not a secret: only the recipients can open it) */
  bundle?: string
}

export default class Seal extends BaseCommand<typeof Seal> {
  static summary = 'Seal keys into a bundle that only the given hosts can import.'
  static description = `The bundle holds the named keys (all of them when none is named) with their values, readable only by the hosts whose recipients are given with --to ("keystore recipient" prints a host's). No key name or value is visible in it. It is ASCII armour, written to stdout or to --out FILE, so it can be pasted, committed or copied by any configuration-management tool; each host then runs "keystore import". With --stdin the values come from stdin as "keystore add --stdin" takes them (one key: all of stdin minus one trailing newline; several: one line each), and no keystore is needed.

The bundle is signed with the sealing keystore's signing key (made with its host key: "keystore recipient" prints its signer), so hosts can pin the sender with "import --from SIGNER". A keystore without a host key yet, a Beats v1 keystore, and --stdin without --sign-with KEYSTORE seal an unsigned bundle, with a warning: hosts importing with --from refuse it.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> --to "$(cat web-01.recipient)" --to "$(cat web-02.recipient)" APM_SECRET_TOKEN --out fleet.bundle', description: 'Seal the token to two hosts'},
    {command: '<%= config.bin %> <%= command.id %> $(sed "s/^/--to /" fleet.recipients) > fleet.bundle', description: 'Seal every key to every recipient in a file'},
    {command: 'printf \'%s\' "$TOKEN" | <%= config.bin %> <%= command.id %> --to "$RECIPIENT" APM_SECRET_TOKEN --stdin > token.bundle', description: 'Seal a value from a CI secret, without a keystore (unsigned)'},
    {command: 'printf \'%s\' "$TOKEN" | <%= config.bin %> <%= command.id %> --to "$RECIPIENT" APM_SECRET_TOKEN --stdin --sign-with ci.keystore > token.bundle', description: "Seal from CI, signed with the CI keystore's key"},
  ]

  static args = {key: Args.string({description: 'key names to seal [default: every key]'})}
  static strict = false
  static usage = '<%= command.id %> --to RECIPIENT [--to RECIPIENT...] [KEY...] [--stdin [--sign-with KEYSTORE]] [--out FILE] [--binary]'
  static flags = {
    binary: Flags.boolean({dependsOn: ['out'], description: 'write the binary bundle instead of ASCII armour (needs --out)'}),
    out: Flags.string({char: 'o', description: 'write the bundle to this file (replaced atomically) instead of stdout'}),
    'sign-with': Flags.string({dependsOn: ['stdin'], description: "with --stdin: sign the bundle with this keystore's signing key (it needs a host key: run \"keystore recipient\" on it once)", helpValue: 'KEYSTORE'}),
    stdin: Flags.boolean({description: 'seal the named keys with values read from stdin, as "keystore add --stdin" does'}),
    to: Flags.string({description: "a host's recipient, from \"keystore recipient\" on that host (repeat for each host)", multiple: true, multipleNonGreedy: true, required: true}),
  }

  async run(): Promise<SealResult> {
    // Loaded when run, not with the command map: `keystore list` must not compile the bundle code (test/cli/start-modules.test.ts).
    const {parseRecipients, sealFromKeystore, sealValues, signingKeyOf, writeBundleFile} = await import('../../core/bundles.js')
    const {binary, out, 'sign-with': signWith, stdin, to} = this.flags
    const names = this.positionals
    for (const name of names) assertValidKeyName(name)
    if (new Set(names).size !== names.length) throw new KeystoreError('EUSAGE', 'a key is named twice; name each key once')
    const recipients = parseRecipients(to)
    let sealed
    if (stdin) {
      if (names.length === 0) throw new KeystoreError('EUSAGE', '--stdin seals the keys you name; name them (KEY...)')
      const signer = signWith === undefined ? undefined : await signingKeyOf(signWith, this.openOptions())
      const values = await readStdinValues(names)
      sealed = sealValues(names.map((name, i) => ({name, value: values[i]})), recipients, {binary, signer})
      if (!signer) this.note('the bundle is not signed (--stdin without --sign-with KEYSTORE): hosts that import it with --from refuse it, and the others warn that anyone could have made it')
    } else {
      const {keystore: file} = await this.paths()
      sealed = await sealFromKeystore(file, names, recipients, {...this.openOptions(), binary})
      if (!sealed.signer) this.note(`the bundle is not signed: keystore ${file} has no host key to sign with; run "apm-server keystore recipient" once to make it (a Beats v1 keystore needs "keystore upgrade" first), then seal again`)
    }

    const summary = `Sealed ${sealed.keys.length} key${sealed.keys.length === 1 ? '' : 's'} to ${sealed.recipients.length} recipient${sealed.recipients.length === 1 ? '' : 's'} (${sealed.recipients.join(', ')})`
    const signed = sealed.signer ? `, signed by ${sealed.signer}` : ''
    if (out) {
      await writeBundleFile(out, sealed.bundle)
      this.say(`${summary} in ${out}${signed}.`)
      return {keys: sealed.keys, out, recipients: sealed.recipients, signer: sealed.signer}
    }

    if (!this.jsonEnabled()) {
      process.stdout.write(sealed.bundle)
      process.stderr.write(`${summary}${signed}.\n`)
    }

    return {bundle: sealed.bundle.toString('latin1'), keys: sealed.keys, recipients: sealed.recipients, signer: sealed.signer}
  }
}
