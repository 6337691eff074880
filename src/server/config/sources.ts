/**
 * Where settings come from, in the order they apply: the config file (`apm-server.yml`, found as the
 * keystore commands find it), then `-E key=value` overrides (merged into the file's sections, as Beats
 * merges them), then the `--path.*` flags. Each setting keeps where it was written (file:line, the -E
 * or the flag) for the messages. Nothing is resolved here: values are YAML nodes until ./resolve.ts.
 */
import type {Stats} from 'node:fs'
import path from 'node:path'

import {isMap, isScalar, LineCounter, Node, parseDocument, Scalar, YAMLMap} from 'yaml'

import {readRegularFile, RefusedFileError} from '../../core/bounded-read.js'
import {isKeystoreError, KeystoreError} from '../../core/errors.js'
import {findKeyProblem} from '../../core/yaml-keys.js'
import {clip} from '../limits.js'
import {ConfigError, FileState, LoadOptions} from './server-config.js'
import {LEGACY_TOKEN, Setting, TOKEN} from './settings.js'
import {checkTrustedConfigFile, strictPermsOf} from './trust.js'

/**
 * Far above any real apm-server.yml (Elastic's reference file, every setting commented, is ~50 KiB); a
 * bigger file is not one. Parsing YAML takes ~1 s a MiB here, on the thread that serves requests, at
 * every reload: the cap bounds that freeze.
 */
export const MAX_CONFIG_BYTES = 1024 * 1024
/** Settings one configuration may hold (a real one holds tens): past it the file is refused, never read on. */
export const MAX_SETTINGS = 10_000

