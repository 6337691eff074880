/**
 * Beats-style settings: nested or dotted YAML keys ("a.b: 1" and "a: {b: 1}" are the same setting),
 * and the `path.*` layout that decides where the keystore lives.
 */
import path from 'node:path'

import {readRegularFile, RefusedFileError} from './bounded-read.js'
import {KeystoreError} from './errors.js'
import {resolveTemplate} from './references.js'

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
  const {default: yaml} = await import('yaml')
  let parsed: unknown
  try {
    // YAML 1.2 core schema: "on"/"yes" stay strings (YAML 1.1 would make them booleans). Only path
    // settings are read here; the server's config loader keeps every value's source text.
    parsed = yaml.parse(text, {prettyErrors: false, schema: 'core', uniqueKeys: true})
  } catch (error) {
    const message = (error as Error).message.split('\n')[0]
    throw new KeystoreError('ECONFIG', `cannot parse config file ${file}: ${message}; fix the YAML`)
  }

  if (parsed === null || parsed === undefined) return {}
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new KeystoreError('ECONFIG', `config file ${file} is not a mapping of settings; fix the YAML`)
  return parsed as Settings
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
 * there is one, so a FIFO or a device planted there must not hang or exhaust it.
 */
async function readConfigFile(file: string, explicit: boolean): Promise<string | undefined> {
  try {
    return (await readRegularFile(file, MAX_CONFIG_BYTES)).toString('utf8')
  } catch (error) {
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

/**
 * Works out home, config, data and keystore paths as Beats does: flags beat the config file, which
 * beats the defaults (`path.home` = the current directory, `path.data` = `${path.home}/data`,
 * keystore = `${path.data}/apm-server.keystore`).
 */
export async function resolvePaths(flags: PathFlags, cwd: string = process.cwd()): Promise<ResolvedPaths> {
  const homeFlag = flags['path.home'] ? path.resolve(cwd, flags['path.home']) : undefined
  const configDirFlag = flags['path.config'] ? path.resolve(cwd, flags['path.config']) : undefined
  const configBase = configDirFlag ?? homeFlag ?? cwd
  const configFile = path.resolve(configBase, flags.config ?? 'apm-server.yml')
  let settings: Settings | undefined
  const text = await readConfigFile(configFile, Boolean(flags.config))
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
