/**
 * What each Elastic APM agent needs to talk to a secured APM Server: the secret token, an https server
 * URL, an optional custom certificate, and certificate verification. The names follow Elastic's
 * "Secret token" page and each agent's configuration reference; the rendering turns them into the
 * form an operator pastes: shell `export` lines, or the agent's own config file. OpenTelemetry SDKs
 * (`otel`) take the SDK environment (OTEL_EXPORTER_OTLP_*: the token as a percent-encoded
 * `Authorization` header, as the SDK specification requires) or, as a file, an OpenTelemetry
 * Collector's `otlp` exporter that takes the token from the Collector's environment.
 */
import {KeystoreError} from './errors.js'
import {getSetting, Settings} from './settings.js'

export const AGENT_NAMES = ['go', 'java', 'dotnet', 'nodejs', 'php', 'python', 'ruby', 'otel'] as const
export type AgentName = (typeof AGENT_NAMES)[number]

/** The four things the secret-token page asks of every agent, then what an OpenTelemetry SDK also needs; in the order they are printed. */
export const SETTING_ROLES = ['secret-token', 'server-url', 'ca-cert', 'verify-server-cert', 'protocol', 'service-name'] as const
export type SettingRole = (typeof SETTING_ROLES)[number]

export const DEFAULT_SERVER_URL = 'https://localhost:8200'
export const DEFAULT_TOKEN_KEY = 'APM_SECRET_TOKEN'

/** How an agent's config file spells settings; each has its own quoting rules and comment marker. */
type ConfigSyntax = 'appsettings-json' | 'collector-yaml' | 'ini' | 'js-module' | 'properties' | 'python-dict' | 'yaml'

const COMMENT: Record<ConfigSyntax | 'shell', string> = {
  'appsettings-json': '//',
  'collector-yaml': '#',
  ini: ';',
  'js-module': '//',
  properties: '#',
  'python-dict': '#',
  shell: '#',
  yaml: '#',
}

type Names = Partial<Record<SettingRole, string>>

export interface AgentEntry {
  agent: AgentName
  title: string
  /** ELASTIC_APM_* environment variables; every agent reads them */
  env: Names
  /** the agent's config file, when it has one (the Go agent has none) */
  config?: {file: string; syntax: ConfigSyntax; names: Names}
  /** always shown */
  notes: string[]
  /** shown with --ca-cert; `{ca}` is replaced by its path */
  caNotes?: string[]
  /** for agents without a CA setting, instead of the "rerun with --ca-cert" hint; `{ca}` is the path, or ca.pem */
  trustNote?: string
  /** notes shown only in the config-file form */
  configNotes?: string[]
  /** the value of a role when it is not the plain one (./agent-settings valueOf), by kind */
  values?: Partial<Record<SettingKind, Partial<Record<SettingRole, (input: AgentConfigInput) => boolean | string | undefined>>>>
}

