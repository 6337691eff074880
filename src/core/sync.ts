/**
 * `keystore sync DIR`: a directory of files becomes keys, file name as key and file bytes as value, the
 * layout of a mounted Kubernetes Secret (entries are symbolic links into `..data/`, itself a link to a
 * timestamped folder). Names starting with "." and folders are skipped. Every file is read through the
 * bounded reader (regular files only, never waited on, capped), every problem is collected and reported
 * at once, and nothing is written unless all of them are fine. The keystore is changed under its lock,
 * and not written at all when it already matches.
 */
import {Dirent, promises as fs} from 'node:fs'
import path from 'node:path'

import {describeFileType, readRegularFile, RefusedFileError} from './bounded-read.js'
import {isValidKeyName, KEY_NAME_RULE, MAX_KEYS, MAX_VALUE_BYTES} from './entries.js'
import {KeystoreError} from './errors.js'
import {askPasswordFirst, Keystore, openKeystore, UpdateOptions, updateKeystore} from './keystore.js'
import {MAX_KEYSTORE_BYTES, readKeystoreFile} from './keystore-file.js'

/** What a sync changed, or with `check` would change. Names only, sorted; never a value. */
export interface SyncChanges {
  added: string[]
  updated: string[]
  removed: string[]
  unchanged: number
}

export interface SyncOptions extends UpdateOptions {
  /** remove the keys that have no file in the directory */
  prune?: boolean
  /** change nothing: only say what a sync would change */
  check?: boolean
  /** when the keys added or updated expire, ms since the epoch */
  expires?: number
}

/**
 * Entries a directory may hold, skipped ones included, before it is refused unread: twice the keys a
 * keystore may hold leaves room for a Secret's dot entries, and bounds the time spent listing.
 */
const MAX_DIRECTORY_ENTRIES = 2 * MAX_KEYS
/** Files read at once: enough to keep the thread pool busy, few enough to bound open descriptors. */
const READ_CONCURRENCY = 32
/** Files named for each kind of problem in the one error line; the rest are counted. */
const NAMES_SHOWN = 5

/** Makes the keystore at `file` match the directory `dir` (see {@link SyncOptions}). */
export async function syncKeystore(file: string, dir: string, options: SyncOptions = {}): Promise<SyncChanges> {
  // The directory is read before the lock is taken: a slow mount never holds up other writers.
  const files = await readSyncDirectory(dir)
  await askPasswordFirst(file, options)
  if (options.check) {
    const exists = (await readKeystoreFile(file, options)) !== undefined
    return diffSync(exists ? await openKeystore(file, options) : undefined, files, options.prune ?? false)
  }

  return updateKeystore(file, options, (keystore) => {
    const changes = applySync(keystore, files, options.prune ?? false)
    if (options.expires !== undefined) for (const name of [...changes.added, ...changes.updated]) keystore.setExpiry(name, options.expires)
    return changes
  })
}

/** What a sync of `files` would change in `keystore` (undefined: none yet). */
export function diffSync(keystore: Keystore | undefined, files: ReadonlyMap<string, Buffer>, prune: boolean): SyncChanges {
  // In the order the output lists them.
  const changes: SyncChanges = {added: [], updated: [], removed: [], unchanged: 0}
  for (const name of [...files.keys()].sort()) {
    if (!keystore?.has(name)) changes.added.push(name)
    else if (keystore.get(name).equals(files.get(name)!)) changes.unchanged++
    else changes.updated.push(name)
  }

  if (prune && keystore) changes.removed = keystore.keys().filter((name) => !files.has(name))
  return changes
}

/** Applies a sync in memory; a keystore that already matches is left unchanged (and is not written). */
export function applySync(keystore: Keystore, files: ReadonlyMap<string, Buffer>, prune: boolean): SyncChanges {
  const changes = diffSync(keystore, files, prune)
  for (const name of changes.added) keystore.set(name, files.get(name)!)
  for (const name of changes.updated) keystore.set(name, files.get(name)!, {overwrite: true})
  keystore.remove(changes.removed)
  return changes
}

function syncError(dir: string, detail: string): KeystoreError {
  return new KeystoreError('ESYNC', `${dir} ${detail}`)
}

/** Each file of `dir` that names a key, with its bytes; every problem at once, as one ESYNC error. */
export async function readSyncDirectory(dir: string): Promise<Map<string, Buffer>> {
  const candidates = await listCandidates(dir)
  const files = new Map<string, Buffer>()
  const problems: Array<[string, string]> = []
  const budget = {left: MAX_KEYSTORE_BYTES}
  let next = 0
  const worker = async () => {
    while (next < candidates.length && budget.left >= 0) {
      const entry = candidates[next++]
      // eslint-disable-next-line no-await-in-loop -- each worker reads its files one after another
      const outcome = await readCandidate(dir, entry, budget)
      if (typeof outcome === 'string') problems.push([entry.name, outcome])
      else if (outcome) files.set(entry.name, outcome)
    }
  }

  await Promise.all(Array.from({length: READ_CONCURRENCY}, worker))
  if (budget.left < 0) throw syncError(dir, `holds more than ${MAX_KEYSTORE_BYTES} bytes in its files, more than a keystore may hold; nothing was changed: sync fewer or smaller files`)
  if (problems.length > 0) {
    throw syncError(
      dir,
      `has ${problems.length} file${problems.length === 1 ? '' : 's'} that cannot become keys: ${describeProblems(problems)}; nothing was changed: fix or remove them (names starting with "." and folders are skipped)`,
    )
  }

  if (files.size === 0) throw syncError(dir, 'holds no file to sync (names starting with "." and folders are skipped); nothing was changed: check that the directory is mounted')
  if (files.size > MAX_KEYS) throw syncError(dir, `holds ${files.size} files, more than the ${MAX_KEYS} keys a keystore may hold; nothing was changed`)
  return files
}

