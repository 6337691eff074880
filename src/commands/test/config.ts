/**
 * `apm-server test config`: load the configuration as `run` does and report every problem, or Config OK.
 */
import {BaseCommand, EXIT} from '../../cli/base-command.js'
import {serverFlags} from '../../cli/server-flags.js'

export interface TestConfigResult {
  ok: boolean
  problems: string[]
  warnings: string[]
}

export default class TestConfig extends BaseCommand<typeof TestConfig> {
  static summary = 'Check the configuration: parse apm-server.yml, resolve every ${KEY} reference, validate the settings.'
  static description = `Loads the configuration exactly as "apm-server run" does: apm-server.yml, then -E overrides, then --path.* flags; every \${KEY} reference is looked up in the keystore, then in the environment. The keystore is opened only when a reference needs it (its password comes from APM_SERVER_KEYSTORE_PASSWORD, the file named by APM_SERVER_KEYSTORE_PASSWORD_FILE, or a prompt on a terminal).

Prints "Config OK" and exits 0, or prints every problem, one per line on stderr with file:line and setting, and exits 1. Warnings (unknown settings, deprecated ones) go to stderr and do not fail the check. No value is ever printed.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Check ./apm-server.yml'},
    {command: '<%= config.bin %> <%= command.id %> -c /etc/apm-server/apm-server.yml -E apm-server.rum.enabled=true', description: 'Check another file with an override'},
    {command: '<%= config.bin %> <%= command.id %> --json', description: 'Machine-readable: {"ok", "problems", "warnings"}'},
  ]

  static flags = {...serverFlags}

  async run(): Promise<TestConfigResult> {
    // Loaded here, not at the top: every command's module is loaded at start-up, and keystore commands must not pay for the YAML parser.
    const [{loadServerConfig}, {loadOptionsFrom}, {ConfigError}] = await Promise.all([
      import('../../server/config/load.js'),
      import('../../server/config/options.js'),
      import('../../server/config/server-config.js'),
    ])
    let result: TestConfigResult
    try {
      const loaded = await loadServerConfig(loadOptionsFrom(this.flags, this.openOptions()))
      result = {ok: true, problems: [], warnings: loaded.warnings}
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      result = {ok: false, problems: error.problems, warnings: error.warnings}
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
