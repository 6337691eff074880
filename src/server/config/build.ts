/**
 * From resolved settings to the typed {@link ServerConfig}: each setting read as its type within its
 * bounds, defaults filled in as Elastic documents them, and every bad value reported against the setting
 * it came from. Fail closed: a secret token that is present but resolves to nothing, is only whitespace
 * or is not a string is a problem, never "no token".
 */
import {constants, promises as fs} from 'node:fs'
import path from 'node:path'

import {isMap, isScalar} from 'yaml'

import {readMonitoring} from './monitoring.js'
import {readRedisOutput} from './redis.js'
import type {ServerConfig} from './server-config.js'
import {KNOWN_SETTINGS, LEGACY_TOKEN, LOG_LEVELS, Note, parseDuration, Resolved, TOKEN, TYPE_WORDS} from './settings.js'

export interface BuildContext {
  resolved: Map<string, Resolved>
  problem: Note
  warn: Note
  cwd: string
  home: string
  configDir: string
  data: string
  logs: string
}

/** Reads resolved settings as their types; a bad value is reported against its setting and the fallback used. */
export class SettingReader {
  constructor(private readonly context: BuildContext) {}

  /** The setting was set but did not resolve (already reported). */
  failed(name: string): boolean {
    return this.context.resolved.get(name)?.failed ?? false
  }

  bad(name: string, message: string): void {
    const entry = this.context.resolved.get(name)
    this.context.problem(entry?.setting, `${entry ? `${entry.setting.where}: ` : ''}${name}: ${message}`)
  }

  /** The configured value, or undefined when unset, empty (null) or already reported. */
  raw(name: string): Resolved | undefined {
    const entry = this.context.resolved.get(name)
    if (!entry || entry.failed || entry.value === null || entry.value === undefined) return undefined
    return entry
  }

  string(name: string): string | undefined {
    const entry = this.raw(name)
    if (!entry) return undefined
    const text = textOf(entry)
    if (text === undefined) this.bad(name, 'must be a string')
    return text
  }

  bool(name: string, fallback: boolean): boolean {
    const entry = this.raw(name)
    if (!entry) return fallback
    if (typeof entry.value === 'boolean') return entry.value
    if (entry.value === 'true' || entry.value === 'false') return entry.value === 'true'
    this.bad(name, 'must be true or false')
    return fallback
  }

  int(name: string, fallback: number): number {
    const entry = this.raw(name)
    if (!entry) return fallback
    const {max = Number.MAX_SAFE_INTEGER, min = 0} = KNOWN_SETTINGS[name]
    const value = typeof entry.value === 'string' && /^\d{1,15}$/.test(entry.value) ? Number(entry.value) : entry.value
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max) return value
    this.bad(name, `must be a whole number from ${min} to ${max}`)
    return fallback
  }

  list(name: string, fallback: string[]): string[] {
    const entry = this.raw(name)
    if (!entry) return fallback
    // A single string is one item: a value is never split on commas.
    const items = Array.isArray(entry.value) ? entry.value.map((item) => textOf(entry, item)) : [textOf(entry)]
    if (items.every((item): item is string => item !== undefined)) return items
    this.bad(name, 'must be a list of strings')
    return fallback
  }

  path(name: string): string | undefined {
    const text = this.string(name)
    if (text === undefined) return undefined
    if (text === '') {
      this.bad(name, 'must be a non-empty path')
      return undefined
    }

    if (text.includes('-----BEGIN')) {
      this.bad(name, 'inline PEM content is not supported; write the PEM to a file and give its path')
      return undefined
    }

    const {configDir, cwd, home} = this.context
    const base = {config: configDir, cwd, home}[KNOWN_SETTINGS[name].relativeTo ?? 'home']
    return path.resolve(base, text)
  }
}

/** A scalar as text. A plain YAML number or boolean keeps its source spelling: "007" stays "007". */
function textOf(entry: Resolved, value: unknown = entry.value): string | undefined {
  if (typeof value === 'string') return value
  const node = entry.setting.node
  if (value === entry.value && isScalar(node) && node.source !== undefined && (typeof value === 'number' || typeof value === 'boolean')) return node.source
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return undefined
}

