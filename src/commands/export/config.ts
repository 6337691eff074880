/**
 * `apm-server export config`: the resolved configuration as YAML or JSON, secrets redacted.
 */
import {BaseCommand, EXIT} from '../../cli/base-command.js'
import {serverFlags} from '../../cli/server-flags.js'

export default class ExportConfig extends BaseCommand<typeof ExportConfig> {
  static summary = 'Print the resolved configuration as YAML, with secrets redacted.'
  static description = `The settings as configured (apm-server.yml, -E overrides, --path.* flags; defaults are not added), with every \${KEY} reference resolved. Every value that came from the keystore is printed as "[redacted]". So is, whatever its source, every setting whose name ends in secret_token, password, passphrase or api_key. Values from the environment are printed as they are.

With --json the same tree is printed as JSON. If the configuration has problems, they are printed one per line on stderr, as "test config" prints them, and the exit code is 1.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'The resolved apm-server.yml'},
    {command: '<%= config.bin %> <%= command.id %> -E apm-server.host=0.0.0.0:8200 --json', description: 'As JSON, with an override'},
  ]

  static flags = {...serverFlags}

  async run(): Promise<Record<string, unknown>> {
    // Loaded here, not at the top: keystore commands must not pay for the YAML parser at start-up.
    const [{loadServerConfig}, {loadOptionsFrom}, {ConfigError}] = await Promise.all([
      import('../../server/config/load.js'),
      import('../../server/config/options.js'),
      import('../../server/config/server-config.js'),
    ])
    const {default: yaml} = await import('yaml') // CommonJS: the module is its default export
    let redacted: Record<string, unknown>
    try {
      const loaded = await loadServerConfig(loadOptionsFrom(this.flags, this.openOptions()))
      for (const warning of loaded.warnings) this.note(warning)
      redacted = loaded.redacted
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      for (const warning of error.warnings) this.note(warning)
      for (const problem of error.problems) process.stderr.write(`error: ${problem}\n`)
      if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify({error: {code: error.code, message: error.message, problems: error.problems}})}\n`)
      this.exit(EXIT.error)
    }

    // lineWidth 0: long values are never folded over lines.
    if (!this.jsonEnabled()) process.stdout.write(yaml.stringify(redacted, {lineWidth: 0}))
    return redacted
  }
}
