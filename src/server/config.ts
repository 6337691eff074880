/**
 * The server's configuration: `apm-server.yml` (found as the keystore commands find it), `-E key=value`
 * overrides and `--path.*` flags (flags beat overrides, which beat the file), every `${KEY}` resolved
 * from the keystore and then the environment, checked against one table of known settings, and turned
 * into a typed {@link ServerConfig}.
 *
 * `${path.home}`, `${path.config}`, `${path.data}` and `${path.logs}` name the resolved paths (as in Beats)
 * and are looked up before the keystore. The path settings and `keystore.path` are resolved first, from
 * the environment only: they decide where the keystore is.
 *
 * Every problem is collected and reported at once, each naming file:line (or the -E/flag it came from)
 * and the setting. No problem or warning ever holds a value: values may be secrets.
 *
 * Fail closed: a secret token setting that is present but resolves to nothing is a problem, and so is a
 * keystore that exists but cannot be opened when a reference needs it. A missing keystore holds no keys.
 */
import {constants, promises as fs} from 'node:fs'
import path from 'node:path'

import {isAlias, isMap, isScalar, isSeq, LineCounter, Node, parseDocument, YAMLMap} from 'yaml'

import {readRegularFile, RefusedFileError} from '../core/bounded-read.js'
import {KEY_NAME_RULE} from '../core/entries.js'
import {ErrorCode, isKeystoreError, KeystoreError} from '../core/errors.js'
import {Keystore, openKeystore, PasswordSource} from '../core/keystore.js'
import {refuseUnusedPassword} from '../core/password-env.js'
import {Lookup, LookupResult, ReferenceProblem, resolveTemplate} from '../core/references.js'

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

/**
 * Every problem of a configuration at once. `problems` are single lines naming file:line and setting.
 * When the keystore could not be opened, `keystoreCode` keeps its error code (EDECRYPT, ENOPASSWORD, ...).
 */
export class ConfigError extends KeystoreError {
  readonly problems: string[]
  readonly warnings: string[]
  readonly keystoreCode?: ErrorCode

  constructor(problems: string[], warnings: string[] = [], keystoreError?: KeystoreError) {
    const message = problems.length === 1 ? problems[0] : `${problems.length} configuration problems:\n${problems.join('\n')}`
    super('ECONFIG', message, keystoreError ? {cause: keystoreError} : undefined)
    this.name = 'ConfigError'
    this.problems = problems
    this.warnings = warnings
    if (keystoreError) this.keystoreCode = keystoreError.code
  }
}

export const REDACTED = '[redacted]'

type SettingType = 'bool' | 'duration' | 'host' | 'int' | 'level' | 'list' | 'path' | 'string'

interface SettingSpec {
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
  'apm-server.rum.allow_origins': {type: 'list'},
  'apm-server.rum.enabled': {type: 'bool'},
  // Legacy (6.x/7.x) spelling: the Go server 8.x silently ignores it and runs open; we honour it and warn.
  'apm-server.secret_token': {type: 'string'},
  'apm-server.ssl.certificate': {relativeTo: 'config', type: 'path'},
  'apm-server.ssl.enabled': {type: 'bool'},
  'apm-server.ssl.key': {relativeTo: 'config', type: 'path'},
  'apm-server.ssl.key_passphrase': {type: 'string'},
  'keystore.path': {relativeTo: 'home', type: 'path'},
  'logging.level': {type: 'level'},
  'output.file.filename': {type: 'string'},
  // Beats' file output bounds.
  'output.file.number_of_files': {max: 1024, min: 2, type: 'int'},
  'output.file.path': {relativeTo: 'home', type: 'path'},
  'output.file.rotate_every_kb': {min: 1, type: 'int'},
  'path.config': {relativeTo: 'cwd', type: 'path'},
  'path.data': {relativeTo: 'cwd', type: 'path'},
  'path.home': {relativeTo: 'cwd', type: 'path'},
  'path.logs': {relativeTo: 'cwd', type: 'path'},
})

const TOKEN = 'apm-server.auth.secret_token'
const LEGACY_TOKEN = 'apm-server.secret_token'

/** Resolved before the keystore is opened (they decide where it is), in this order, from the environment only. */
const PATH_SETTINGS = ['path.home', 'path.config', 'path.data', 'path.logs', 'keystore.path'] as const

const LOG_LEVELS = ['debug', 'info', 'warning', 'error']

/** Settings with these names are redacted in exported config whatever their source. */
const SENSITIVE_NAME = /(secret_token|password|passphrase|api_key)$/i

/** Far above any real apm-server.yml; a bigger file is not one. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024

/** One setting as configured: a YAML node to resolve, or a flag value taken as it is. */
interface Setting {
  name: string
  /** "file:line", "-E name" or "--path.home" */
  where: string
  node?: Node | null
  literal?: string
  /** where a node inside the value is, for list items */
  locate: (node: Node) => string
}

interface Resolved {
  setting: Setting
  value: unknown
  /** the value with every secret replaced by {@link REDACTED} */
  shown: unknown
  sensitive: boolean
  /** some reference in it did not resolve (already reported) */
  failed: boolean
}

