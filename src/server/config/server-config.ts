/**
 * The server's configuration as the rest of the server sees it: the typed {@link ServerConfig}, what a
 * load returns with it ({@link LoadedConfig}), what a load needs ({@link LoadOptions}), and the one
 * error that lists every problem of a configuration ({@link ConfigError}).
 */
import {ErrorCode, KeystoreError} from '../../core/errors.js'
import type {PasswordSource} from '../../core/keystore.js'

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
  output: {path: string; filename: string; rotateEveryKb: number; numberOfFiles: number}
  paths: {home: string; config: string; data: string; logs: string}
  /** logging.level when set: debug, info, warning or error */
  logLevel?: string
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
