/**
 * `keystore sync DIR`: a directory of files becomes keys, file name as key and file bytes as value, the
 * layout of a mounted Kubernetes Secret (entries are symbolic links into `..data/`, itself a link to a
 * timestamped folder). Names starting with "." and folders are skipped. Every file is read through the
 * bounded reader (regular files only, never waited on, capped), every problem is collected and reported
 * at once, and nothing is written unless all of them are fine. The keystore is changed under its lock,
 * and not written at all when it already matches.
 */
import {Dirent, promises as fs, Stats} from 'node:fs'
import path from 'node:path'

import {describeFileType, readRegularFile, RefusedFileError} from './bounded-read.js'
import {isValidKeyName, KEY_NAME_RULE, MAX_KEYS, MAX_VALUE_BYTES} from './entries.js'
import {KeystoreError} from './errors.js'
import {askPasswordFirst, Keystore, openKeystore, UpdateOptions, updateKeystore} from './keystore.js'
import {MAX_KEYSTORE_BYTES, readKeystoreFile} from './keystore-file.js'
import {isOwnerTrusted, isSticky, isWritableByOthers, modeOf, STRICT_HINT, walkTrustedPath} from './trusted-path.js'

/** What a sync changed, or with `check` would change. Names only, sorted; never a value. */
export interface SyncChanges {
  added: string[]
  updated: string[]
  removed: string[]
  unchanged: number
}