export async function buildConfig(context: BuildContext): Promise<ServerConfig> {
  checkUnknownSettings(context.resolved, context.problem, context.warn)
  const read = new SettingReader(context)
  const host = read.string('apm-server.host') ?? 'localhost:8200'
  const port = /^(?:\[[^\]]*\]|[^:[\]]*):(\d{1,5})$/.exec(host)?.[1]
  if (port === undefined || Number(port) > 65_535) read.bad('apm-server.host', 'must be host:port with a port from 0 to 65535 (0 picks a free port), e.g. localhost:8200')

  const secretToken = readSecretToken(context.resolved, read, context.warn)
  const secretTokenGracePeriodMs = readGracePeriod(read)
  const shutdownTimeoutMs = readShutdownTimeout(read)
  const rumEnabled = read.bool('apm-server.rum.enabled', false)
  const ssl = await readSsl(read, context.resolved)
  const logLevel = read.string('logging.level')
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel)) read.bad('logging.level', `must be one of ${LOG_LEVELS.join(', ')}`)
  const filename = read.string('output.file.filename') ?? 'apm-server'
  if (filename === '' || filename.includes('/') || filename.includes(path.sep)) read.bad('output.file.filename', 'must be a file name without a directory; put the directory in output.file.path')
  const monitoring = readMonitoring(read)
  refuseSecretsInNames(context.resolved, read)
  const redis = await readRedisOutput(read, context, (file, name) => checkReadable(file, name, context.resolved.get(name)?.sensitive ?? false, (setting, message) => read.bad(setting, message)))

  return {
    anonymous: {
      allowAgent: read.list('apm-server.auth.anonymous.allow_agent', ['rum-js', 'js-base']),
      allowService: read.list('apm-server.auth.anonymous.allow_service', []),
      // Elastic: anonymous access is on by default when RUM is enabled and auth is configured.
      enabled: read.bool('apm-server.auth.anonymous.enabled', rumEnabled && secretToken !== undefined),
      rateLimit: {
        eventLimit: read.int('apm-server.auth.anonymous.rate_limit.event_limit', 300),
        ipLimit: read.int('apm-server.auth.anonymous.rate_limit.ip_limit', 1000),
      },
    },
    host,
    maxEventSize: read.int('apm-server.max_event_size', 307_200),
    output: {
      filename,
      numberOfFiles: read.int('output.file.number_of_files', 7),
      path: read.path('output.file.path') ?? path.join(context.data, 'apm-server'),
      rotateEveryKb: read.int('output.file.rotate_every_kb', 10_240),
      ...(redis ? {redis} : {}),
    },
    paths: {config: context.configDir, data: context.data, home: context.home, logs: context.logs},
    rum: {allowOrigins: read.list('apm-server.rum.allow_origins', ['*']), enabled: rumEnabled},
    secretTokenGracePeriodMs,
    ssl,
    ...(secretToken === undefined ? {} : {secretToken}),
    ...(logLevel === undefined ? {} : {logLevel}),
    ...(shutdownTimeoutMs === undefined ? {} : {shutdownTimeoutMs}),
    ...(monitoring === undefined ? {} : {monitoring}),
  }
}

/**
 * The server creates the output's directory and files by these names, where other local users may list
 * them: a value from the keystore there (`${APM_SECRET_TOKEN}` in a path, say) would be a secret in a file
 * name. Paths the server only opens (the TLS files) may come from the keystore: it never shows them.
 */
const CREATED_NAMES = ['output.file.path', 'output.file.filename']

function refuseSecretsInNames(resolved: Map<string, Resolved>, read: SettingReader): void {
  for (const name of CREATED_NAMES) {
    const entry = resolved.get(name)
    if (entry?.sensitive && !entry.failed) read.bad(name, 'takes a value from the keystore, but the server creates that name in the file system, where other users may list it; write the path in the config file or the environment instead')
  }
}

/** APM Server's apm-server.shutdown_timeout (default 30 s, left to the server): at most an hour. */
function readShutdownTimeout(read: SettingReader): number | undefined {
  const entry = read.raw('apm-server.shutdown_timeout')
  if (!entry) return undefined
  const ms = entry.value === 0 ? 0 : typeof entry.value === 'string' ? parseDuration(entry.value) : undefined
  if (ms !== undefined && ms <= 3_600_000) return ms
  read.bad('apm-server.shutdown_timeout', 'must be a duration of at most 1h, such as 30s or 5s (or 0)')
  return undefined
}