/** The table. One row per agent; the command renders from it and nothing else. */
export const AGENT_TABLE: readonly AgentEntry[] = Object.freeze([
  {
    agent: 'go',
    caNotes: ['ELASTIC_APM_SERVER_CERT pins the server\'s own certificate; if {ca} is a CA that signed it, set ELASTIC_APM_SERVER_CA_CERT_FILE instead'],
    env: {'ca-cert': 'ELASTIC_APM_SERVER_CERT', 'secret-token': 'ELASTIC_APM_SECRET_TOKEN', 'server-url': 'ELASTIC_APM_SERVER_URL', 'verify-server-cert': 'ELASTIC_APM_VERIFY_SERVER_CERT'},
    notes: [],
    title: 'Go',
  },
  {
    agent: 'java',
    config: {file: 'elasticapm.properties', names: {'secret-token': 'secret_token', 'server-url': 'server_urls', 'verify-server-cert': 'verify_server_cert'}, syntax: 'properties'},
    env: {'secret-token': 'ELASTIC_APM_SECRET_TOKEN', 'server-url': 'ELASTIC_APM_SERVER_URLS', 'verify-server-cert': 'ELASTIC_APM_VERIFY_SERVER_CERT'},
    notes: [
      'elasticapm.properties sits next to the agent jar; server_urls takes a comma-separated list (recent agents also accept server_url)',
      'do not pass the token as -Delastic.apm.secret_token: command lines are visible to every user of the host',
    ],
    title: 'Java',
    trustNote: 'no CA setting: a self-signed or private-CA certificate goes into the JVM trustStore: keytool -importcert -cacerts -alias apm-server -file {ca} (Java 8: -keystore $JAVA_HOME/jre/lib/security/cacerts instead of -cacerts)',
  },
  {
    agent: 'dotnet',
    caNotes: ['ServerCert needs agent 1.9 or later'],
    config: {file: 'appsettings.json', names: {'ca-cert': 'ElasticApm:ServerCert', 'secret-token': 'ElasticApm:SecretToken', 'server-url': 'ElasticApm:ServerUrl', 'verify-server-cert': 'ElasticApm:VerifyServerCert'}, syntax: 'appsettings-json'},
    env: {'ca-cert': 'ELASTIC_APM_SERVER_CERT', 'secret-token': 'ELASTIC_APM_SECRET_TOKEN', 'server-url': 'ELASTIC_APM_SERVER_URL', 'verify-server-cert': 'ELASTIC_APM_VERIFY_SERVER_CERT'},
    notes: ['environment variables work in every setup; appsettings.json (or any IConfiguration source) where the agent is given the configuration, as in ASP.NET Core'],
    title: '.NET',
  },
  {
    agent: 'nodejs',
    config: {file: 'elastic-apm-node.js', names: {'ca-cert': 'serverCaCertFile', 'secret-token': 'secretToken', 'server-url': 'serverUrl', 'verify-server-cert': 'verifyServerCert'}, syntax: 'js-module'},
    env: {'ca-cert': 'ELASTIC_APM_SERVER_CA_CERT_FILE', 'secret-token': 'ELASTIC_APM_SECRET_TOKEN', 'server-url': 'ELASTIC_APM_SERVER_URL', 'verify-server-cert': 'ELASTIC_APM_VERIFY_SERVER_CERT'},
    notes: ['elastic-apm-node.js is read from the working directory (or ELASTIC_APM_CONFIG_FILE); the same options can be passed to require(\'elastic-apm-node\').start({...})'],
    title: 'Node.js',
  },
  {
    agent: 'php',
    config: {file: 'php.ini', names: {'secret-token': 'elastic_apm.secret_token', 'server-url': 'elastic_apm.server_url', 'verify-server-cert': 'elastic_apm.verify_server_cert'}, syntax: 'ini'},
    env: {'secret-token': 'ELASTIC_APM_SECRET_TOKEN', 'server-url': 'ELASTIC_APM_SERVER_URL', 'verify-server-cert': 'ELASTIC_APM_VERIFY_SERVER_CERT'},
    notes: ['environment variables must reach the PHP process (for PHP-FPM: env[...] in the pool config, or clear_env = no)'],
    title: 'PHP',
    trustNote: 'no CA setting: a self-signed or private-CA certificate goes into the system trust store (copy {ca} to /usr/local/share/ca-certificates/apm-server.crt, run update-ca-certificates); verify_server_cert=false keeps encryption but not server identity, a last resort',
  },
  {
    agent: 'python',
    caNotes: ['server_cert pins the server\'s own certificate (its validity is not checked); if {ca} is a CA that signed it, use server_ca_cert_file (ELASTIC_APM_SERVER_CA_CERT_FILE) instead'],
    config: {file: 'settings.py (Django) or app.config (Flask)', names: {'ca-cert': 'SERVER_CERT', 'secret-token': 'SECRET_TOKEN', 'server-url': 'SERVER_URL', 'verify-server-cert': 'VERIFY_SERVER_CERT'}, syntax: 'python-dict'},
    env: {'ca-cert': 'ELASTIC_APM_SERVER_CERT', 'secret-token': 'ELASTIC_APM_SECRET_TOKEN', 'server-url': 'ELASTIC_APM_SERVER_URL', 'verify-server-cert': 'ELASTIC_APM_VERIFY_SERVER_CERT'},
    notes: ['the ELASTIC_APM dict is Django\'s settings.py or Flask\'s app.config; elasticapm.Client() takes the same names in lower case (secret_token, server_url, server_cert, verify_server_cert)'],
    title: 'Python',
  },
  {
    agent: 'ruby',
    caNotes: ['agents before 4.0 call this option server_ca_cert (ELASTIC_APM_SERVER_CA_CERT)'],
    config: {file: 'config/elastic_apm.yml', names: {'ca-cert': 'server_ca_cert_file', 'secret-token': 'secret_token', 'server-url': 'server_url', 'verify-server-cert': 'verify_server_cert'}, syntax: 'yaml'},
    env: {'ca-cert': 'ELASTIC_APM_SERVER_CA_CERT_FILE', 'secret-token': 'ELASTIC_APM_SECRET_TOKEN', 'server-url': 'ELASTIC_APM_SERVER_URL', 'verify-server-cert': 'ELASTIC_APM_VERIFY_SERVER_CERT'},
    notes: ['config/elastic_apm.yml is evaluated as ERB, so it can read the token from the environment instead of holding it'],
    title: 'Ruby',
  },
  {
    agent: 'otel',
    config: {
      file: 'otel-collector.yaml',
      names: {'ca-cert': 'exporters.otlp/apm-server.tls.ca_file', 'secret-token': 'exporters.otlp/apm-server.headers.Authorization', 'server-url': 'exporters.otlp/apm-server.endpoint'},
      syntax: 'collector-yaml',
    },
    configNotes: [
      'an OpenTelemetry Collector: add otlp/apm-server to the exporters of its service.pipelines (traces, metrics, logs); it sends OTLP over gRPC',
      'the Collector takes the token from its own environment: set {token} there (apm-server keystore show {token}); the file never holds it',
    ],
    env: {'ca-cert': 'OTEL_EXPORTER_OTLP_CERTIFICATE', protocol: 'OTEL_EXPORTER_OTLP_PROTOCOL', 'secret-token': 'OTEL_EXPORTER_OTLP_HEADERS', 'server-url': 'OTEL_EXPORTER_OTLP_ENDPOINT', 'service-name': 'OTEL_SERVICE_NAME'},
    notes: [
      'OTEL_EXPORTER_OTLP_HEADERS holds the token percent-encoded, as the OpenTelemetry SDK specification requires ("Bearer <token>" is written Bearer%20<token>)',
      'the same URL takes OTLP over gRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc',
    ],
    title: 'OpenTelemetry',
    values: {
      config: {
        'secret-token': (input) => `Bearer \${env:${input.tokenKey}}`,
        'server-url': (input) => hostPort(input.serverUrl),
      },
      env: {
        protocol: () => 'http/protobuf',
        'secret-token': (input) => `Authorization=Bearer%20${input.token === undefined ? `<${input.tokenKey}>` : encodeURIComponent(input.token)}`,
        'service-name': (input) => input.serviceName ?? '<SERVICE_NAME>',
      },
    },
  },
] satisfies AgentEntry[])

