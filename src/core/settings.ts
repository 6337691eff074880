/**
 * Beats-style settings: nested or dotted YAML keys ("a.b: 1" and "a: {b: 1}" are the same setting),
 * and the `path.*` layout that decides where the keystore lives.
 */
import {Stats} from 'node:fs'
import path from 'node:path'

import type {Node} from 'yaml'

import {readRegularFile, RefusedFileError} from './bounded-read.js'
import {isKeystoreError, KeystoreError} from './errors.js'
import {resolveTemplate} from './references.js'
import {checkTrustedConfigFile} from './trusted-path.js'

export type Settings = Record<string, unknown>

/** An apm-server.yml is a few KiB; a bigger file is not one (the server's loader has the same cap). */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024

/** Reads a setting by dotted name, whichever way the YAML spelled it. */
export function getSetting(settings: unknown, name: string): unknown {
  if (typeof settings !== 'object' || settings === null) return undefined
  const object = settings as Settings
  if (Object.hasOwn(object, name)) return object[name]
  const parts = name.split('.')
  for (let i = parts.length - 1; i >= 1; i--) {
    const head = parts.slice(0, i).join('.')
    if (Object.hasOwn(object, head)) {
      const found = getSetting(object[head], parts.slice(i).join('.'))
      if (found !== undefined) return found
    }
  }

  return undefined
}

export interface PathFlags {
  'path.home'?: string
  'path.config'?: string
  'path.data'?: string
  config?: string
}

export interface ResolvedPaths {
  home: string
  config: string
  data: string
  /** the config file; `configExists` tells whether it is there */
  configFile: string
  configExists: boolean
  keystore: string
  /** the parsed config file, when it exists */
  settings?: Settings
}

/** Parses a YAML config file. The parser is loaded only when there is a file to parse. */
export async function parseConfigText(text: string, file: string): Promise<Settings> {
  // yaml is CommonJS: its default export is the module in Node and in the bundle alike.
  const [{default: yaml}, {findKeyProblem}] = await Promise.all([import('yaml'), import('./yaml-keys.js')])
  const lineCounter = new yaml.LineCounter()
  // YAML 1.2 core schema: "on"/"yes" stay strings (YAML 1.1 would make them booleans). Only path
  // settings are read here; the server's config loader keeps every value's source text. Keys are checked
  // by findKeyProblem: the library's uniqueKeys is quadratic in the number of keys.
  const doc = yaml.parseDocument(text, {lineCounter, prettyErrors: false, schema: 'core', uniqueKeys: false})
  const refuse = (problem: string) => new KeystoreError('ECONFIG', `cannot parse config file ${file}: ${problem}; fix the YAML`)
  if (doc.errors.length > 0) throw refuse(doc.errors[0].message.split('\n')[0])
  const lineOf = (node: {range?: null | number[]} | null) => lineCounter.linePos(node?.range?.[0] ?? 0).line
  const problem = findKeyProblem(doc.contents)
  if (problem?.kind === 'duplicate') throw refuse(`key ${shortText(String(problem.key.value))} at line ${lineOf(problem.key)} is also at line ${lineOf(problem.first)} of the same mapping`)
  if (problem) throw refuse(`the key at line ${lineOf(problem.key ?? (problem.pair.value as Node | null))} is not a plain name`)
  let parsed: unknown
  try {
    parsed = doc.toJS()
  } catch (error) {
    // An alias expanding past maxAliasCount, say.
    throw refuse((error as Error).message.split('\n')[0])
  }

  if (parsed === null || parsed === undefined) return {}
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new KeystoreError('ECONFIG', `config file ${file} is not a mapping of settings; fix the YAML`)
  return parsed as Settings
}

