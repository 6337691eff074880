/**
 * The settings table: every setting the server reads, its type and bounds, and the few names the
 * loader treats specially (the secret token, the path settings). Anything not in the table is warned
 * about and ignored. Also the shapes a setting takes while it is loaded and resolved.
 */
import type {Node} from 'yaml'

export type SettingType = 'bool' | 'duration' | 'host' | 'int' | 'level' | 'list' | 'path' | 'string'

export interface SettingSpec {
  type: SettingType
  min?: number
  max?: number
  /** base of a relative path */
  relativeTo?: 'config' | 'cwd' | 'home'
}

/** The settings the server reads. Anything else is warned about and ignored. */
export const KNOWN_SETTINGS: Readonly<Record<string, SettingSpec>> = Object.freeze({
  'apm-server.auth.anonymous.allow_agent': {type: 'list'},
  'apm-server.auth.anonymous.allow_service': {type: 'list'},
  'apm-server.auth.anonymous.enabled': {type: 'bool'},
  'apm-server.auth.anonymous.rate_limit.event_limit': {min: 1, type: 'int'},
  'apm-server.auth.anonymous.rate_limit.ip_limit': {min: 1, type: 'int'},
  'apm-server.auth.secret_token': {type: 'string'},
  'apm-server.auth.secret_token_grace_period': {type: 'duration'},
  'apm-server.host': {type: 'host'},
  'apm-server.max_event_size': {min: 1, type: 'int'},
  'apm-server.shutdown_timeout': {type: 'duration'},
  'apm-server.rum.allow_origins': {type: 'list'},
  'apm-server.rum.enabled': {type: 'bool'},
  // Legacy (6.x/7.x) spelling: the Go server 8.x silently ignores it and runs open; we honour it and warn.
  'apm-server.secret_token': {type: 'string'},
  'apm-server.ssl.certificate': {relativeTo: 'config', type: 'path'},
  'apm-server.ssl.enabled': {type: 'bool'},
  'apm-server.ssl.key': {relativeTo: 'config', type: 'path'},
  'apm-server.ssl.key_passphrase': {type: 'string'},
  // Beats' monitoring endpoint (libbeat/api): read by ./monitoring.ts.
  'http.enabled': {type: 'bool'},
  'http.host': {type: 'string'},
  'http.port': {max: 65_535, min: 0, type: 'int'},
  'keystore.path': {relativeTo: 'home', type: 'path'},
  'logging.level': {type: 'level'},
  'output.file.enabled': {type: 'bool'},
  'output.file.filename': {type: 'string'},
  // Beats' file output bounds.
  'output.file.number_of_files': {max: 1024, min: 2, type: 'int'},
  'output.file.path': {relativeTo: 'home', type: 'path'},
  'output.file.rotate_every_kb': {min: 1, type: 'int'},
  // Beats' Redis output (libbeat outputs/redis): read by ./redis.ts.
  'output.redis.backoff.init': {type: 'duration'},
  'output.redis.backoff.max': {type: 'duration'},
  // 0 or less: batches are not split by count (they still are by size, see outputs/redis.ts)
  'output.redis.bulk_max_size': {max: 1_000_000, min: -1, type: 'int'},
  'output.redis.datatype': {type: 'string'},
  'output.redis.db': {max: 2_147_483_647, min: 0, type: 'int'},
  'output.redis.enabled': {type: 'bool'},
  'output.redis.hosts': {type: 'list'},
  // Beats' deprecated spelling of key
  'output.redis.index': {type: 'string'},
  'output.redis.key': {type: 'string'},
  'output.redis.loadbalance': {type: 'bool'},
  // less than 0: retried until published (or shutdown)
  'output.redis.max_retries': {max: 1_000_000, min: -1, type: 'int'},
  'output.redis.password': {type: 'string'},
  'output.redis.port': {max: 65_535, min: 1, type: 'int'},
  'output.redis.ssl.certificate': {relativeTo: 'config', type: 'path'},
  'output.redis.ssl.certificate_authorities': {relativeTo: 'config', type: 'list'},
  'output.redis.ssl.enabled': {type: 'bool'},
  'output.redis.ssl.key': {relativeTo: 'config', type: 'path'},
  'output.redis.ssl.key_passphrase': {type: 'string'},
  'output.redis.ssl.verification_mode': {type: 'string'},
  'output.redis.timeout': {type: 'duration'},
  'output.redis.username': {type: 'string'},
  'path.config': {relativeTo: 'cwd', type: 'path'},
  'path.data': {relativeTo: 'cwd', type: 'path'},
  'path.home': {relativeTo: 'cwd', type: 'path'},
  'path.logs': {relativeTo: 'cwd', type: 'path'},
})

export const TOKEN = 'apm-server.auth.secret_token'
export const LEGACY_TOKEN = 'apm-server.secret_token'

/** Resolved before the keystore is opened (they decide where it is), in this order, from the environment only. */
export const PATH_SETTINGS = ['path.home', 'path.config', 'path.data', 'path.logs', 'keystore.path'] as const

export const LOG_LEVELS = ['debug', 'info', 'warning', 'error']

/** One setting as configured: a YAML node to resolve, or a flag value taken as it is. */
export interface Setting {
  name: string
  /** "file:line", "-E name" or "--path.home" */
  where: string
  node?: Node | null
  literal?: string
  /** where a node inside the value is, for list items */
  locate: (node: Node) => string
}

export interface Resolved {
  setting: Setting
  value: unknown
  /** the value with every secret replaced by "[redacted]" (./redact.ts) */
  shown: unknown
  sensitive: boolean
  /** some reference in it did not resolve (already reported) */
  failed: boolean
}

export interface Report {
  message: string
  /** false for problems that do not depend on what lookups find (syntax, aliases) */
  fromLookup: boolean
}

/** A problem or warning about a setting, to be listed in the order the settings were written. */
export type Note = (setting: Setting | undefined, message: string) => void

/** Parses a duration such as "60s", "10m", "1h30m", "500ms" or "0" into milliseconds; undefined if it is not one. */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0
  const part = /(\d{1,15}(?:\.\d{1,9})?)(ms|h|m|s)/y
  const scale: Record<string, number> = {h: 3_600_000, m: 60_000, ms: 1, s: 1000}
  let total = 0
  let at = 0
  while (at < text.length) {
    part.lastIndex = at
    const match = part.exec(text)
    if (!match) return undefined
    total += Number(match[1]) * scale[match[2]]
    at = part.lastIndex
  }

  return at > 0 && Number.isSafeInteger(Math.round(total)) ? Math.round(total) : undefined
}

export const TYPE_WORDS: Record<SettingType, string> = {
  bool: 'true or false',
  duration: 'a duration',
  host: 'host:port',
  int: 'a whole number',
  level: 'a log level',
  list: 'a list',
  path: 'a path',
  string: 'a string',
}