/** host:port of a server URL, the default port of its scheme spelled out: the endpoint form of a Collector's gRPC exporter. */
function hostPort(url: string): string {
  const parsed = new URL(url)
  return parsed.port ? parsed.host : `${parsed.host}:${parsed.protocol === 'https:' ? 443 : 80}`
}

export const RUM_NOTE =
  'RUM (browser) agents must not get the secret token: anyone can read it from the page; let them in with anonymous access (apm-server.auth.anonymous) instead'

const NO_CA_HINT = 'self-signed or private-CA server certificate? rerun with --ca-cert PATH'
const NO_CONFIG_FILE = 'this agent has no config file: set these in the environment of the service (or in code)'

export type SettingKind = 'config' | 'env'

export interface AgentSetting {
  role: SettingRole
  name: string
  value: boolean | string
  kind: SettingKind
}

export interface AgentConfigEntry {
  agent: AgentName
  title: string
  /** where the `config` settings go; null when the agent has no config file */
  configFile: null | string
  settings: AgentSetting[]
  notes: string[]
}

/** The `--json` shape of `apm-server agent-config`. */
export interface AgentConfigDocument {
  serverUrl: string
  /** the keystore key the token comes from */
  tokenKey: string
  /** true only with --show-secret: then `secret-token` values hold the real token */
  secretShown: boolean
  agents: AgentConfigEntry[]
  notes: string[]
  warnings: string[]
}

