/**
 * `${KEY}` resolution of the settings: the path settings first, from the environment and `${path.*}`
 * only (they decide where the keystore is), then every other setting from the keystore and then the
 * environment. The keystore is opened only when a reference needs it, once. Every problem names the
 * setting and where it was written, never a value; what came from the keystore is marked sensitive.
 */
import path from 'node:path'

import {isAlias, isMap, isScalar, isSeq, Node} from 'yaml'

import {KEY_NAME_RULE} from '../../core/entries.js'
import {isKeystoreError, KeystoreError} from '../../core/errors.js'
import {Keystore, openKeystore} from '../../core/keystore.js'
import {refuseUnusedPassword} from '../../core/password-env.js'
import {Lookup, LookupResult, ReferenceProblem, resolveTemplate} from '../../core/references.js'
import {ReferenceLog} from './provenance.js'
import {hasSensitiveName, REDACTED} from './redact.js'
import type {LoadOptions} from './server-config.js'
import {PATH_SETTINGS, Report, Resolved, Setting} from './settings.js'
import {strictPermsOf} from './trust.js'
import type {SettingList} from './sources.js'

/** The resolved paths, and the lookup of `${path.*}` in the settings resolved after them. */
export interface ResolvedPaths {
  home: string
  configDir: string
  data: string
  logs: string
  keystoreFile: string
  builtinLookup: Lookup
}

/**
 * Resolves the path settings and `keystore.path`, in order, each able to use the ones before it, from
 * the environment only. Problems are added to `problems`; each resolved entry to `resolved`.
 */
export function resolvePathSettings(
  settings: SettingList,
  options: LoadOptions,
  cwd: string,
  problems: string[],
  resolved: Map<string, Resolved>,
  log?: ReferenceLog,
): ResolvedPaths {
  const builtins = new Map<string, string>()
  const builtinLookup: Lookup = (name) => (builtins.has(name) ? {source: 'path', value: builtins.get(name) as string} : undefined)
  const pathOf = (name: (typeof PATH_SETTINGS)[number], base: string, fallback: string): string => {
    const setting = settings.get(name)
    if (!setting) return fallback
    const entry = resolveValue(setting, chain(builtinLookup, environmentLookup(options.env)), true, (report) => problems.push(report.message), log)
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
  return {builtinLookup, configDir, data, home, keystoreFile, logs}
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
function resolveValue(setting: Setting, lookup: Lookup, pathPhase: boolean, report: (report: Report) => void, log?: ReferenceLog): Resolved {
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
      const resolution = resolveTemplate(node.value, lookup, log?.observer(setting, name, where))
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
        shown[key] = hasSensitiveName(key) && item.value !== null ? REDACTED : item.shown
      }

      return {shown, value}
    }

    return {shown: null, value: undefined}
  }

  const {shown, value} = walk(setting.node, setting.name, setting.where)
  const redact = hasSensitiveName(setting.name) && value !== null && value !== undefined
  return {failed, sensitive, setting, shown: redact ? REDACTED : shown, value}
}

function environmentLookup(env: NodeJS.ProcessEnv): Lookup {
  // An empty variable counts as unset.
  return (name) => (env[name] ? {source: 'environment', value: env[name] as string} : undefined)
}

function keystoreLookup(keystore: Keystore): Lookup {
  // Exactly the stored bytes as UTF-8: a byte-order mark is kept, invalid UTF-8 is a problem, not replaced.
  const decoder = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})
  return (name): LookupResult | undefined => {
    if (!keystore.has(name)) return undefined
    // Outside the try: a keystore that fails to decrypt its values must be reported as such.
    const bytes = keystore.get(name)
    try {
      return {sensitive: true, source: 'keystore', value: decoder.decode(bytes)}
    } catch {
      return {problem: `the keystore value of ${name} is not UTF-8 text; store the value as text`, source: 'keystore', value: ''}
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
 * Resolves every setting but the paths. A dry run against the environment finds out whether any
 * reference reaches the keystore; only then is it opened (once), so a config without keystore
 * references never needs its password. Returns the keystore keys the values came from.
 */
export async function resolveOthers(others: Setting[], builtinLookup: Lookup, keystoreFile: string, options: LoadOptions) {
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
    const log = new ReferenceLog()
    const values = others.map((setting) => resolveValue(setting, lookup, false, (report) => reports.push({...report, setting}), log))
    return {log, reports, values}
  }

  let pass = runAll(probe)
  let keystoreError: KeystoreError | undefined
  const keystoreKeys = new Set<string>()
  let expiryOf = (_key: string): number | undefined => undefined
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
    if (keystore) expiryOf = (key) => (keystore.has(key) ? keystore.expiry(key) : undefined)
  }

  return {environment, expiryOf, keystoreError, keystoreKeys: [...keystoreKeys].sort(), pass}
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
    return {problem, source: 'keystore', value: ''}
  }
}

async function openKeystoreIfAny(file: string, options: LoadOptions): Promise<Keystore | undefined> {
  const strictPerms = strictPermsOf(options)
  try {
    // A keystore without a password while one is supplied may have been swapped: refused (issue 11).
    return await openKeystore(file, {onUnprotected: refuseUnusedPassword(options.env), password: options.password, strictPerms})
  } catch (error) {
    // No keystore holds no keys: references fall through to the environment.
    if (isKeystoreError(error, 'ENOKEYSTORE')) return undefined
    throw error
  }
}

export function describeKeystoreError(error: KeystoreError): string {
  // The keystore's messages name the file and never hold a secret.
  if (error.code === 'EDECRYPT') return `${error.message}; check the password in APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE`
  return error.message
}