export interface SyncOptions extends UpdateOptions, Pick<SyncReadOptions, 'afterRead'> {
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
  const files = await readSyncDirectory(dir, options)
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

export interface SyncReadOptions {
  /** false: read a directory, files and links that another user controls (the default judges them) */
  strictPerms?: boolean
  /**
   * Called after each file is read, before the next one is taken: the tests swap a Secret's `..data`
   * there, as the kubelet does.
   * @internal
   */
  afterRead?: (name: string) => Promise<void> | void
}

/** Reads of a directory that kept changing under them before the sync gives up. */
const MAX_READ_ATTEMPTS = 3

/**
 * Each file of `dir` that names a key, with its bytes; every problem at once, as one ESYNC error. The
 * files are one version of the directory: a Secret's `..data` link is resolved once and every file read
 * from that folder, then the link is read again, and a plain directory's files must keep their identity
 * (device, inode, size, mtime) until all are read; otherwise it is read again, up to 3 times.
 */
export async function readSyncDirectory(dir: string, options: SyncReadOptions = {}): Promise<Map<string, Buffer>> {
  const uid = options.strictPerms === false ? undefined : process.getuid?.()
  if (uid !== undefined) await judgeSyncDirectory(dir, dir, uid)
  for (let attempt = 1; ; attempt++) {
    // eslint-disable-next-line no-await-in-loop -- a read is tried again only when the one before it saw a change
    const read = await readOnce(dir, uid, options.afterRead)
    if (read) return read
    if (attempt === MAX_READ_ATTEMPTS) {
      throw syncError(dir, `kept changing while it was read (${MAX_READ_ATTEMPTS} times: a Secret being updated, or another writer); nothing was changed: run sync again once it is still`)
    }
  }
}

/** Where a Secret's files are: `..data` resolved once, or undefined for a plain directory. */
interface Pin {
  /** what the `..data` link held when it was resolved */
  link: string
  /** the folder it led to */
  folder: string
}

/** What a read made of one entry: its bytes, what is wrong with it (a noun phrase), or nothing (skipped). */
type Outcome = {value: Buffer; source: string; stat?: Stats} | {problem: string; trust?: boolean} | undefined

/** One read of the whole directory: the files, or undefined when it changed while being read. */
async function readOnce(dir: string, uid: number | undefined, afterRead: SyncReadOptions['afterRead']): Promise<Map<string, Buffer> | undefined> {
  const pin = await pinSecretData(dir, uid)
  const candidates = await listCandidates(dir)
  const files = new Map<string, Buffer>()
  const read: Array<[string, Stats]> = []
  const problems: Array<[string, string]> = []
  let trustProblems = false
  const budget = {left: MAX_KEYSTORE_BYTES}
  let next = 0
  const worker = async () => {
    while (next < candidates.length && budget.left >= 0) {
      const entry = candidates[next++]
      // eslint-disable-next-line no-await-in-loop -- each worker reads its files one after another
      const outcome = await readCandidate({budget, dir, entry, pin, uid})
      if (outcome && 'problem' in outcome) {
        problems.push([entry.name, outcome.problem])
        trustProblems ||= outcome.trust === true
      } else if (outcome) {
        files.set(entry.name, outcome.value)
        if (outcome.stat) read.push([outcome.source, outcome.stat])
      }

      // eslint-disable-next-line no-await-in-loop -- the tests' hook runs between two reads
      await afterRead?.(entry.name)
    }
  }

  await Promise.all(Array.from({length: READ_CONCURRENCY}, worker))
  if (!(await isUnchanged(dir, pin, read))) return undefined
  if (budget.left < 0) throw syncError(dir, `holds more than ${MAX_KEYSTORE_BYTES} bytes in its files, more than a keystore may hold; nothing was changed: sync fewer or smaller files`)
  if (problems.length > 0) {
    throw syncError(
      dir,
      `has ${problems.length} file${problems.length === 1 ? '' : 's'} that cannot become keys: ${describeProblems(problems)}; nothing was changed: fix or remove them (names starting with "." and folders are skipped)${trustProblems ? ` ${STRICT_HINT}` : ''}`,
    )
  }

  if (files.size === 0) throw syncError(dir, 'holds no file to sync (names starting with "." and folders are skipped); nothing was changed: check that the directory is mounted')
  if (files.size > MAX_KEYS) throw syncError(dir, `holds ${files.size} files, more than the ${MAX_KEYS} keys a keystore may hold; nothing was changed`)
  return files
}

/**
 * A Secret's `..data` link, resolved once (and, under strict perms, judged as the directory is: the link
 * and the folder it leads to). Undefined when `..data` is not a link, or leads nowhere (its entries are
 * then broken links, named as such).
 */
async function pinSecretData(dir: string, uid: number | undefined): Promise<Pin | undefined> {
  const data = path.join(dir, '..data')
  const link = await fs.readlink(data).catch(() => undefined)
  if (link === undefined) return undefined
  const folder = await fs.realpath(data).catch(() => undefined)
  if (folder === undefined) return undefined
  if (uid !== undefined) await judgeSyncDirectory(data, dir, uid)
  return {folder, link}
}

/** True when what was read is still there: the same `..data` link, the same files. */
async function isUnchanged(dir: string, pin: Pin | undefined, read: ReadonlyArray<[string, Stats]>): Promise<boolean> {
  if (pin && (await fs.readlink(path.join(dir, '..data')).catch(() => undefined)) !== pin.link) return false
  let next = 0
  let same = true
  const worker = async () => {
    while (same && next < read.length) {
      const [source, before] = read[next++]
      // eslint-disable-next-line no-await-in-loop -- each worker checks its files one after another
      const after = await fs.stat(source).catch(() => undefined)
      same &&= after !== undefined && after.dev === before.dev && after.ino === before.ino && after.size === before.size && after.mtimeMs === before.mtimeMs
    }
  }

  await Promise.all(Array.from({length: READ_CONCURRENCY}, worker))
  return same
}

/**
 * Under strict perms, `dir` (or a Secret's `..data` in it, `shown` naming the sync directory) as the
 * keystore's own path is judged: every directory and link on the way owned by the user or root and not
 * writable by others (trusted-path.ts), and the directory itself owned by the user or root, writable by
 * nobody else unless sticky (then others cannot replace what we or root own in it, and what they add
 * is refused file by file for its owner). A missing or non-directory `dir` is left to the listing.
 */
async function judgeSyncDirectory(dir: string, shown: string, uid: number): Promise<void> {
  const walked = await walkTrustedPath(dir, 'sync directory')
  const stat = walked.exists ? await fs.stat(walked.real).catch(() => undefined) : undefined
  if (!stat?.isDirectory()) return
  const what = dir === shown ? `sync directory ${shown}` : `folder ${walked.real} of sync directory ${shown} (its ..data)`
  if (!isOwnerTrusted(stat.uid, uid)) {
    throw new KeystoreError(
      'EPERMS',
      `${what} is owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root, and its owner could put any file in it; run "chown ${uid} ${walked.real}" or run as its owner ${STRICT_HINT}`,
    )
  }

  if (isWritableByOthers(stat) && !isSticky(stat)) {
    throw new KeystoreError('EPERMS', `${what} has mode ${modeOf(stat)}, writable by group or others, who could add, replace or remove its files; run "chmod go-w ${walked.real}" ${STRICT_HINT}`)
  }
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

interface Candidate {
  dir: string
  entry: Dirent
  pin: Pin | undefined
  /** the user whose trust decides, or undefined when strict perms are off */
  uid: number | undefined
  budget: {left: number}
}

/** Refused under strict perms: another user's file, or a link another user owns or can re-point. */
function untrusted(uid: number, link: boolean): Outcome {
  return {problem: link ? `a symbolic link another user owns or can re-point (not uid ${uid} or root)` : `owned by another user (not uid ${uid} or root)`, trust: true}
}

/** One entry: its bytes, or why it cannot become a key, or undefined to skip it (a folder behind a link). */
async function readCandidate({budget, dir, entry, pin, uid}: Candidate): Promise<Outcome> {
  const file = path.join(dir, entry.name)
  let source = file
  if (!entry.isFile()) {
    // A symbolic link (the Secret layout) or a type the listing did not tell: a folder behind it is skipped.
    const stat = await fs.stat(file).catch((error: NodeJS.ErrnoException) => error)
    if (!(stat instanceof Error) && stat.isDirectory()) return undefined
    if (!isValidKeyName(entry.name)) return {problem: `not a valid key name (${KEY_NAME_RULE})`}
    if (stat instanceof Error) return {problem: describeError(stat)}
    const link = await fs.lstat(file).catch(() => undefined)
    if (link?.isSymbolicLink()) {
      const target = await fs.readlink(file).catch(() => undefined)
      // The Secret layout: read from the folder pinned for this read, never through ..data again.
      if (pin && target === `..data/${entry.name}`) {
        if (uid !== undefined && !isOwnerTrusted(link.uid, uid)) return untrusted(uid, true)
        source = path.join(pin.folder, entry.name)
      } else if (uid !== undefined) {
        const refused = await judgeOtherLink(file, uid)
        if (refused) return refused
      }
    }
  }

  if (!isValidKeyName(entry.name)) return {problem: `not a valid key name (${KEY_NAME_RULE})`}
  let opened: Stats | undefined
  let value: Buffer
  try {
    value = await readRegularFile(source, MAX_VALUE_BYTES, (stat) => {
      opened = stat
      if (uid !== undefined && !isOwnerTrusted(stat.uid, uid)) throw new UntrustedOwner()
      // Counted before it is read: files that cannot fit in a keystore together are never all read. A
      // file over the limit for one value is refused right after this, unread and uncounted.
      if (stat.size <= MAX_VALUE_BYTES) budget.left -= stat.size
      if (budget.left < 0) throw new RefusedFileError({reason: 'too-big', size: stat.size})
    })
  } catch (error) {
    if (error instanceof UntrustedOwner) return untrusted(uid!, false)
    if (budget.left < 0) return undefined
    if (error instanceof RefusedFileError) {
      return {problem: error.refusal.reason === 'not-regular' ? `${error.refusal.type}, not a regular file` : `over the ${MAX_VALUE_BYTES}-byte (64 MiB) limit for one value`}
    }

    // open(2) of a socket fails (ENXIO) before the reader can tell what it is: say what it is.
    const stat = await fs.stat(source).catch(() => undefined)
    if (stat && !stat.isFile()) return {problem: `${describeFileType(stat)}, not a regular file`}
    return {problem: describeError(error as NodeJS.ErrnoException)}
  }

  return value.length === 0 ? {problem: 'empty'} : {source, stat: opened, value}
}

class UntrustedOwner extends Error {}

/**
 * A link other than the Secret layout's, under strict perms: every hop and directory on its way judged as
 * the keystore's path is. Undefined when it may be followed, else what is wrong with it.
 */
async function judgeOtherLink(file: string, uid: number): Promise<Outcome> {
  try {
    await walkTrustedPath(file, 'sync directory')
    return undefined
  } catch (error) {
    if (error instanceof KeystoreError && error.code === 'EPERMS') return untrusted(uid, true)
    if (error instanceof KeystoreError) return {problem: 'a symbolic link loop'}
    return {problem: describeError(error as NodeJS.ErrnoException)}
  }
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