export interface AgentConfigInput {
  agents: readonly AgentName[]
  serverUrl: string
  caCert?: string
  tokenKey: string
  /** the real token; without it the placeholder `<tokenKey>` is used */
  token?: string
  /** OTEL_SERVICE_NAME for the OpenTelemetry SDK; without it the placeholder `<SERVICE_NAME>` */
  serviceName?: string
}

function tableRow(agent: AgentName): AgentEntry {
  return AGENT_TABLE.find((row) => row.agent === agent)!
}

function valueOf(role: SettingRole, input: AgentConfigInput): boolean | string | undefined {
  switch (role) {
    case 'ca-cert': {
      return input.caCert
    }

    case 'secret-token': {
      return input.token ?? `<${input.tokenKey}>`
    }

    case 'server-url': {
      return input.serverUrl
    }

    case 'verify-server-cert': {
      // Printed explicitly so nobody copies a `false` from an old snippet: verification is what makes the token safe.
      return true
    }

    default: {
      return undefined
    }
  }
}

function settingsOf(row: AgentEntry, kind: SettingKind, input: AgentConfigInput): AgentSetting[] {
  const names = (kind === 'env' ? row.env : row.config?.names) ?? {}
  const settings: AgentSetting[] = []
  for (const role of SETTING_ROLES) {
    const name = names[role]
    const special = row.values?.[kind]?.[role]
    // A role with a special value exists only where the plain one does (the CA path only with --ca-cert).
    const plain = valueOf(role, input)
    const value = special && (plain !== undefined || role === 'protocol' || role === 'service-name') ? special(input) : plain
    if (name !== undefined && value !== undefined) settings.push({kind, name, role, value})
  }

  return settings
}

function notesOf(row: AgentEntry, caCert: string | undefined): string[] {
  const fill = (note: string) => note.replaceAll('{ca}', caCert ?? 'ca.pem')
  const notes = [...row.notes]
  if (row.trustNote) notes.push(fill(row.trustNote))
  else if (caCert === undefined) notes.push(NO_CA_HINT)
  if (caCert !== undefined) notes.push(...(row.caNotes ?? []).map((note) => fill(note)))
  return notes
}

/** Checks a server URL given by the user: absolute, http or https. */
export function parseServerUrl(url: string): URL {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new KeystoreError('EUSAGE', `invalid server url ${JSON.stringify(url)}; give an absolute url such as ${DEFAULT_SERVER_URL}`)
  }

  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new KeystoreError('EUSAGE', `server url ${JSON.stringify(url)} is not http or https; give a url such as ${DEFAULT_SERVER_URL}`)
  }

  return parsed
}

/**
 * The URL agents should use, from `apm-server.host` and `apm-server.ssl.*` of a config file. As in Beats,
 * TLS is on when `ssl.enabled` is true, or when a certificate is configured and `ssl.enabled` is not false.
 * A wildcard listen address becomes `localhost`: agents need a name they can reach.
 */
export function serverUrlFromSettings(settings: Settings | undefined): string {
  if (!settings) return DEFAULT_SERVER_URL
  const enabled = getSetting(settings, 'apm-server.ssl.enabled')
  const certificate = getSetting(settings, 'apm-server.ssl.certificate')
  const tls = enabled === true || enabled === 'true' || (enabled === undefined && typeof certificate === 'string' && certificate !== '')
  const host = getSetting(settings, 'apm-server.host')
  let address = typeof host === 'string' && host !== '' && !host.startsWith('unix:') ? host : 'localhost:8200'
  address = address.replace(/^(0\.0\.0\.0|\[::\])?(?=:\d+$)/, 'localhost')
  return `${tls ? 'https' : 'http'}://${address}`
}