function readGracePeriod(read: SettingReader): number {
  const gracePeriod = read.raw('apm-server.auth.secret_token_grace_period')
  if (!gracePeriod) return 0
  const text = gracePeriod.value === 0 ? '0' : typeof gracePeriod.value === 'string' ? gracePeriod.value : undefined
  const parsed = text === undefined ? undefined : parseDuration(text)
  if (parsed !== undefined) return parsed
  read.bad('apm-server.auth.secret_token_grace_period', 'must be a duration such as 60s, 10m, 1h or 500ms (or 0)')
  return 0
}

/** TLS: on when set so, or by default when a certificate or key is given; then both must be there and readable. */
async function readSsl(read: SettingReader, resolved: Map<string, Resolved>): Promise<ServerConfig['ssl']> {
  const certificate = read.path('apm-server.ssl.certificate')
  const key = read.path('apm-server.ssl.key')
  const keyPassphrase = read.string('apm-server.ssl.key_passphrase')
  const enabled = read.bool('apm-server.ssl.enabled', certificate !== undefined || key !== undefined)
  if (enabled) {
    if (certificate === undefined && !read.failed('apm-server.ssl.certificate')) read.bad('apm-server.ssl.enabled', 'TLS needs apm-server.ssl.certificate; set it, or set apm-server.ssl.enabled: false')
    if (key === undefined && !read.failed('apm-server.ssl.key')) read.bad('apm-server.ssl.enabled', 'TLS needs apm-server.ssl.key; set it, or set apm-server.ssl.enabled: false')
    for (const [name, file] of [['apm-server.ssl.certificate', certificate], ['apm-server.ssl.key', key]] as const) {
      // eslint-disable-next-line no-await-in-loop -- two files
      if (file !== undefined) await checkReadable(file, name, resolved.get(name)?.sensitive ?? false, (setting, message) => read.bad(setting, message))
    }
  }

  return {
    enabled,
    ...(certificate === undefined ? {} : {certificate}),
    ...(key === undefined ? {} : {key}),
    ...(keyPassphrase === undefined ? {} : {keyPassphrase}),
  }
}

/** Unknown settings named one by one in the warnings; the rest are counted. */
export const MAX_UNKNOWN_WARNINGS = 20

/** The first known setting under each dotted prefix of a known setting's name (`apm-server.ssl` -> `apm-server.ssl.certificate`). */
const KNOWN_SECTIONS: ReadonlyMap<string, string> = (() => {
  const sections = new Map<string, string>()
  for (const name of Object.keys(KNOWN_SETTINGS)) {
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) if (!sections.has(name.slice(0, dot))) sections.set(name.slice(0, dot), name)
  }

  return sections
})()

/** The known setting `name` is under (`apm-server.host` for `apm-server.host.x`), if any. */
function knownLeafAbove(name: string): string | undefined {
  for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) if (Object.hasOwn(KNOWN_SETTINGS, name.slice(0, dot))) return name.slice(0, dot)
  return undefined
}

/**
 * Unknown settings are warned about and ignored, except where ignoring one would change what a known
 * setting means: a known setting written as a mapping (`secret_token: {x: 1}` would leave no token), a
 * section written as a value (`apm-server.auth: x`), and a misspelt secret token when none is set. Linear
 * in the settings, and the warnings stop at {@link MAX_UNKNOWN_WARNINGS} and a count: a file of 60,000
 * unknown settings logged 60,000 lines at every reload.
 */
