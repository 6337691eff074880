/**
 * The server's configuration as the rest of the server sees it: the typed {@link ServerConfig}, what a
 * load returns with it ({@link LoadedConfig}), what a load needs ({@link LoadOptions}), and the one
 * error that lists every problem of a configuration ({@link ConfigError}).
 */
import {ErrorCode, KeystoreError} from '../../core/errors.js'
import type {PasswordSource} from '../../core/keystore.js'
import type {ConfiguredReference} from './provenance.js'

export interface ServerConfig {
  /** "host:port" as configured; default "localhost:8200"; port 0 = any free port */
  host: string
  /** undefined = no secret token configured (auth off). Never an empty string: that fails closed at load. */
  secretToken?: string
  /** apm-server.auth.secret_token_grace_period in ms (durations like "60s", "10m"; default 0) */
  secretTokenGracePeriodMs: number
  anonymous: {
    /** apm-server.auth.anonymous.enabled; default: true when RUM is enabled and auth is on, as Elastic documents */
    enabled: boolean
    allowAgent: string[]
    allowService: string[]
    rateLimit: {eventLimit: number; ipLimit: number}
  }
  /** certificate and key are absolute paths (relative ones are resolved against path.config) */
  ssl: {enabled: boolean; certificate?: string; key?: string; keyPassphrase?: string}
  rum: {enabled: boolean; allowOrigins: string[]}
  maxEventSize: number
  /**
   * The file output's settings (the embedded default output), and `redis` when `output.redis` is the
   * enabled output instead (exactly one output is enabled, as in Beats: ./redis.ts).
   */
  output: {path: string; filename: string; rotateEveryKb: number; numberOfFiles: number; redis?: RedisOutputConfig}
  paths: {home: string; config: string; data: string; logs: string}
  /** apm-server.shutdown_timeout in ms when set (default 30 s): how long a stop waits for requests and the output */
  shutdownTimeoutMs?: number
  /** logging.level when set: debug, info, warning or error */
  logLevel?: string
  /** the monitoring endpoint (http.*); absent when no http.* setting is set, and then off */
  monitoring?: MonitoringConfig
}

/** Beats' local monitoring endpoint (libbeat/api): http.enabled, http.host, http.port. */
export interface MonitoringConfig {
  enabled: boolean
  /** a host name or IP address (default localhost) */
  host: string
  /** default 5066; 0 picks a free port */
  port: number
  /** http.host was set: only then may the endpoint listen on an address other than a loopback one */
  hostSet: boolean
}

/** One entry of output.redis.hosts: `host`, `host:port`, or a redis:// or rediss:// URL. */
export interface RedisHost {
  host: string
  port: number
  /** rediss:// (true), redis:// (false), or no scheme: TLS as output.redis.ssl says (undefined) */
  tls?: boolean
  /** a URL's own credentials (`redis://user:password@host`), which win over output.redis.username/password */
  username?: string
  password?: string
  /** "host:port" with the scheme when given, never the credentials: what messages and stats name */
  label: string
}

/** output.redis, read with Beats' defaults (libbeat outputs/redis). Durations in ms. */
export interface RedisOutputConfig {
  hosts: RedisHost[]
  username?: string
  password?: string
  db: number
  /** the list or channel name */
  key: string
  datatype: 'channel' | 'list'
  timeoutMs: number
  /** events per RPUSH (or PUBLISH pipeline); 0 or less: not split by count */
  bulkMaxSize: number
  backoff: {initMs: number; maxMs: number}
  /** failed sends of a batch before its events are dropped; less than 0: never dropped */
  maxRetries: number
  loadbalance: boolean
  /** TLS for hosts without a scheme; rediss:// hosts always use it (the system's CAs unless given) */
  ssl: {
    enabled: boolean
    certificateAuthorities: string[]
    verificationMode: 'certificate' | 'full' | 'none' | 'strict'
    certificate?: string
    key?: string
    keyPassphrase?: string
  }
}

/** What the config file gave: nothing (`missing`), no settings (`empty`: blank, comments only) or settings. */
export type FileState = 'empty' | 'missing' | 'read'

export interface LoadedConfig {
  config: ServerConfig
  /** the config file path (may not exist: then defaults, -E and flags only) */
  file: string
  fileState: FileState
  /** the keystore keys that references took their values from (names only), sorted */
  keystoreKeys: string[]
  /** set when the secret token is turned off on purpose: the -E that set it to null */
  tokenOffBy?: string
  /** the keystore path the references were (or would be) looked up in */
  keystore: string
  /** deprecation and unknown-setting warnings, one line each, never holding a value */
  warnings: string[]
  /** every `${KEY}` of the configuration and where its value came from (./provenance.ts) */
  references: ConfiguredReference[]
  /** the resolved settings tree, as configured (no defaults added), with secrets replaced by "[redacted]" */
  redacted: Record<string, unknown>
}

export interface LoadOptions {
  flags: {config?: string; 'path.home'?: string; 'path.config'?: string; 'path.data'?: string; 'strict.perms'?: boolean}
  /** -E key=value overrides, in order */
  overrides: string[]
  env: NodeJS.ProcessEnv
  /** keystore password source, asked only when a reference needs a protected keystore */
  password?: PasswordSource
  /** keystore permission check; default from flags['strict.perms'], then BEAT_STRICT_PERMS, then true */
  strictPerms?: boolean
  /** base of relative paths; default process.cwd() */
  cwd?: string
  /** the time expiry is judged at, in ms (tests); default now, or APM_SERVER_TEST_NOW in `env` with a warning */
  now?: number
  /**
   * This load is a reload of a running configuration (`config` as it runs): it must not leave the server
   * less protected (see {@link reloadRefusals}), the file it came from must still hold settings, and a key
   * it took from the keystore must come from the keystore again, never silently from the environment.
   */
  reloadOf?: Pick<LoadedConfig, 'config' | 'fileState' | 'keystoreKeys'>
}

/** Problems (or warnings) listed one by one; the rest are counted. A config file of 60,000 settings made 60,000 lines. */
export const MAX_LISTED_NOTES = 50

/** The first {@link MAX_LISTED_NOTES} of `lines`, and a count of the rest. */
export function capNotes(lines: string[], noun: string): string[] {
  if (lines.length <= MAX_LISTED_NOTES) return lines
  return [...lines.slice(0, MAX_LISTED_NOTES), `... and ${lines.length - MAX_LISTED_NOTES} more ${noun}`]
}

/**
 * Every problem of a configuration at once (the first {@link MAX_LISTED_NOTES}, and a count). `problems` are single lines naming file:line and setting.
 * When the keystore could not be opened, `keystoreCode` keeps its error code (EDECRYPT, ENOPASSWORD, ...).
 */
export class ConfigError extends KeystoreError {
  readonly problems: string[]
  /** how many problems there were, listed or not */
  readonly count: number
  readonly warnings: string[]
  readonly keystoreCode?: ErrorCode
  /** the keystore path and the references, when the load got as far as resolving them (test config --explain) */
  keystore?: string
  references?: ConfiguredReference[]

  constructor(allProblems: string[], allWarnings: string[] = [], keystoreError?: KeystoreError) {
    const problems = capNotes(allProblems, 'problems')
    const message = problems.length === 1 ? problems[0] : `${allProblems.length} configuration problems:\n${problems.join('\n')}`
    super('ECONFIG', message, keystoreError ? {cause: keystoreError} : undefined)
    this.name = 'ConfigError'
    this.problems = problems
    this.count = allProblems.length
    this.warnings = capNotes(allWarnings, 'warnings')
    if (keystoreError) this.keystoreCode = keystoreError.code
  }
}