/** The one-line warnings for a server URL; empty when it is https. */
export function serverUrlWarnings(url: string): string[] {
  if (parseServerUrl(url).protocol === 'https:') return []
  return [`server url ${url} is not https: agents would send the secret token in clear text; enable TLS on the server (apm-server.ssl.enabled) and use an https:// url`]
}

/**
 * A keystore value as an agent token. Agents send it in an HTTP header and operators paste it into shells
 * and config files, so it must be printable ASCII without spaces. The message never contains the value.
 */
export function agentToken(value: Buffer, key: string): string {
  if (value.length === 0 || !value.every((byte) => byte >= 0x21 && byte <= 0x7e)) {
    throw new KeystoreError(
      'EBADVALUE',
      `the value of key ${key} is not a printable ASCII token without spaces, which agents cannot send; store a new one with "apm-server keystore add ${key} --generate --force"`,
    )
  }

  return value.toString('latin1')
}

/** Everything `agent-config` reports, both setting kinds for each agent. */
export function describeAgentConfig(input: AgentConfigInput): AgentConfigDocument {
  return {
    agents: input.agents.map((agent) => {
      const row = tableRow(agent)
      return {
        agent,
        configFile: row.config?.file ?? null,
        notes: notesOf(row, input.caCert),
        settings: [...settingsOf(row, 'env', input), ...(row.config ? settingsOf(row, 'config', input) : [])],
        title: row.title,
      }
    }),
    notes: [RUM_NOTE],
    secretShown: input.token !== undefined,
    serverUrl: input.serverUrl,
    tokenKey: input.tokenKey,
    warnings: serverUrlWarnings(input.serverUrl),
  }
}

// ---- rendering -------------------------------------------------------------------------------------

const SHELL_SAFE = /^[\w%+,./:=@-]+$/