interface Report {
  message: string
  /** false for problems that do not depend on what lookups find (syntax, aliases) */
  fromLookup: boolean
}

/** A problem or warning about a setting, to be listed in the order the settings were written. */
type Note = (setting: Setting | undefined, message: string) => void

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

/** The config file: `-c` (default apm-server.yml) under --path.config, else --path.home, else the cwd; as `resolvePaths` finds it. */
function locateConfigFile(flags: LoadOptions['flags'], cwd: string): string {
  const base = flags['path.config'] ? path.resolve(cwd, flags['path.config']) : flags['path.home'] ? path.resolve(cwd, flags['path.home']) : cwd
  return path.resolve(base, flags.config ?? 'apm-server.yml')
}

async function readConfigText(file: string, explicit: boolean): Promise<string | undefined> {
  try {
    // A regular file, opened without blocking and read up to the cap: a FIFO or /dev/zero at the path must not hang or fill memory.
    return (await readRegularFile(file, MAX_CONFIG_BYTES)).toString('utf8')
  } catch (error) {
    if (error instanceof RefusedFileError) {
      if (error.refusal.reason === 'too-big') throw new ConfigError([`config file ${file} is over ${MAX_CONFIG_BYTES} bytes; it is not an apm-server.yml`])
      throw new ConfigError([`config file ${file} is ${error.refusal.type}, not a regular file; point -c/--config at a file`])
    }

    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOENT') throw new ConfigError([`cannot read config file ${file}: ${code}; check the path and its permissions`])
    if (explicit) throw new ConfigError([`config file ${file} does not exist; check the -c/--config path`])
    return undefined
  }
}

/** Collects settings, refusing a setting written twice (`a.b` and `a: {b}`) or inside another. */
class SettingList {
  items: Setting[] = []
  /** every setting an override replaced, in order */
  readonly replaced: Setting[] = []

  /** From the file: a clash is a problem. */
  add(setting: Setting, problems: string[]): void {
    const clash = this.items.find((other) => overlaps(other.name, setting.name))
    if (clash) problems.push(`${setting.where}: ${setting.name} is also set at ${clash.where} (as ${clash.name}); keep one`)
    else this.items.push(setting)
  }

  /** From -E or a flag: replaces what it overlaps (the setting, everything under it, anything it is under); returns what it replaced. */
  override(setting: Setting): Setting[] {
    const replaced = this.items.filter((other) => overlaps(other.name, setting.name))
    this.items = this.items.filter((other) => !replaced.includes(other))
    this.items.push(setting)
    this.replaced.push(...replaced)
    return replaced
  }

  get(name: string): Setting | undefined {
    return this.items.find((setting) => setting.name === name)
  }
}

