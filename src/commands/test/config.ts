/**
 * `apm-server test config`: load the configuration as `run` does and report every problem, or Config OK;
 * with --explain, where every `${KEY}` came from and which keystore it was looked up in.
 */
import {Flags} from '@oclif/core'

import {BaseCommand, EXIT} from '../../cli/base-command.js'
import {serverFlags} from '../../cli/server-flags.js'
import type {ConfiguredReference, KeystoreDescription} from '../../server/config/provenance.js'

export interface TestConfigResult {
  ok: boolean
  problems: string[]
  warnings: string[]
  /** with --explain */
  explain?: {keystore: KeystoreDescription; references: ConfiguredReference[]}
}

const SOURCES: Record<ConfiguredReference['source'], string> = {
  default: "its default (the reference's ${KEY:default})",
  environment: 'the environment',
  keystore: 'the keystore',
  missing: 'nowhere (missing)',
  path: 'a path setting',
}

export default class TestConfig extends BaseCommand<typeof TestConfig> {
  static summary = 'Check the configuration: parse apm-server.yml, resolve every ${KEY} reference, validate the settings.'
  static description = `Loads the configuration exactly as "apm-server run" does: apm-server.yml, then -E overrides, then --path.* flags; every \${KEY} reference is looked up in the keystore, then in the environment. The keystore is opened only when a reference needs it (its password comes from APM_SERVER_KEYSTORE_PASSWORD, the file named by APM_SERVER_KEYSTORE_PASSWORD_FILE, or a prompt on a terminal).

Prints "Config OK" and exits 0, or prints every problem, one per line on stderr with file:line and setting, and exits 1. Warnings (unknown settings, deprecated ones, a key set in both the keystore and the environment, a keystore secret expiring within 14 days) go to stderr and do not fail the check; an expired secret token is a problem, as it stops "run". No value is ever printed.

--explain also prints, for every \${KEY}, its setting, where it is written (file:line) and where its value came from (the keystore, the environment, its default, a path setting, or nowhere), and the keystore's path, format, password protection, owner and mode.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Check ./apm-server.yml'},
    {command: '<%= config.bin %> <%= command.id %> -c /etc/apm-server/apm-server.yml -E apm-server.rum.enabled=true', description: 'Check another file with an override'},
    {command: '<%= config.bin %> <%= command.id %> --explain', description: 'Where every ${KEY} came from, and which keystore'},
    {command: '<%= config.bin %> <%= command.id %> --json', description: 'Machine-readable: {"ok", "problems", "warnings"} (and "explain" with --explain)'},
  ]

  static flags = {
    ...serverFlags,
    explain: Flags.boolean({description: 'say where every ${KEY} came from (keystore, environment, default, missing) and describe the keystore; never a value'}),
  }

  async run(): Promise<TestConfigResult> {
    // Loaded here, not at the top: every command's module is loaded at start-up, and keystore commands must not pay for the YAML parser.
    const [{loadServerConfig}, {loadOptionsFrom}, {ConfigError}, {describeKeystoreFile}] = await Promise.all([
      import('../../server/config/load.js'),
      import('../../server/config/options.js'),
      import('../../server/config/server-config.js'),
      import('../../server/config/provenance.js'),
    ])
    let result: TestConfigResult
    let keystore: string | undefined
    let references: ConfiguredReference[] = []
    try {
      const loaded = await loadServerConfig(loadOptionsFrom(this.flags, this.openOptions()))
      result = {ok: true, problems: [], warnings: loaded.warnings}
      ;({keystore, references} = loaded)
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      result = {ok: false, problems: error.problems, warnings: error.warnings}
      ;({keystore, references = []} = error)
    }

    if (this.flags.explain) {
      result.explain = {keystore: await describeKeystoreFile(keystore ?? (await this.paths()).keystore), references}
      if (!this.jsonEnabled()) process.stdout.write(explainText(result.explain))
    }

    for (const warning of result.warnings) this.note(warning)
    if (result.ok) {
      this.say('Config OK')
      return result
    }

    for (const problem of result.problems) process.stderr.write(`error: ${problem}\n`)
    if (this.jsonEnabled()) this.logJson(result)
    this.exit(EXIT.error)
  }
}

/** The explanation for a person: the keystore, then one line per reference. */
function explainText({keystore, references}: NonNullable<TestConfigResult['explain']>): string {
  const lines = [`Keystore ${keystore.path}: ${describeKeystore(keystore)}`]
  if (references.length === 0) lines.push('No ${KEY} references in the configuration.')
  for (const reference of references) {
    const also = reference.alsoInEnvironment ? ' (also set in the environment; the keystore wins)' : ''
    const expires = reference.expires ? `, expires ${reference.expires}` : ''
    lines.push(`\${${reference.key}} in ${reference.setting} at ${reference.where}: from ${SOURCES[reference.source]}${also}${expires}`)
  }

  return `${lines.join('\n')}\n`
}

function describeKeystore(keystore: KeystoreDescription): string {
  if (!keystore.exists) return 'none (references look in the environment only)'
  if (keystore.format === null) return `not a keystore that opens (owner uid ${keystore.uid}, mode ${keystore.mode})`
  const format = keystore.version === null ? keystore.format : `${keystore.format} version ${keystore.version}`
  const owner = `owner ${keystore.user ? `${keystore.user} (uid ${keystore.uid})` : `uid ${keystore.uid}`}`
  return `${format}, ${keystore.passwordProtected ? 'password protected' : 'no password (obfuscated only)'}, ${owner}, mode ${keystore.mode}`
}
