/**
 * `apm-server test output`: load the configuration as `run` does, then reach the configured output
 * (src/server/outputs/test-output.ts) and report each host OK or the reason, as Beats' `test output`.
 */
import {BaseCommand, EXIT} from '../../cli/base-command.js'
import {serverFlags} from '../../cli/server-flags.js'
import {KeystoreError} from '../../core/errors.js'
import type {OutputTestResult} from '../../server/outputs/test-output.js'

export default class TestOutput extends BaseCommand<typeof TestOutput> {
  static summary = 'Check that the configured output can be reached: connect, authenticate, report each host.'
  static description = `Loads the configuration exactly as "apm-server run" does (every \${KEY} reference resolved from the keystore, then the environment), then, for output.redis, takes each host through the steps the server takes: parse host, dns lookup, dial up, TLS, talk to server (authenticate with output.redis.username and password, select output.redis.db). The first failing step of a host says why. For the file output, checks that its directory can be written. Nothing is written to the output.

Exits 0 when every host is OK, 1 otherwise (or when the configuration has problems, printed as "test config" prints them). No password or user name is ever printed.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Check the output of ./apm-server.yml'},
    {command: '<%= config.bin %> <%= command.id %> -E \'output.redis.hosts=["redis-2:6379"]\'', description: 'Check another Redis host with the same credentials'},
    {command: '<%= config.bin %> <%= command.id %> --json', description: 'Machine-readable: {"ok", "output", "hosts": [{"host", "ok", "steps"}]}'},
  ]

  static flags = {...serverFlags}

  async run(): Promise<OutputTestResult> {
    // Loaded here, not at the top: every command's module is loaded at start-up.
    const [{loadServerConfig}, {loadOptionsFrom}, {ConfigError}, {testOutput}] = await Promise.all([
      import('../../server/config/load.js'),
      import('../../server/config/options.js'),
      import('../../server/config/server-config.js'),
      import('../../server/outputs/test-output.js'),
    ])
    let result: OutputTestResult
    try {
      const loaded = await loadServerConfig(loadOptionsFrom(this.flags, this.openOptions()))
      for (const warning of loaded.warnings) this.note(warning)
      result = await testOutput(loaded.config.output)
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      for (const warning of error.warnings) this.note(warning)
      for (const problem of error.problems) process.stderr.write(`error: ${problem}\n`)
      throw new KeystoreError('ECONFIG', 'cannot test the output: the configuration has problems; fix them (check with "apm-server test config")')
    }

    if (!this.jsonEnabled()) process.stdout.write(render(result))
    if (result.ok) return result
    if (this.jsonEnabled()) this.logJson(result)
    this.exit(EXIT.error)
  }
}

/** Beats' layout: the host, then one line a step, `name... OK`, `name... WARN why` or `name... ERROR why`. */
function render(result: OutputTestResult): string {
  const lines: string[] = []
  for (const host of result.hosts) {
    lines.push(`${result.output}: ${host.host}...`)
    for (const step of host.steps) {
      if (step.name === 'addresses') lines.push(`  addresses: ${step.detail}`)
      else lines.push(`  ${step.name}... ${step.status.toUpperCase()}${step.detail === '' ? '' : ` ${step.detail}`}`)
    }
  }

  return `${lines.join('\n')}\n`
}