function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}.`) || b.startsWith(`${a}.`)
}

/** Splits a mapping into dotted settings; `a: {b: 1}` and `a.b: 1` are the same setting. */
function flatten(map: YAMLMap, prefix: string, locate: (node: Node) => string, add: (setting: Setting) => void, problems: string[]): void {
  for (const pair of map.items) {
    const key = pair.key as Node | null
    if (!isScalar(key) || key.value === null || typeof key.value === 'object') {
      problems.push(`${key ? locate(key) : prefix || 'config'}: a setting name must be a plain scalar key; fix the YAML`)
      continue
    }

    if (key.value === '<<') {
      // A merge key is an ordinary key in YAML 1.2 but merges in YAML 1.1 (Go's reader): the settings under it would mean different things.
      problems.push(`${locate(key)}: YAML merge keys (<<) are not supported; write the settings out`)
      continue
    }

    const name = `${prefix}${prefix ? '.' : ''}${key.source ?? String(key.value)}`
    const value = (pair.value ?? null) as Node | null
    if (isMap(value) && value.items.length > 0) flatten(value, name, locate, add, problems)
    else add({locate, name, node: value, where: locate(key)})
  }
}

const OVERRIDE = /^([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)=(.*)$/s

const YAML_OPTIONS = {prettyErrors: false, schema: 'core', uniqueKeys: true} as const

function applyOverride(settings: SettingList, override: string, index: number, problems: string[]): void {
  // The text is not echoed: a misplaced secret must not reach the terminal.
  const match = OVERRIDE.exec(override)
  if (!match) throw new KeystoreError('EUSAGE', `-E number ${index + 1} is not key=value; write -E setting.name=value (e.g. -E apm-server.host=localhost:8200)`)
  const [, name, text] = match
  const where = `-E ${name}`
  const locate = () => where
  const doc = parseDocument(text, YAML_OPTIONS)
  if (doc.errors.length > 0) {
    problems.push(`${where}: the value is not valid YAML (${doc.errors[0].message.split('\n')[0]}); quote it`)
    return
  }

  const node = (doc.contents ?? null) as Node | null
  if (!isMap(node)) {
    overrideSetting(settings, {locate, name, node, where}, problems)
    return
  }

  // A mapping is merged, as Beats merges -E: only the settings it names change, the rest of the section
  // (the secret token, say) stays. Within one -E, a setting written twice is refused as in the file.
  const leaves = new SettingList()
  flatten(node, name, locate, (setting) => leaves.add(setting, problems), problems)
  for (const leaf of leaves.items) overrideSetting(settings, leaf, problems)
}

/**
 * Sets one setting from -E. An empty mapping merges nothing. A value that replaces a section (`-E
 * apm-server.auth=null`) must not drop authentication settings written elsewhere without naming them.
 */
function overrideSetting(settings: SettingList, setting: Setting, problems: string[]): void {
  if (isMap(setting.node) && setting.node.items.length === 0) return
  for (const other of settings.override(setting)) {
    if (!other.name.startsWith(`${setting.name}.`) || !isAuthSetting(other.name)) continue
    const offOnPurpose = other.name === TOKEN || other.name === LEGACY_TOKEN ? ` (-E ${other.name}=null turns the secret token off on purpose)` : ''
    problems.push(`${setting.where}: would remove ${other.name} (set at ${other.where}); override ${other.name} itself${offOnPurpose}`)
  }
}

function isAuthSetting(name: string): boolean {
  return name === LEGACY_TOKEN || name.startsWith('apm-server.auth.')
}

function describeProblem(problem: ReferenceProblem, pathPhase: boolean): string {
  switch (problem.kind) {
    case 'syntax': {
      return problem.message
    }

    case 'bad-name': {
      return `${problem.reference} resolves to an invalid key name (${KEY_NAME_RULE}); fix the references it is built from`
    }

    case 'lookup': {
      return `${problem.reference}: ${problem.message}`
    }

    case 'required': {
      if (problem.message) return `${problem.message} (${problem.reference} is not set)`
      return `${problem.reference} is required and not set; ${fixFor(problem.key, pathPhase)}`
    }

    case 'unset': {
      const where = pathPhase ? 'in the environment (path settings are resolved before the keystore is opened)' : 'in the keystore or the environment'
      return `${problem.reference} is not set ${where}; ${fixFor(problem.key, pathPhase)}`
    }
  }
}

function fixFor(key: string | undefined, pathPhase: boolean): string {
  if (key === undefined) return 'check the keys its name is built from'
  return pathPhase ? `set the environment variable ${key}` : `add it with "apm-server keystore add ${key}" or set the environment variable ${key}`
}

/** Resolves every `${...}` in a value. Lists and mappings (inside lists) are walked; keys are not resolved. */
function resolveValue(setting: Setting, lookup: Lookup, pathPhase: boolean, report: (report: Report) => void): Resolved {
  if (setting.literal !== undefined) return {failed: false, sensitive: false, setting, shown: setting.literal, value: setting.literal}
  let sensitive = false
  let failed = false
  const fail = (message: string, fromLookup: boolean) => {
    failed = true
    report({fromLookup, message})
  }

  const walk = (node: Node | null | undefined, name: string, where: string): {value: unknown; shown: unknown} => {
    if (node === null || node === undefined) return {shown: null, value: null}
    if (isAlias(node)) {
      fail(`${where}: ${name}: YAML aliases are not supported; write the value out`, false)
      return {shown: null, value: undefined}
    }

    if (isScalar(node)) {
      if (typeof node.value !== 'string') return {shown: node.value, value: node.value}
      const resolution = resolveTemplate(node.value, lookup)
      for (const problem of resolution.problems) {
        fail(`${where}: ${name}: ${describeProblem(problem, pathPhase)}`, problem.kind !== 'syntax')
      }

      sensitive ||= resolution.sensitive
      return {shown: resolution.sensitive ? REDACTED : resolution.value, value: resolution.value}
    }

    if (isSeq(node)) {
      const items = node.items.map((item, i) => walk(item as Node | null, `${name}[${i}]`, item ? setting.locate(item as Node) : where))
      return {shown: items.map((item) => item.shown), value: items.map((item) => item.value)}
    }

    if (isMap(node)) {
      const value: Record<string, unknown> = {}
      const shown: Record<string, unknown> = {}
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key)
        const item = walk(pair.value as Node | null, `${name}.${key}`, pair.value ? setting.locate(pair.value as Node) : where)
        value[key] = item.value
        shown[key] = SENSITIVE_NAME.test(key) && item.value !== null ? REDACTED : item.shown
      }

      return {shown, value}
    }

    return {shown: null, value: undefined}
  }

  const {shown, value} = walk(setting.node, setting.name, setting.where)
  const redact = SENSITIVE_NAME.test(setting.name) && value !== null && value !== undefined
  return {failed, sensitive, setting, shown: redact ? REDACTED : shown, value}
}

function environmentLookup(env: NodeJS.ProcessEnv): Lookup {
  // An empty variable counts as unset.
  return (name) => (env[name] ? {value: env[name] as string} : undefined)
}

function keystoreLookup(keystore: Keystore): Lookup {
  // Exactly the stored bytes as UTF-8: a byte-order mark is kept, invalid UTF-8 is a problem, not replaced.
  const decoder = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})
  return (name): LookupResult | undefined => {
    if (!keystore.has(name)) return undefined
    // Outside the try: a keystore that fails to decrypt its values must be reported as such.
    const bytes = keystore.get(name)
    try {
      return {sensitive: true, value: decoder.decode(bytes)}
    } catch {
      return {problem: `the keystore value of ${name} is not UTF-8 text; store the value as text`, value: ''}
    }
  }
}

function chain(...lookups: Lookup[]): Lookup {
  return (name) => {
    for (const lookup of lookups) {
      const found = lookup(name)
      if (found !== undefined && (found.value !== '' || found.problem !== undefined)) return found
    }

    return undefined
  }
}

/**
 * Loads and resolves the configuration. Throws {@link ConfigError} listing every problem at once
 * (keystore problems reported as such, their code in `keystoreCode`), or KeystoreError EUSAGE for a
 * malformed -E and ECANCELED when a password prompt is interrupted. Never logs.
 */
export async function loadServerConfig(options: LoadOptions): Promise<LoadedConfig> {
  const cwd = options.cwd ?? process.cwd()
  const {env} = options
  const file = locateConfigFile(options.flags, cwd)
  const {fileState, problems, settings, warnings} = await collectSettings(file, options)
  if (problems.length > 0) throw new ConfigError(problems, warnings)

  // Paths first: they decide where the keystore is, so they can use the environment and ${path.*} only.
  const builtins = new Map<string, string>()
  const builtinLookup: Lookup = (name) => (builtins.has(name) ? {value: builtins.get(name) as string} : undefined)
  const resolved = new Map<string, Resolved>()
  const pathOf = (name: (typeof PATH_SETTINGS)[number], base: string, fallback: string): string => {
    const setting = settings.get(name)
    if (!setting) return fallback
    const entry = resolveValue(setting, chain(builtinLookup, environmentLookup(env)), true, (report) => problems.push(report.message))
    resolved.set(name, entry)
    if (entry.failed || entry.value === null) return fallback
    if (typeof entry.value !== 'string' || entry.value === '') {
      problems.push(`${entry.setting.where}: ${name}: must be a non-empty path`)
      return fallback
    }

    return path.resolve(base, entry.value)
  }

  const home = pathOf('path.home', cwd, cwd)
  builtins.set('path.home', home)
  const configDir = pathOf('path.config', cwd, home)
  builtins.set('path.config', configDir)
  const data = pathOf('path.data', cwd, path.join(home, 'data'))
  builtins.set('path.data', data)
  const logs = pathOf('path.logs', cwd, path.join(home, 'logs'))
  builtins.set('path.logs', logs)
  // Last, so that it may use ${path.*}, as Beats allows.
  const keystoreFile = pathOf('keystore.path', home, path.join(data, 'apm-server.keystore'))
  if (problems.length > 0) throw new ConfigError(problems, warnings)

  const others = settings.items.filter((setting) => !(PATH_SETTINGS as readonly string[]).includes(setting.name))
  const {keystoreError, keystoreKeys, pass} = await resolveOthers(others, builtinLookup, keystoreFile, options)
  if (keystoreError) {
    // What the keystore would have resolved is unknown: report only what does not depend on it.
    problems.push(...pass.reports.filter((report) => !report.fromLookup).map((report) => report.message))
    problems.push(describeKeystoreError(keystoreError))
    throw new ConfigError(problems, warnings, keystoreError)
  }

  // From here on, problems and warnings are listed in the order the settings were written.
  const rank = (setting: Setting | undefined) => (setting ? settings.items.indexOf(setting) : settings.items.length)
  const late: Array<{at: number; message: string}> = []
  const lateWarnings: Array<{at: number; message: string}> = []
  const problem: Note = (setting, message) => late.push({at: rank(setting), message})
  for (const report of pass.reports) problem(report.setting, report.message)
  for (const value of pass.values) resolved.set(value.setting.name, value)
  const config = await buildConfig({configDir, cwd, data, home, logs, problem, resolved, warn: (setting, message) => lateWarnings.push({at: rank(setting), message})})
  checkOverridesKeepAuth(settings, config, problem)
  // Array.prototype.sort is stable: notes about one setting keep their order.
  problems.push(...late.sort((a, b) => a.at - b.at).map((note) => note.message))
  warnings.push(...lateWarnings.sort((a, b) => a.at - b.at).map((note) => note.message))
  if (problems.length === 0 && options.reloadOf) problems.push(...reloadRefusals(options.reloadOf.config, config))
  if (problems.length > 0) throw new ConfigError(problems, warnings)
  const tokenOffBy = [TOKEN, LEGACY_TOKEN].map((name) => resolved.get(name)).find((entry) => entry && turnedOff(entry))?.setting.where
  return {config, file, fileState, keystore: keystoreFile, keystoreKeys, redacted: redactedTree(settings, resolved), warnings, ...(tokenOffBy ? {tokenOffBy} : {})}
}

/** The settings of the file, then -E overrides, then flags, and whether the file gave any. */
async function collectSettings(file: string, options: LoadOptions): Promise<{settings: SettingList; fileState: FileState; problems: string[]; warnings: string[]}> {
  const {flags} = options
  const problems: string[] = []
  const warnings: string[] = []
  const settings = new SettingList()
  const text = await readConfigText(file, Boolean(flags.config))
  if (text !== undefined) readConfigSettings(text, file, settings, problems, warnings)
  const fileState: FileState = text === undefined ? 'missing' : settings.items.length === 0 ? 'empty' : 'read'
  // A file caught while it is rewritten (truncated, moved away) must not reload as the defaults.
  if (options.reloadOf?.fileState === 'read' && fileState !== 'read' && problems.length === 0) {
    problems.push(
      fileState === 'missing'
        ? `config file ${file} does not exist any more (only a start without one runs on the defaults); put it back, then reload again`
        : `config file ${file} holds no settings (is it being rewritten?); write the configuration into it, then reload again`,
    )
  }

  options.overrides.forEach((override, i) => applyOverride(settings, override, i, problems))
  for (const name of ['path.home', 'path.config', 'path.data'] as const) {
    const value = flags[name]
    if (value) settings.override({literal: value, locate: () => `--${name}`, name, where: `--${name}`})
  }

  return {fileState, problems, settings, warnings}
}

/**
 * Resolves every setting but the paths. A dry run against the environment finds out whether any
 * reference reaches the keystore; only then is it opened (once), so a config without keystore
 * references never needs its password. Returns the keystore keys the values came from.
 */
async function resolveOthers(others: Setting[], builtinLookup: Lookup, keystoreFile: string, options: LoadOptions) {
  const environment = environmentLookup(options.env)
  let needsKeystore = false
  const probe: Lookup = (name) => {
    const builtin = builtinLookup(name)
    if (builtin) return builtin
    needsKeystore = true
    return environment(name)
  }

  const runAll = (lookup: Lookup) => {
    const reports: Array<Report & {setting: Setting}> = []
    const values = others.map((setting) => resolveValue(setting, lookup, false, (report) => reports.push({...report, setting})))
    return {reports, values}
  }

  let pass = runAll(probe)
  let keystoreError: KeystoreError | undefined
  const keystoreKeys = new Set<string>()
  if (needsKeystore) {
    const keystore = await openKeystoreIfAny(keystoreFile, options).catch((error: unknown) => {
      if (error instanceof KeystoreError && error.code !== 'ECANCELED') {
        keystoreError = error
        return
      }

      throw error
    })
    const fromKeystore: Lookup = keystore ? recordingLookup(keystoreLookup(keystore), keystoreKeys) : () => undefined
    const previous = new Set(options.reloadOf?.keystoreKeys)
    const fallback = previous.size > 0 ? keepKeystoreSource(previous, keystoreFile, keystore !== undefined, environment) : environment
    if (!keystoreError) pass = runAll(chain(builtinLookup, fromKeystore, fallback))
  }

  return {keystoreError, keystoreKeys: [...keystoreKeys].sort(), pass}
}

function recordingLookup(lookup: Lookup, found: Set<string>): Lookup {
  return (name) => {
    const result = lookup(name)
    if (result !== undefined && result.value !== '') found.add(name)
    return result
  }
}

/**
 * On a reload, a key that came from the keystore must come from it again: falling through to the
 * environment would swap the secret token for another value (an old one, say) without a word.
 */
function keepKeystoreSource(previous: ReadonlySet<string>, keystoreFile: string, keystoreExists: boolean, environment: Lookup): Lookup {
  return (name) => {
    if (!previous.has(name)) return environment(name)
    const gone = keystoreExists ? `the keystore ${keystoreFile} no longer holds ${name}` : `the keystore ${keystoreFile} is gone`
    const problem = `${name} came from the keystore and ${gone}; a reload never takes it from the environment instead: add it back with "apm-server keystore add ${name}", or restart the server to take it from the environment on purpose`
    return {problem, value: ''}
  }
}

function readConfigSettings(text: string, file: string, settings: SettingList, problems: string[], warnings: string[]): void {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, {...YAML_OPTIONS, lineCounter})
  const lineOf = (offset: number) => `${file}:${lineCounter.linePos(offset).line}`
  for (const error of doc.errors) problems.push(`${lineOf(error.pos[0])}: ${error.message.split('\n')[0]}; fix the YAML`)
  for (const warning of doc.warnings) warnings.push(`${lineOf(warning.pos[0])}: ${warning.message.split('\n')[0]}`)
  if (doc.errors.length > 0) return
  const contents = doc.contents as Node | null
  if (contents === null || (isScalar(contents) && contents.value === null)) return
  if (!isMap(contents)) {
    problems.push(`${lineOf(contents.range?.[0] ?? 0)}: the config file is not a mapping of settings; fix the YAML`)
    return
  }

  const locate = (node: Node) => lineOf(node.range?.[0] ?? 0)
  flatten(contents, '', locate, (setting) => settings.add(setting, problems), problems)
}

async function openKeystoreIfAny(file: string, options: LoadOptions): Promise<Keystore | undefined> {
  const strictPerms = options.strictPerms ?? options.flags['strict.perms'] ?? options.env.BEAT_STRICT_PERMS?.toLowerCase() !== 'false'
  try {
    // A keystore without a password while one is supplied may have been swapped: refused (issue 11).
    return await openKeystore(file, {onUnprotected: refuseUnusedPassword(options.env), password: options.password, strictPerms})
  } catch (error) {
    // No keystore holds no keys: references fall through to the environment.
    if (isKeystoreError(error, 'ENOKEYSTORE')) return undefined
    throw error
  }
}

function describeKeystoreError(error: KeystoreError): string {
  // The keystore's messages name the file and never hold a secret.
  if (error.code === 'EDECRYPT') return `${error.message}; check the password in APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE`
  return error.message
}

interface BuildContext {
  resolved: Map<string, Resolved>
  problem: Note
  warn: Note
  cwd: string
  home: string
  configDir: string
  data: string
  logs: string
}

const TYPE_WORDS: Record<SettingType, string> = {
  bool: 'true or false',
  duration: 'a duration',
  host: 'host:port',
  int: 'a whole number',
  level: 'a log level',
  list: 'a list',
  path: 'a path',
  string: 'a string',
}

/**
 * Unknown settings are warned about and ignored, except where ignoring one would change what a known
 * setting means: a known setting written as a mapping (`secret_token: {x: 1}` would leave no token), a
 * section written as a value (`apm-server.auth: x`), and a misspelt secret token when none is set.
 */
function checkUnknownSettings(resolved: Map<string, Resolved>, problem: Note, warn: Note): void {
  const known = Object.keys(KNOWN_SETTINGS)
  const tokenSet = resolved.has(TOKEN) || resolved.has(LEGACY_TOKEN)
  const reported = new Set<string>()
  for (const entry of resolved.values()) {
    const {name, where} = entry.setting
    if (Object.hasOwn(KNOWN_SETTINGS, name)) continue
    const leaf = known.find((other) => name.startsWith(`${other}.`))
    if (leaf) {
      if (!reported.has(leaf)) problem(entry.setting, `${where}: ${leaf}: must be ${TYPE_WORDS[KNOWN_SETTINGS[leaf].type]}, not a mapping (${name} is set under it); write ${leaf}: <value>`)
      reported.add(leaf)
      continue
    }

    const inside = known.find((other) => other.startsWith(`${name}.`))
    const empty = entry.value === null || (isMap(entry.setting.node) && entry.setting.node.items.length === 0)
    if (inside) {
      if (!empty) problem(entry.setting, `${where}: ${name}: is a section of settings, not a value; set the settings in it (e.g. ${inside})`)
    } else if (!tokenSet && /secret.?token/i.test(name)) {
      problem(entry.setting, `${where}: ${name} is not a known setting and no secret token is set, so the server would accept data without authentication; write it as ${TOKEN}`)
    } else {
      warn(entry.setting, `${where}: unknown setting ${name} is ignored; check its spelling`)
    }
  }
}

async function buildConfig(context: BuildContext): Promise<ServerConfig> {
  const {resolved, warn} = context
  const failed = (name: string) => resolved.get(name)?.failed ?? false
  checkUnknownSettings(resolved, context.problem, warn)

  const bad = (name: string, message: string) => {
    const entry = resolved.get(name)
    context.problem(entry?.setting, `${entry ? `${entry.setting.where}: ` : ''}${name}: ${message}`)
  }

  /** The configured value, or undefined when unset, empty (null) or already reported. */
  const raw = (name: string): Resolved | undefined => {
    const entry = resolved.get(name)
    if (!entry || entry.failed || entry.value === null || entry.value === undefined) return undefined
    return entry
  }

  /** A scalar as text. A plain YAML number or boolean keeps its source spelling: "007" stays "007". */
  const textOf = (entry: Resolved, value: unknown = entry.value): string | undefined => {
    if (typeof value === 'string') return value
    const node = entry.setting.node
    if (value === entry.value && isScalar(node) && node.source !== undefined && (typeof value === 'number' || typeof value === 'boolean')) return node.source
    if (typeof value === 'number' || typeof value === 'boolean') return String(value)
    return undefined
  }

  const string = (name: string): string | undefined => {
    const entry = raw(name)
    if (!entry) return undefined
    const text = textOf(entry)
    if (text === undefined) bad(name, 'must be a string')
    return text
  }

  const bool = (name: string, fallback: boolean): boolean => {
    const entry = raw(name)
    if (!entry) return fallback
    if (typeof entry.value === 'boolean') return entry.value
    if (entry.value === 'true' || entry.value === 'false') return entry.value === 'true'
    bad(name, 'must be true or false')
    return fallback
  }

  const int = (name: string, fallback: number): number => {
    const entry = raw(name)
    if (!entry) return fallback
    const {max = Number.MAX_SAFE_INTEGER, min = 0} = KNOWN_SETTINGS[name]
    const value = typeof entry.value === 'string' && /^\d{1,15}$/.test(entry.value) ? Number(entry.value) : entry.value
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max) return value
    bad(name, `must be a whole number from ${min} to ${max}`)
    return fallback
  }

  const list = (name: string, fallback: string[]): string[] => {
    const entry = raw(name)
    if (!entry) return fallback
    // A single string is one item: a value is never split on commas.
    const items = Array.isArray(entry.value) ? entry.value.map((item) => textOf(entry, item)) : [textOf(entry)]
    if (items.every((item): item is string => item !== undefined)) return items
    bad(name, 'must be a list of strings')
    return fallback
  }

  const pathSetting = (name: string): string | undefined => {
    const text = string(name)
    if (text === undefined) return undefined
    if (text === '') {
      bad(name, 'must be a non-empty path')
      return undefined
    }

    if (text.includes('-----BEGIN')) {
      bad(name, 'inline PEM content is not supported; write the PEM to a file and give its path')
      return undefined
    }

    const base = {config: context.configDir, cwd: context.cwd, home: context.home}[KNOWN_SETTINGS[name].relativeTo ?? 'home']
    return path.resolve(base, text)
  }

  const host = string('apm-server.host') ?? 'localhost:8200'
  const port = /^(?:\[[^\]]*\]|[^:[\]]*):(\d{1,5})$/.exec(host)?.[1]
  if (port === undefined || Number(port) > 65_535) bad('apm-server.host', 'must be host:port with a port from 0 to 65535 (0 picks a free port), e.g. localhost:8200')

  const secretToken = readSecretToken(resolved, bad, warn, string)
  const gracePeriod = raw('apm-server.auth.secret_token_grace_period')
  let secretTokenGracePeriodMs = 0
  if (gracePeriod) {
    const text = gracePeriod.value === 0 ? '0' : typeof gracePeriod.value === 'string' ? gracePeriod.value : undefined
    const parsed = text === undefined ? undefined : parseDuration(text)
    if (parsed === undefined) bad('apm-server.auth.secret_token_grace_period', 'must be a duration such as 60s, 10m, 1h or 500ms (or 0)')
    else secretTokenGracePeriodMs = parsed
  }

  const rumEnabled = bool('apm-server.rum.enabled', false)
  const certificate = pathSetting('apm-server.ssl.certificate')
  const key = pathSetting('apm-server.ssl.key')
  const keyPassphrase = string('apm-server.ssl.key_passphrase')
  const sslEnabled = bool('apm-server.ssl.enabled', certificate !== undefined || key !== undefined)
  if (sslEnabled) {
    if (certificate === undefined && !failed('apm-server.ssl.certificate')) bad('apm-server.ssl.enabled', 'TLS needs apm-server.ssl.certificate; set it, or set apm-server.ssl.enabled: false')
    if (key === undefined && !failed('apm-server.ssl.key')) bad('apm-server.ssl.enabled', 'TLS needs apm-server.ssl.key; set it, or set apm-server.ssl.enabled: false')
    for (const [name, file] of [['apm-server.ssl.certificate', certificate], ['apm-server.ssl.key', key]] as const) {
      // eslint-disable-next-line no-await-in-loop -- two files
      if (file !== undefined) await checkReadable(file, name, resolved.get(name)?.sensitive ?? false, bad)
    }
  }

  const logLevel = string('logging.level')
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel)) bad('logging.level', `must be one of ${LOG_LEVELS.join(', ')}`)
  const filename = string('output.file.filename') ?? 'apm-server'
  if (filename === '' || filename.includes('/') || filename.includes(path.sep)) bad('output.file.filename', 'must be a file name without a directory; put the directory in output.file.path')

  return {
    anonymous: {
      allowAgent: list('apm-server.auth.anonymous.allow_agent', ['rum-js', 'js-base']),
      allowService: list('apm-server.auth.anonymous.allow_service', []),
      // Elastic: anonymous access is on by default when RUM is enabled and auth is configured.
      enabled: bool('apm-server.auth.anonymous.enabled', rumEnabled && secretToken !== undefined),
      rateLimit: {
        eventLimit: int('apm-server.auth.anonymous.rate_limit.event_limit', 300),
        ipLimit: int('apm-server.auth.anonymous.rate_limit.ip_limit', 1000),
      },
    },
    host,
    maxEventSize: int('apm-server.max_event_size', 307_200),
    output: {
      filename,
      numberOfFiles: int('output.file.number_of_files', 7),
      path: pathSetting('output.file.path') ?? path.join(context.data, 'apm-server'),
      rotateEveryKb: int('output.file.rotate_every_kb', 10_240),
    },
    paths: {config: context.configDir, data: context.data, home: context.home, logs: context.logs},
    rum: {allowOrigins: list('apm-server.rum.allow_origins', ['*']), enabled: rumEnabled},
    secretTokenGracePeriodMs,
    ssl: {
      enabled: sslEnabled,
      ...(certificate === undefined ? {} : {certificate}),
      ...(key === undefined ? {} : {key}),
      ...(keyPassphrase === undefined ? {} : {keyPassphrase}),
    },
    ...(secretToken === undefined ? {} : {secretToken}),
    ...(logLevel === undefined ? {} : {logLevel}),
  }
}

/** The token, or undefined when none is configured. Present but empty is a problem: never run open by accident. */
function readSecretToken(
  resolved: Map<string, Resolved>,
  bad: (name: string, message: string) => void,
  warn: Note,
  string: (name: string) => string | undefined,
): string | undefined {
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

  const token = string(name)
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
function turnedOff(entry: Resolved): boolean {
  const {node, where} = entry.setting
  return where.startsWith('-E ') && isScalar(node) && node.value === null && node.source !== ''
}

/**
 * An -E may weaken authentication only by naming what it weakens: `-E apm-server.rum.enabled=true`
 * with a token in the file would turn anonymous access on by default, unseen.
 */
function checkOverridesKeepAuth(settings: SettingList, config: ServerConfig, problem: Note): void {
  const fromFile = (setting: Setting) => !setting.where.startsWith('-') && (setting.node !== null || setting.literal !== undefined)
  const all = [...settings.items, ...settings.replaced]
  const fileToken = all.some((setting) => (setting.name === TOKEN || setting.name === LEGACY_TOKEN) && fromFile(setting))
  const rum = settings.get('apm-server.rum.enabled')
  if (!fileToken || !config.anonymous.enabled || settings.get('apm-server.auth.anonymous.enabled') || !rum?.where.startsWith('-E ')) return
  const literalTrue = (setting: Setting) => isScalar(setting.node) && (setting.node.value === true || setting.node.value === 'true')
  if (settings.replaced.some((setting) => setting.name === 'apm-server.rum.enabled' && fromFile(setting) && literalTrue(setting))) return
  problem(
    rum,
    `${rum.where}: turns on anonymous access (with a secret token, enabling RUM lets anonymous RUM agents in by default); say so with -E apm-server.auth.anonymous.enabled=true, or keep it off with -E apm-server.auth.anonymous.enabled=false`,
  )
}

/**
 * Why a reload from `running` to `next` must be refused: it may tighten authentication, never loosen
 * it. Removing the token, turning anonymous access on (enabling RUM does by default), letting more
 * agents or services in anonymously, raising the anonymous rate limits, and turning TLS off need a
 * restart, which is done on purpose. Applied as they come: a new token (rotation), a longer grace period
 * (it only keeps a token the server already accepted valid, for a bounded time, and never extends a
 * running one), RUM origins (CORS binds browsers, not attackers), sizes, certificates.
 */
export function reloadRefusals(running: ServerConfig, next: ServerConfig): string[] {
  const refusals: string[] = []
  const refuse = (setting: string, what: string) => refusals.push(`${setting}: a reload cannot ${what}; restart the server to do that on purpose`)
  if (running.ssl.enabled && !next.ssl.enabled) refuse('apm-server.ssl.enabled', 'turn TLS off')
  // Without a token anyone is let in: nothing can be loosened.
  if (running.secretToken === undefined) return refusals
  if (next.secretToken === undefined) {
    refuse(TOKEN, 'remove the secret token (the server would accept data from anyone)')
    return refusals
  }

  if (!next.anonymous.enabled) return refusals
  if (!running.anonymous.enabled) {
    const why = next.rum.enabled && !running.rum.enabled ? ' (enabling RUM turns it on by default: set apm-server.auth.anonymous.enabled: false to keep it off)' : ''
    refuse('apm-server.auth.anonymous.enabled', `turn on anonymous access${why}`)
    return refusals
  }

  const widens = (before: string[], after: string[]) => after.some((item) => !before.includes(item))
  if (widens(running.anonymous.allowAgent, next.anonymous.allowAgent)) refuse('apm-server.auth.anonymous.allow_agent', 'let more agents in anonymously')
  // An empty list allows every service.
  const services = running.anonymous.allowService
  if (services.length > 0 && (next.anonymous.allowService.length === 0 || widens(services, next.anonymous.allowService))) {
    refuse('apm-server.auth.anonymous.allow_service', 'let more services in anonymously')
  }

  const [before, after] = [running.anonymous.rateLimit, next.anonymous.rateLimit]
  if (after.eventLimit > before.eventLimit) refuse('apm-server.auth.anonymous.rate_limit.event_limit', 'raise the anonymous event rate limit')
  // More limiters means more buckets for a client with many addresses.
  if (after.ipLimit > before.ipLimit) refuse('apm-server.auth.anonymous.rate_limit.ip_limit', 'raise the number of anonymous clients limited apart')
  return refusals
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

function redactedTree(settings: SettingList, resolved: Map<string, Resolved>): Record<string, unknown> {
  const tree: Record<string, unknown> = {}
  for (const setting of settings.items) {
    const entry = resolved.get(setting.name)
    const parts = setting.name.split('.')
    let node = tree
    for (const part of parts.slice(0, -1)) {
      if (typeof node[part] !== 'object' || node[part] === null) node[part] = {}
      node = node[part] as Record<string, unknown>
    }

    const last = parts.at(-1) as string
    node[last] = entry ? entry.shown : null
  }

  return tree
}
