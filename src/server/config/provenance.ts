/**
 * Where each `${KEY}` of the configuration came from: the keystore, the environment, its default, a
 * path setting (`${path.data}`), or nowhere; what follows from it: a key in both the keystore and the
 * environment (the keystore wins, as in Beats) and keystore secrets that expire soon or have expired (an
 * expired secret token is a problem: `run` does not start and a reload fails, closed); and the
 * keystore file itself, for `test config --explain`. Never a value.
 */
import {promises as fs} from 'node:fs'
import os from 'node:os'

import {describeDistance, expiryState} from '../../core/expiry.js'
import {looksNative, readNativeHeader} from '../../core/format/native.js'
import {inspectKeystoreData} from '../../core/keystore.js'
import {readKeystoreFile} from '../../core/keystore-file.js'
import type {Lookup, LookupObserver} from '../../core/references.js'
import {LEGACY_TOKEN, Note, Setting, TOKEN} from './settings.js'

export type ReferenceSource = 'default' | 'environment' | 'keystore' | 'missing' | 'path'

/** One `${KEY}` of the configuration. */
export interface ConfiguredReference {
  /** the name looked up: a keystore key or an environment variable */
  key: string
  /** the setting it is in; a list item as name[i], a mapping's field as name.field */
  setting: string
  /** where it was written: file:line, "-E name" or the flag */
  where: string
  source: ReferenceSource
  /** also set in the environment, whose value the keystore's replaced */
  alsoInEnvironment: boolean
  /** when the keystore entry expires (ISO 8601); null when it does not, or the value is not from the keystore */
  expires: null | string
}

/** Collects the references looked up while settings resolve, in the order they are met. */
export class ReferenceLog {
  private readonly seen: Array<{key: string; setting: Setting; name: string; where: string; source: ReferenceSource}> = []
  /** the references in `seen`, as key, name and where: a value may hold a reference per ten bytes of a 1 MiB file */
  private readonly seenKeys = new Set<string>()

  /** The observer for one value inside `setting` (`name` and `where` locate the value). */
  observer(setting: Setting, name: string, where: string): LookupObserver {
    return (key, outcome, found) => {
      const source = outcome === 'found' ? ((found?.source ?? 'environment') as ReferenceSource) : outcome
      const id = `${key}\u0000${name}\u0000${where}`
      if (this.seenKeys.has(id)) return
      this.seenKeys.add(id)
      this.seen.push({key, name, setting, source, where})
    }
  }

  /**
   * Every reference, with whether the environment also has a keystore key, and its expiry; then notes:
   * a warning for a key in both, and for a keystore secret that expires within 14 days or has expired,
   * a problem for an expired secret token.
   */
  finish(environment: Lookup, expiryOf: (key: string) => number | undefined, now: number, notes: {problem: Note; warn: Note}): Array<ConfiguredReference & {from: Setting}> {
    return this.seen.map(({key, name, setting, source, where}) => {
      const alsoInEnvironment = source === 'keystore' && environment(key) !== undefined
      const at = source === 'keystore' ? expiryOf(key) : undefined
      if (alsoInEnvironment) {
        notes.warn(setting, `${where}: ${name}: \${${key}} is set in both the keystore and the environment; the keystore's value is used (as in Beats): remove the one you do not mean`)
      }

      if (at !== undefined) noteExpiry({at, key, name, setting, where}, now, notes)
      return {alsoInEnvironment, expires: at === undefined ? null : new Date(at).toISOString(), from: setting, key, setting: name, source, where}
    })
  }
}

function noteExpiry(reference: {at: number; key: string; name: string; setting: Setting; where: string}, now: number, notes: {problem: Note; warn: Note}): void {
  const {at, key, name, setting, where} = reference
  const state = expiryState(at, now)
  if (state === 'later') return
  const when = `${state === 'expired' ? 'expired' : 'expires'} on ${new Date(at).toISOString()} (${describeDistance(at, now)})`
  const rotate = `rotate it ("apm-server keystore add ${key} --generate --force", then give the new value to whoever uses it)`
  const extend = `or extend it ("apm-server keystore add ${key} --force --expires 90d", with its current value)`
  const isToken = setting.name === TOKEN || setting.name === LEGACY_TOKEN
  if (state === 'expired' && isToken) notes.problem(setting, `${where}: ${name}: the secret token \${${key}} in the keystore ${when}; ${rotate} ${extend}`)
  else notes.warn(setting, `${where}: ${name}: \${${key}} in the keystore ${when}; ${rotate} ${extend}`)
}

/** The keystore file, as `test config --explain` shows it. */
export interface KeystoreDescription {
  path: string
  exists: boolean
  format: null | string
  /** the native format version */
  version: null | number
  passwordProtected: boolean | null
  uid: null | number
  /** the owner's name, when it is the current user or root */
  user: null | string
  /** e.g. "0600" */
  mode: null | string
}

/** Describes the keystore at `file` from its header and its inode: no password, no decryption. */
export async function describeKeystoreFile(file: string): Promise<KeystoreDescription> {
  const none: KeystoreDescription = {exists: false, format: null, mode: null, passwordProtected: null, path: file, uid: null, user: null, version: null}
  const stat = await fs.stat(file).catch(() => undefined)
  if (!stat) return none
  // eslint-disable-next-line no-bitwise -- permission bits
  const mode = (stat.mode & 0o7777).toString(8).padStart(4, '0')
  const data = await readKeystoreFile(file, {strictPerms: false}).catch(() => undefined)
  let info: {format: string; passwordProtected: boolean; version: null | number} | undefined
  try {
    if (data) info = {...inspectKeystoreData(data), version: looksNative(data) ? readNativeHeader(data).version : null}
  } catch {
    // not a keystore, or a damaged one: its path, owner and mode are still worth showing
  }

  let user: null | string = stat.uid === 0 ? 'root' : null
  try {
    if (stat.uid === process.getuid?.()) user = os.userInfo().username
  } catch {
    // no passwd entry for this uid
  }

  return {exists: true, format: info?.format ?? null, mode, passwordProtected: info?.passwordProtected ?? null, path: file, uid: stat.uid, user, version: info?.version ?? null}
}