/** The settings of the file, then -E overrides, then flags, and whether the file gave any. */
export async function collectSettings(file: string, options: LoadOptions): Promise<{settings: SettingList; fileState: FileState; problems: string[]; warnings: string[]}> {
  const {flags} = options
  const problems: string[] = []
  const warnings: string[] = []
  const settings = new SettingList()
  const text = await readConfigText(file, Boolean(flags.config), strictPermsOf(options))
  if (text !== undefined) readConfigSettings(text, file, settings, problems, warnings)
  if (settings.items.length > MAX_SETTINGS) {
    throw new ConfigError([`config file ${file} holds ${settings.items.length} settings, over the ${MAX_SETTINGS.toLocaleString('en')} a configuration may hold; it is not an apm-server.yml`])
  }

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

/** The config file: `-c` (default apm-server.yml) under --path.config, else --path.home, else the cwd; as `resolvePaths` finds it. */
export function locateConfigFile(flags: LoadOptions['flags'], cwd: string): string {
  const base = flags['path.config'] ? path.resolve(cwd, flags['path.config']) : flags['path.home'] ? path.resolve(cwd, flags['path.home']) : cwd
  return path.resolve(base, flags.config ?? 'apm-server.yml')
}

async function readConfigText(file: string, explicit: boolean, strictPerms: boolean): Promise<string | undefined> {
  try {
    // A regular file, opened without blocking and read up to the cap: a FIFO or /dev/zero at the path must
    // not hang or fill memory. Under strict perms, one no other user could have written (./trust.ts).
    const inspect = strictPerms ? (stat: Stats, fd: number) => checkTrustedConfigFile(file, stat, fd) : undefined
    return (await readRegularFile(file, MAX_CONFIG_BYTES, inspect)).toString('utf8')
  } catch (error) {
    if (isKeystoreError(error, 'EPERMS')) throw new ConfigError([error.message])
    if (error instanceof RefusedFileError) {
      if (error.refusal.reason === 'too-big') throw new ConfigError([`config file ${file} is over ${MAX_CONFIG_BYTES / 1024 / 1024} MiB; it is not an apm-server.yml`])
      throw new ConfigError([`config file ${file} is ${error.refusal.type}, not a regular file; point -c/--config at a file`])
    }

    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOENT') throw new ConfigError([`cannot read config file ${file}: ${code}; check the path and its permissions`])
    if (explicit) throw new ConfigError([`config file ${file} does not exist; check the -c/--config path`])
    return undefined
  }
}

/**
 * Collects settings, refusing a setting written twice (`a.b` and `a: {b}`) or inside another. Indexed by
 * name and by every dotted prefix of a name, so that adding one is linear in its name's length, not in
 * the settings before it (a file of 60,000 settings took 63 s to load).
 */
export class SettingList {
  items: Setting[] = []
  /** every setting an override replaced, in order */
  readonly replaced: Setting[] = []
  private readonly byName = new Map<string, Setting>()
  /** for each dotted prefix of a setting's name (`a`, `a.b` of `a.b.c`), the first setting under it */
  private readonly under = new Map<string, Setting>()
  private positions: Map<Setting, number> | undefined

  /** From the file: a clash is a problem. */
  add(setting: Setting, problems: string[]): void {
    const clash = this.byName.get(setting.name) ?? this.under.get(setting.name) ?? prefixesOf(setting.name).map((prefix) => this.byName.get(prefix)).find(Boolean)
    if (clash) problems.push(`${setting.where}: ${setting.name} is also set at ${clash.where} (as ${clash.name}); keep one`)
    else this.push(setting)
  }

  /** From -E or a flag: replaces what it overlaps (the setting, everything under it, anything it is under); returns what it replaced. */
  override(setting: Setting): Setting[] {
    const replaced = this.items.filter((other) => overlaps(other.name, setting.name))
    if (replaced.length > 0) {
      this.items = this.items.filter((other) => !replaced.includes(other))
      this.byName.clear()
      this.under.clear()
      for (const item of this.items) this.index(item)
    }

    this.push(setting)
    this.replaced.push(...replaced)
    return replaced
  }

  get(name: string): Setting | undefined {
    return this.byName.get(name)
  }

  /** Where `setting` is in `items` (-1 when it is not there). */
  indexOf(setting: Setting): number {
    this.positions ??= new Map(this.items.map((item, i) => [item, i]))
    return this.positions.get(setting) ?? -1
  }

  private push(setting: Setting): void {
    this.items.push(setting)
    this.index(setting)
    this.positions = undefined
  }

  private index(setting: Setting): void {
    this.byName.set(setting.name, setting)
    for (const prefix of prefixesOf(setting.name)) if (!this.under.has(prefix)) this.under.set(prefix, setting)
  }
}

/** `a` and `a.b` of `a.b.c`. */
function prefixesOf(name: string): string[] {
  const prefixes: string[] = []
  for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) prefixes.push(name.slice(0, dot))
  return prefixes
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

// The library's uniqueKeys compares each key with every key before it in its mapping: quadratic. Keys are
// checked by firstDuplicateKey instead.
const YAML_OPTIONS = {prettyErrors: false, schema: 'core', uniqueKeys: false} as const

/** The first key written twice in one mapping anywhere under `root` (core/yaml-keys.ts, in one pass). */
function firstDuplicateKey(root: unknown): {key: Scalar; first: Scalar} | undefined {
  const problem = findKeyProblem(root, {skipNonScalarKeys: true})
  return problem?.kind === 'duplicate' ? problem : undefined
}

const MAX_YAML_NOTES = 20

/** The first YAML errors or warnings of a document as lines, and how many more there were. */
function yamlNotes(notes: ReadonlyArray<{pos: [number, number]; message: string}>, lineOf: (offset: number) => string, fix: string): string[] {
  const lines = notes.slice(0, MAX_YAML_NOTES).map((note) => `${lineOf(note.pos[0])}: ${note.message.split('\n')[0]}${fix}`)
  if (notes.length > MAX_YAML_NOTES) lines.push(`... and ${notes.length - MAX_YAML_NOTES} more`)
  return lines
}

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

  const duplicate = firstDuplicateKey(doc.contents)
  if (duplicate) {
    problems.push(`${where}: the value has the key ${clip(String(duplicate.key.value))} twice; keep one`)
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

function readConfigSettings(text: string, file: string, settings: SettingList, problems: string[], warnings: string[]): void {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, {...YAML_OPTIONS, lineCounter})
  const lineOf = (offset: number) => `${file}:${lineCounter.linePos(offset).line}`
  problems.push(...yamlNotes(doc.errors, lineOf, '; fix the YAML'))
  warnings.push(...yamlNotes(doc.warnings, lineOf, ''))
  if (doc.errors.length > 0) return
  const duplicate = firstDuplicateKey(doc.contents)
  if (duplicate) {
    const at = (key: Scalar) => lineOf(key.range?.[0] ?? 0)
    problems.push(`${at(duplicate.key)}: ${clip(String(duplicate.key.value))} is written twice in one mapping (also at ${at(duplicate.first)}); keep one`)
    return
  }

  const contents = doc.contents as Node | null
  if (contents === null || (isScalar(contents) && contents.value === null)) return
  if (!isMap(contents)) {
    problems.push(`${lineOf(contents.range?.[0] ?? 0)}: the config file is not a mapping of settings; fix the YAML`)
    return
  }

  const locate = (node: Node) => lineOf(node.range?.[0] ?? 0)
  flatten(contents, '', locate, (setting) => settings.add(setting, problems), problems)
}
