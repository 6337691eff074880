/**
 * `apm-server agent-config`: the settings each APM agent needs to reach this server, in each agent's forms.
 */
import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {
  AGENT_NAMES,
  AgentConfigDocument,
  agentToken,
  DEFAULT_SERVER_URL,
  DEFAULT_TOKEN_KEY,
  describeAgentConfig,
  parseServerUrl,
  renderAgentConfig,
  serverUrlFromSettings,
} from '../core/agent-settings.js'
import {assertValidKeyName} from '../core/entries.js'
import {openKeystore} from '../core/keystore.js'

export default class AgentConfig extends BaseCommand<typeof AgentConfig> {
  static summary = "Print the settings each APM agent (and OpenTelemetry SDK) needs to reach this server: secret token, https URL, certificate."
  static description = `Follows the agent tables of Elastic's "Secret token" page: Go, Java, .NET, Node.js, PHP, Python and Ruby; and OpenTelemetry SDKs (otel), which send OTLP to the same URL with the same token.

--format env prints shell "export" lines (ELASTIC_APM_* variables, which every agent reads). --format file prints each agent's own config-file form, in that file's syntax: elasticapm.properties (Java), appsettings.json (.NET), elastic-apm-node.js (Node.js), php.ini (PHP), the ELASTIC_APM dict (Python), config/elastic_apm.yml (Ruby), an OpenTelemetry Collector's otlp exporter (otel, the token taken from the Collector's environment); the Go agent has no config file, so it stays in env form. --format yaml is the earlier name of --format file, kept as an alias for existing scripts. --format json prints the --json document.

The server URL defaults to the one apm-server.yml implies (apm-server.host, https when apm-server.ssl is enabled), else ${DEFAULT_SERVER_URL}. A URL that is not https gets a warning on stderr.

For OpenTelemetry SDKs: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS (Authorization=Bearer%20<token>, percent-encoded as the SDK specification requires), OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_PROTOCOL and OTEL_SERVICE_NAME (--service-name, else the placeholder <SERVICE_NAME>).

The token is the placeholder <APM_SECRET_TOKEN> (<KEY> with --token-key) and the keystore is not opened, unless --show-secret: then it is read from the keystore (key APM_SECRET_TOKEN, or --token-key) and printed, in the text and in JSON output alike. RUM (browser) agents must never get it.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Every agent, as environment variables, token as a placeholder'},
    {command: '<%= config.bin %> <%= command.id %> --agent nodejs --ca-cert /etc/apm-server/ca.pem', description: 'The Node.js agent, trusting a self-signed server certificate'},
    {command: '<%= config.bin %> <%= command.id %> --agent java --format file --server-url https://apm.example.com:8200 > elasticapm.properties', description: "The Java agent's config file"},
    {command: 'eval "$(<%= config.bin %> <%= command.id %> --agent go --show-secret)" && ./my-go-service', description: 'Start a Go service with the real token from the keystore'},
    {command: '<%= config.bin %> <%= command.id %> --agent python --json', description: 'Machine-readable: setting names and values for both forms'},
    {command: 'eval "$(<%= config.bin %> <%= command.id %> --agent otel --service-name checkout --ca-cert ca.pem --show-secret)" && node --import ./otel.mjs app.js', description: 'An OpenTelemetry SDK with the real token, trusting ca.pem'},
  ]

  static flags = {
    agent: Flags.option({description: 'one agent [default: all]', options: AGENT_NAMES})(),
    'ca-cert': Flags.string({description: "path, on the agent's host, of the server certificate or its CA, for self-signed or private-CA servers", helpValue: 'PATH'}),
    format: Flags.option({
      default: 'env' as const,
      description: "env: export lines; file: the agent's own config-file form, in that file's syntax; yaml: an alias of file (its earlier name); json: the --json document",
      options: ['env', 'file', 'yaml', 'json'] as const,
    })(),
    'server-url': Flags.string({description: `URL agents use to reach the server [default: from apm-server.yml, else ${DEFAULT_SERVER_URL}]`, helpValue: 'URL'}),
    'service-name': Flags.string({description: 'OTEL_SERVICE_NAME for the OpenTelemetry SDK (--agent otel) [default: the placeholder <SERVICE_NAME>]', helpValue: 'NAME'}),
    'show-secret': Flags.boolean({description: 'read the token from the keystore and print it (also in JSON output)'}),
    'token-key': Flags.string({default: DEFAULT_TOKEN_KEY, description: 'keystore key holding the token', helpValue: 'KEY'}),
  }

  async run(): Promise<AgentConfigDocument> {
    const {agent, 'ca-cert': caCert, format, 'show-secret': showSecret, 'token-key': tokenKey} = this.flags
    assertValidKeyName(tokenKey)
    // The config file is read only when it is needed; the keystore only with --show-secret.
    const paths = showSecret || this.flags['server-url'] === undefined ? await this.paths() : undefined
    const serverUrl = this.flags['server-url'] ?? serverUrlFromSettings(paths?.settings)
    parseServerUrl(serverUrl)
    let token: string | undefined
    if (showSecret) {
      const keystore = await openKeystore(paths!.keystore, this.openOptions())
      token = agentToken(keystore.get(tokenKey), tokenKey)
    }

    const document = describeAgentConfig({agents: agent ? [agent] : AGENT_NAMES, caCert, serverUrl, serviceName: this.flags['service-name'], token, tokenKey})
    for (const warning of document.warnings) this.note(warning)
    if (this.jsonEnabled()) return document
    if (format === 'json') {
      process.stdout.write(`${JSON.stringify(document, null, 2)}\n`)
    } else {
      process.stdout.write(renderAgentConfig(document, format === 'env' ? 'env' : 'config'))
      for (const note of document.notes) process.stderr.write(`note: ${note}\n`)
    }

    return document
  }
}
