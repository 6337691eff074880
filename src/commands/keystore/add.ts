/**
 * `apm-server keystore add`: add keys, or replace them with --force; values from src/cli/values.ts or --generate.
 */
import {Args, Flags} from '@oclif/core'

import {BaseCommand, expiresFlag} from '../../cli/base-command.js'
import {confirm, interactive} from '../../cli/secrets.js'
import {checkValueSource, readValues} from '../../cli/values.js'
import {generateToken} from '../../core/crypto.js'
import {assertValidKeyName} from '../../core/entries.js'
import {KeystoreError} from '../../core/errors.js'
import {beatsHasNoExpiry, inspectKeystore, NewKeystoreSpec, openKeystore, updateKeystore} from '../../core/keystore.js'

export interface AddResult {
  path: string
  added: string[]
  updated: string[]
  /** only with --generate: the new token, shown this once */
  generated?: string
}

/** Names a few keys, counts many (a provisioning run may add thousands). */
function describeKeys(names: string[]): string {
  return names.length <= 5 ? names.join(', ') : `${names.length} keys (${names.slice(0, 3).join(', ')}, ...)`
}

export default class Add extends BaseCommand<typeof Add> {
  static summary = 'Add keys to the keystore, or replace them with --force.'
  static description = `Values never come from arguments. On a terminal each value is asked for with a masked prompt. With --stdin and one key, all of stdin is the value (binary safe) minus one trailing newline; with several keys, stdin holds one line per key. --file stores a file's bytes. A value, and all of stdin, may be at most 64 MiB. --generate stores a random URL-safe token and prints it once. --expires records when the values expire (native keystores); a replaced value keeps no expiry unless --expires is given again.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> APM_SECRET_TOKEN', description: 'Type the secret token at a masked prompt'},
    {command: "printf '%s' \"$TOKEN\" | <%= config.bin %> <%= command.id %> APM_SECRET_TOKEN --stdin --force", description: 'Set the token from a pipe, replacing any old value'},
    {command: "printf 'elastic\\nchangeme\\n' | <%= config.bin %> <%= command.id %> ES_USERNAME ES_PASSWORD --stdin", description: 'Several keys, one line each'},
    {command: '<%= config.bin %> <%= command.id %> TLS_KEY --file server.key', description: "Store a file's bytes"},
    {command: '<%= config.bin %> <%= command.id %> APM_SECRET_TOKEN --generate --force', description: 'Rotate: store a new random token and print it once'},
    {command: '<%= config.bin %> <%= command.id %> APM_SECRET_TOKEN --generate --force --expires 90d', description: 'Rotate, and have test config and run warn 14 days before 90 days are up'},
  ]

  static args = {key: Args.string({description: 'key names ([A-Za-z0-9_.-], 1-255 characters)', required: true})}
  static strict = false
  static usage = '<%= command.id %> KEY... [--stdin | --file PATH | --generate [--length N]] [--force] [--expires 90d|DATE]'
  static flags = {
    expires: expiresFlag,
    file: Flags.string({description: "store this file's bytes (one key)", exclusive: ['stdin', 'generate']}),
    force: Flags.boolean({char: 'f', description: 'replace existing keys and create a missing keystore without asking'}),
    generate: Flags.boolean({description: 'store a cryptographically random URL-safe token and print it once', exclusive: ['stdin', 'file']}),
    length: Flags.integer({dependsOn: ['generate'], description: 'length of a generated token in characters [default: 32]', max: 1024, min: 16}),
    stdin: Flags.boolean({description: 'read the value(s) from stdin', exclusive: ['file', 'generate']}),
  }

  async run(): Promise<AddResult> {
    const {keystore: file} = await this.paths()
    const names = this.positionals
    for (const name of names) assertValidKeyName(name)
    if (new Set(names).size !== names.length) throw new KeystoreError('EUSAGE', 'a key is named twice; name each key once')
    const {force, generate} = this.flags
    checkValueSource(names, this.flags)
    const expires = this.expiresAt(this.flags.expires)

    const options = this.writeOptions(names)
    const info = await inspectKeystore(file, options)
    if (expires !== undefined && info?.format === 'beats-v1') throw beatsHasNoExpiry(file)
    let createIfMissing: NewKeystoreSpec | undefined
    if (!info) {
      if (!force && !interactive()) throw new KeystoreError('ENOKEYSTORE', `no keystore at ${file}; create one with "apm-server keystore create", or use --force`)
      if (!force && !(await confirm(`No keystore at ${file}. Create one without a password?`))) {
        throw new KeystoreError('ENOKEYSTORE', `no keystore at ${file}; create one with "apm-server keystore create --password"`)
      }

      createIfMissing = {format: 'native'}
    }

    // Everything that asks happens before the lock is taken, so a person thinking never blocks other writers.
    const overwrite = new Set(force ? names : [])
    if (info && !force && interactive()) {
      const existing = await openKeystore(file, options)
      for (const name of names.filter((key) => existing.has(key))) {
        // eslint-disable-next-line no-await-in-loop -- one question at a time
        if (!(await confirm(`Key ${name} already exists. Overwrite it?`))) throw new KeystoreError('EKEYEXISTS', `key ${name} was kept; nothing was changed`)
        overwrite.add(name)
      }
    } else if (info?.passwordProtected) {
      await options.password?.()
    }

    const generated = generate ? generateToken(this.flags.length ?? 32) : undefined
    const values = generated === undefined ? await readValues(names, this.flags) : [Buffer.from(generated)]

    const dropped: string[] = []
    const outcome = await updateKeystore(file, {...options, createIfMissing}, (keystore) =>
      names.map((name, i) => {
        if (expires === undefined && keystore.has(name) && keystore.expiry(name) !== undefined) dropped.push(name)
        const done = keystore.set(name, values[i], {overwrite: overwrite.has(name)})
        if (expires !== undefined) keystore.setExpiry(name, expires)
        return done
      }),
    )
    if (dropped.length > 0) this.note(`${describeKeys(dropped)} had an expiry; the new value has none: give --expires to set one`)
    const added = names.filter((_name, i) => outcome[i] === 'added')
    const updated = names.filter((_name, i) => outcome[i] === 'updated')
    if (createIfMissing) this.note(`created ${file} without a password; run "apm-server keystore passwd" to protect it`)
    if (generated === undefined) {
      if (added.length > 0) this.say(`Added ${describeKeys(added)} to ${file}.`)
      if (updated.length > 0) this.say(`Replaced ${describeKeys(updated)} in ${file}.`)
    } else {
      this.say(generated)
      if (!this.jsonEnabled()) process.stderr.write(`Stored a new token in ${names[0]}; it is shown only this once.\n`)
    }

    return {added, path: file, updated, ...(generated === undefined ? {} : {generated})}
  }
}