/** POSIX shell single-quoting, only when needed. */
export function shellQuote(value: string): string {
  return SHELL_SAFE.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`
}

/** java.util.Properties escaping: the file is read as ISO-8859-1, so anything outside printable ASCII becomes \uXXXX. */
function propertiesValue(value: string): string {
  const named: Record<string, string> = {'\t': '\\t', '\n': '\\n', '\r': '\\r', '\\': '\\\\'}
  let out = ''
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i)
    const char = value.charAt(i)
    out += named[char] ?? (unit < 0x20 || unit > 0x7e ? `\\u${unit.toString(16).padStart(4, '0')}` : char)
  }

  // A leading space would be eaten as separator whitespace.
  return out.startsWith(' ') ? `\\${out}` : out
}

function scalar(value: boolean | string, quote: (text: string) => string, booleans: [string, string] = ['true', 'false']): string {
  return typeof value === 'boolean' ? booleans[value ? 0 : 1] : quote(value)
}

const json = (text: string) => JSON.stringify(text)

/** One line per setting; names whose value the syntax cannot hold safely are left out and listed. */
function renderConfig(syntax: ConfigSyntax, settings: AgentSetting[]): {lines: string[]; unrepresentable: string[]} {
  const unrepresentable: string[] = []
  switch (syntax) {
    case 'appsettings-json': {
      const tree: Record<string, Record<string, boolean | string>> = {}
      for (const {name, value} of settings) {
        const [section, key] = name.split(':')
        tree[section] ??= {}
        tree[section][key] = value
      }

      return {lines: JSON.stringify(tree, null, 2).split('\n'), unrepresentable}
    }

    case 'ini': {
      const lines: string[] = []
      for (const {name, value} of settings) {
        // php.ini double quotes cannot hold a quote or a backslash reliably, and expand ${...}.
        if (typeof value === 'string' && /["\\]|\$\{|[\u0000-\u001F]/.test(value)) {
          unrepresentable.push(name)
          continue
        }

        lines.push(`${name}=${scalar(value, json)}`)
      }

      return {lines, unrepresentable}
    }

    case 'js-module': {
      return {lines: ['module.exports = {', ...settings.map(({name, value}) => `  ${name}: ${scalar(value, json)},`), '}'], unrepresentable}
    }

    case 'properties': {
      return {lines: settings.map(({name, value}) => `${name}=${scalar(value, propertiesValue)}`), unrepresentable}
    }

    case 'collector-yaml': {
      return {lines: collectorYaml(settings), unrepresentable}
    }

    case 'python-dict': {
      return {lines: ['ELASTIC_APM = {', ...settings.map(({name, value}) => `    ${json(name)}: ${scalar(value, json, ['True', 'False'])},`), '}'], unrepresentable}
    }

    case 'yaml': {
      // The Ruby agent runs the file through ERB first: "<%%" is ERB's literal "<%".
      const quote = (text: string) => json(text).replaceAll('<%', '<%%')
      return {lines: settings.map(({name, value}) => `${name}: ${scalar(value, quote)}`), unrepresentable}
    }
  }
}

/** Settings named by dotted paths (the exporter's name holds a slash, never a dot) as nested YAML, values JSON-quoted. */
function collectorYaml(settings: AgentSetting[]): string[] {
  type Tree = Map<string, Tree | boolean | string>
  const root: Tree = new Map()
  // The endpoint first, as the Collector's documentation writes an exporter.
  const ordered = [...settings].sort((a, b) => Number(b.role === 'server-url') - Number(a.role === 'server-url'))
  for (const {name, value} of ordered) {
    const parts = name.split('.')
    let node = root
    for (const part of parts.slice(0, -1)) {
      if (!node.has(part)) node.set(part, new Map())
      node = node.get(part) as Tree
    }

    node.set(parts.at(-1)!, value)
  }

  const lines: string[] = []
  const emit = (node: Tree, indent: string) => {
    for (const [key, value] of node) {
      if (value instanceof Map) {
        lines.push(`${indent}${key}:`)
        emit(value, `${indent}  `)
      } else {
        lines.push(`${indent}${key}: ${scalar(value, json)}`)
      }
    }
  }

  emit(root, '')
  return lines
}

export type AgentConfigForm = 'config' | 'env'

/**
 * The text an operator pastes: for each agent a header comment, its settings, and its notes as comments,
 * in the agent's environment form (`export` lines) or its config-file form.
 */
export function renderAgentConfig(document: AgentConfigDocument, form: AgentConfigForm): string {
  const blocks = document.agents.map((entry) => {
    const row = tableRow(entry.agent)
    const useConfig = form === 'config' && row.config !== undefined
    const comment = useConfig ? COMMENT[row.config!.syntax] : COMMENT.shell
    const settings = entry.settings.filter((setting) => setting.kind === (useConfig ? 'config' : 'env'))
    // A config file with notes of its own (the Collector's) shows those instead of the environment's.
    const configNotes = useConfig && row.configNotes ? row.configNotes.map((note) => note.replaceAll('{token}', document.tokenKey)) : undefined
    const notes = configNotes ? [...configNotes, ...entry.notes.filter((note) => !row.notes.includes(note))] : [...entry.notes]
    let lines: string[]
    if (useConfig) {
      const rendered = renderConfig(row.config!.syntax, settings)
      lines = rendered.lines
      for (const name of rendered.unrepresentable) notes.push(`${name}: the value has characters ${row.config!.file} cannot hold; set ${row.env[settings.find((s) => s.name === name)!.role]} in the environment instead`)
    } else {
      lines = settings.map(({name, value}) => `export ${name}=${scalar(value, shellQuote)}`)
      if (form === 'config') notes.unshift(NO_CONFIG_FILE)
    }

    const where = useConfig ? row.config!.file : 'environment variables'
    return [`${comment} ${entry.title} agent: ${where}`, ...lines, ...notes.map((note) => `${comment} ${note}`)].join('\n')
  })
  return `${blocks.join('\n\n')}\n`
}