/** A name from a file, cut for a one-line message. */
function shortText(text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}...` : text
}

function stringSetting(settings: Settings | undefined, name: string, file: string): string | undefined {
  const value = getSetting(settings, name)
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') throw new KeystoreError('ECONFIG', `setting ${name} in ${file} must be a string path`)
  return value
}

/**
 * The config file's text, or undefined when there is none at the default path. A regular file only, read
 * without blocking and up to {@link MAX_CONFIG_BYTES}: every keystore command reads ./apm-server.yml when
 * there is one, so a FIFO or a device planted there must not hang or exhaust it. Under strict perms it
 * must be a file no other user could have written or swapped ({@link checkTrustedConfigFile}): root in a
 * directory others can write read their apm-server.yml, whose keystore.path named a file of root's.
 */
async function readConfigFile(file: string, explicit: boolean, strictPerms: boolean): Promise<string | undefined> {
  try {
    const inspect = strictPerms ? (stat: Stats, fd: number) => checkTrustedConfigFile(file, stat, fd) : undefined
    return (await readRegularFile(file, MAX_CONFIG_BYTES, inspect)).toString('utf8')
  } catch (error) {
    if (isKeystoreError(error)) throw error
    if (error instanceof RefusedFileError) {
      const {refusal} = error
      if (refusal.reason === 'not-regular') throw new KeystoreError('ECONFIG', `config file ${file} is ${refusal.type}, not a regular file; point -c/--config at a file`)
      throw new KeystoreError('ECONFIG', `config file ${file} is over ${MAX_CONFIG_BYTES} bytes; it is not an apm-server.yml, point -c/--config at the right file`)
    }

    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOENT') throw new KeystoreError('ECONFIG', `cannot read config file ${file}: ${code}; check the path and its permissions`)
    if (explicit) throw new KeystoreError('ECONFIG', `config file ${file} does not exist; check the -c/--config path`)
    return undefined
  }
}

export interface ResolveOptions {
  /** judge the config file as Beats' strict.perms does (see {@link checkTrustedConfigFile}); default true */
  strictPerms?: boolean
}

/**
 * Works out home, config, data and keystore paths as Beats does: flags beat the config file, which
 * beats the defaults (`path.home` = the current directory, `path.data` = `${path.home}/data`,
 * keystore = `${path.data}/apm-server.keystore`).
 */
export async function resolvePaths(flags: PathFlags, cwd: string = process.cwd(), options: ResolveOptions = {}): Promise<ResolvedPaths> {
  const homeFlag = flags['path.home'] ? path.resolve(cwd, flags['path.home']) : undefined
  const configDirFlag = flags['path.config'] ? path.resolve(cwd, flags['path.config']) : undefined
  const configBase = configDirFlag ?? homeFlag ?? cwd
  const configFile = path.resolve(configBase, flags.config ?? 'apm-server.yml')
  let settings: Settings | undefined
  const text = await readConfigFile(configFile, Boolean(flags.config), options.strictPerms !== false)
  if (text !== undefined) settings = await parseConfigText(text, configFile)
  // Path settings may use the environment and ${path.*} (not the keystore: they decide where it is),
  // exactly as the server's config loader resolves them.
  const known: Record<string, string> = {}
  const setting = (name: string, base: string): string | undefined => {
    const value = stringSetting(settings, name, configFile)
    if (value === undefined) return undefined
    const resolved = resolveTemplate(value, (key) => {
      const found = known[key] ?? process.env[key]
      return found ? {value: found} : undefined
    })
    if (resolved.value === undefined) {
      const problem = resolved.problems[0]
      const what = problem.kind === 'syntax' ? problem.message : `${'reference' in problem ? problem.reference : 'a reference'} is not set in the environment`
      throw new KeystoreError('ECONFIG', `setting ${name} in ${configFile}: ${what}; set the variable or fix the setting`)
    }

    return path.resolve(base, resolved.value)
  }

  const home = homeFlag ?? setting('path.home', cwd) ?? cwd
  known['path.home'] = home
  const config = configDirFlag ?? setting('path.config', cwd) ?? home
  known['path.config'] = config
  const data = flags['path.data'] ? path.resolve(cwd, flags['path.data']) : (setting('path.data', cwd) ?? path.join(home, 'data'))
  known['path.data'] = data
  known['path.logs'] = setting('path.logs', cwd) ?? path.join(home, 'logs')
  const keystore = setting('keystore.path', home) ?? path.join(data, 'apm-server.keystore')
  return {config, configExists: text !== undefined, configFile, data, home, keystore, settings}
}