/** The entries of `dir` that are not skipped by name or type alone. */
async function listCandidates(dir: string): Promise<Dirent[]> {
  let handle
  try {
    handle = await fs.opendir(dir)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw syncError(dir, 'does not exist; give the directory of files to sync (a mounted Secret)')
    if (code === 'ENOTDIR') throw syncError(dir, 'is not a directory; give the directory of files to sync (a mounted Secret)')
    throw syncError(dir, `cannot be read: ${code ?? String(error)}; check the path and its permissions`)
  }

  const candidates: Dirent[] = []
  let seen = 0
  // The loop closes the directory when it ends or throws.
  for await (const entry of handle) {
    if (++seen > MAX_DIRECTORY_ENTRIES) throw syncError(dir, `holds more than ${MAX_DIRECTORY_ENTRIES} entries; nothing was changed: sync a directory of at most ${MAX_KEYS} files`)
    if (!entry.name.startsWith('.') && !entry.isDirectory()) candidates.push(entry)
  }

  return candidates
}

/** The bytes of one entry, undefined to skip it (a folder behind a link), or what is wrong with it (a noun phrase). */
async function readCandidate(dir: string, entry: Dirent, budget: {left: number}): Promise<Buffer | string | undefined> {
  const file = path.join(dir, entry.name)
  if (!entry.isFile()) {
    // A symbolic link (the Secret layout) or a type the listing did not tell: a folder behind it is skipped.
    const stat = await fs.stat(file).catch((error: NodeJS.ErrnoException) => error)
    if (!(stat instanceof Error) && stat.isDirectory()) return undefined
    if (!isValidKeyName(entry.name)) return `not a valid key name (${KEY_NAME_RULE})`
    if (stat instanceof Error) return describeError(stat)
  }

  if (!isValidKeyName(entry.name)) return `not a valid key name (${KEY_NAME_RULE})`
  let value: Buffer
  try {
    value = await readRegularFile(file, MAX_VALUE_BYTES, (stat) => {
      // Counted before it is read: files that cannot fit in a keystore together are never all read. A
      // file over the limit for one value is refused right after this, unread and uncounted.
      if (stat.size <= MAX_VALUE_BYTES) budget.left -= stat.size
      if (budget.left < 0) throw new RefusedFileError({reason: 'too-big', size: stat.size})
    })
  } catch (error) {
    if (budget.left < 0) return undefined
    if (error instanceof RefusedFileError) {
      return error.refusal.reason === 'not-regular' ? `${error.refusal.type}, not a regular file` : `over the ${MAX_VALUE_BYTES}-byte (64 MiB) limit for one value`
    }

    // open(2) of a socket fails (ENXIO) before the reader can tell what it is: say what it is.
    const stat = await fs.stat(file).catch(() => undefined)
    if (stat && !stat.isFile()) return `${describeFileType(stat)}, not a regular file`
    return describeError(error as NodeJS.ErrnoException)
  }

  return value.length === 0 ? 'empty' : value
}

function describeError(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ELOOP':
      return 'a symbolic link loop'
    case 'ENOENT':
      return 'a broken symbolic link (or removed while being read)'
    case 'EACCES':
    case 'EPERM':
      return `unreadable (${error.code})`
    default:
      return `unreadable (${error.code ?? error.message})`
  }
}

/**
 * Every kind of problem, each with the files that have it: "empty: "A", "B" and 998 more; a FIFO, not a
 * regular file: "F"". Grouped, so a thousand empty files never hide the one FIFO.
 */
function describeProblems(problems: ReadonlyArray<[string, string]>): string {
  const byReason = new Map<string, string[]>()
  for (const [name, reason] of problems) byReason.set(reason, [...(byReason.get(reason) ?? []), name])
  return [...byReason]
    .sort(([a], [b]) => compare(a, b))
    .map(([reason, names]) => {
      const shown = names.sort(compare).slice(0, NAMES_SHOWN).map(showName).join(', ')
      return `${reason}: ${shown}${names.length > NAMES_SHOWN ? ` and ${names.length - NAMES_SHOWN} more` : ''}`
    })
    .join('; ')
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** A file name is not a secret, but may be long or hold control characters: shown escaped and cut. */
function showName(name: string): string {
  return JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}...` : name)
}