function checkUnknownSettings(resolved: Map<string, Resolved>, problem: Note, warn: Note): void {
  const tokenSet = resolved.has(TOKEN) || resolved.has(LEGACY_TOKEN)
  const reported = new Set<string>()
  let unknown = 0
  for (const entry of resolved.values()) {
    const {name, where} = entry.setting
    if (Object.hasOwn(KNOWN_SETTINGS, name)) continue
    const leaf = knownLeafAbove(name)
    if (leaf) {
      if (!reported.has(leaf)) problem(entry.setting, `${where}: ${leaf}: must be ${TYPE_WORDS[KNOWN_SETTINGS[leaf].type]}, not a mapping (${name} is set under it); write ${leaf}: <value>`)
      reported.add(leaf)
      continue
    }

    const inside = KNOWN_SECTIONS.get(name)
    const empty = entry.value === null || (isMap(entry.setting.node) && entry.setting.node.items.length === 0)
    if (inside) {
      if (!empty) problem(entry.setting, `${where}: ${name}: is a section of settings, not a value; set the settings in it (e.g. ${inside})`)
    } else if (!tokenSet && /secret.?token/i.test(name)) {
      problem(entry.setting, `${where}: ${name} is not a known setting and no secret token is set, so the server would accept data without authentication; write it as ${TOKEN}`)
    } else if (++unknown <= MAX_UNKNOWN_WARNINGS) {
      warn(entry.setting, `${where}: unknown setting ${name} is ignored; check its spelling`)
    }
  }

  if (unknown > MAX_UNKNOWN_WARNINGS) warn(undefined, `${unknown - MAX_UNKNOWN_WARNINGS} more unknown settings are ignored; check the config file`)
}

/** The token, or undefined when none is configured. Present but empty is a problem: never run open by accident. */
function readSecretToken(resolved: Map<string, Resolved>, read: SettingReader, warn: Note): string | undefined {
  const bad = (name: string, message: string) => read.bad(name, message)
  const current = resolved.get(TOKEN)
  const legacy = resolved.get(LEGACY_TOKEN)
  if (current && legacy && !turnedOff(current)) warn(legacy.setting, `${legacy.setting.where}: ${LEGACY_TOKEN} is ignored because ${TOKEN} is set; remove it`)
  const name = current ? TOKEN : legacy ? LEGACY_TOKEN : undefined
  if (name === undefined) return undefined
  if (name === LEGACY_TOKEN) {
    warn(legacy?.setting, `${legacy?.setting.where}: ${LEGACY_TOKEN} is deprecated (Elastic's apm-server 8 ignores it and runs without authentication); move it to ${TOKEN}`)
  }

  const entry = resolved.get(name) as Resolved
  if (entry.failed) return undefined
  if (turnedOff(entry)) {
    if (legacy && name === TOKEN && legacy.value !== null) bad(LEGACY_TOKEN, `still sets a token while ${entry.setting.where}=null turns it off; remove it, or add -E ${LEGACY_TOKEN}=null`)
    return undefined
  }

  const {node} = entry.setting
  // A tag changes what the text means, and YAML readers disagree (Go's decodes !!binary, ours does not).
  if (isScalar(node) && node.tag !== undefined && node.tag !== 'tag:yaml.org,2002:str') {
    bad(name, 'must be a string without a YAML tag (a tag changes what the token is); remove the tag and quote the value')
    return undefined
  }

  const token = read.string(name)
  if (token === undefined || token === '') {
    const shapeOk = entry.value === null || entry.value === undefined || typeof entry.value === 'string'
    if (shapeOk) bad(name, 'is set but empty, so the server would accept data without authentication; give it a token (e.g. "${APM_SECRET_TOKEN}" from the keystore) or remove the setting')
    return undefined
  }

  if (token.trim() === '') {
    bad(name, 'is only whitespace, which no agent can send (HTTP trims it); give it a token (e.g. "${APM_SECRET_TOKEN}" from the keystore)')
    return undefined
  }

  if (typeof entry.value === 'number' || typeof entry.value === 'boolean') {
    // Used as written ("00123" stays "00123"); Go's reader turns 0x1F into "31" and 007 into "7".
    warn(entry.setting, `${entry.setting.where}: ${name} is a YAML ${typeof entry.value}: it is used as written, but other YAML readers (Elastic's apm-server) may read another value; quote it`)
  }

  return token
}

/**
 * A token setting set to `null` (or `~`) by -E: authentication turned off on purpose. An empty -E value
 * and a null token in the file are mistakes, refused as empty.
 */
export function turnedOff(entry: Resolved): boolean {
  const {node, where} = entry.setting
  return where.startsWith('-E ') && isScalar(node) && node.value === null && node.source !== ''
}

async function checkReadable(file: string, name: string, sensitive: boolean, bad: (name: string, message: string) => void): Promise<void> {
  try {
    await fs.access(file, constants.R_OK)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    // A path that came from the keystore is not shown.
    bad(name, `cannot read ${sensitive ? 'the file it names' : file}: ${code}; check the path and its permissions`)
  }
}
