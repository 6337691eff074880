/**
 * Whether a path may be trusted under strict perms: no other local user may be able to change the file it
 * leads to. It is the rule ssh's StrictModes applies to the files it reads, extended to every hop of a
 * chain of symbolic links: walking the name from `/` as the kernel does, every directory a name is looked
 * up in must be owned by the current user or root and writable by nobody else, unless it has the sticky
 * bit (others then cannot rename or remove what we or root own there, as in /tmp); every symbolic link
 * must be owned by the current user or root. Judging only the first link and the last directory let
 * another user re-point a second link, or swap a data directory for a link to an older keystore.
 *
 * Used for keystores (keystore-file.ts adds that their own directory may not be shared even when sticky),
 * config files ({@link checkTrustedConfigFile}: settings.ts, and the server's config loader) and the
 * directory `keystore sync` reads (sync.ts).
 */
import {promises as fs, Stats} from 'node:fs'
import path from 'node:path'

import {KeystoreError} from './errors.js'

/** Appended to every strict-perms refusal. */
export const STRICT_HINT = '(--strict.perms=false disables this check)'

/** The kernel gives up after 40 links (ELOOP); so does the walk. */
const MAX_LINKS = 40

export function isOwnerTrusted(owner: number, uid: number): boolean {
  return owner === uid || owner === 0
}

/** Permission bits with setuid/setgid/sticky, as `ls` and chmod write them: "0755". */
export function modeOf(stat: {mode: number}): string {
  // eslint-disable-next-line no-bitwise -- permission bits
  return (stat.mode & 0o7777).toString(8).padStart(4, '0')
}

export function isWritableByOthers(stat: {mode: number}): boolean {
  // eslint-disable-next-line no-bitwise -- permission bits
  return (stat.mode & 0o022) !== 0
}

export function isSticky(stat: {mode: number}): boolean {
  // eslint-disable-next-line no-bitwise -- the sticky bit
  return (stat.mode & 0o1000) !== 0
}

/** Where a name leads once every symbolic link is followed. */
export interface WalkedPath {
  /** the real path: the file, or where it would be */
  real: string
  /** false when a name on the way is missing (or not a directory): `real` is where the file would be */
  exists: boolean
}

/** Names a file in messages: "keystore", "config file". */
export type TrustedKind = 'config file' | 'keystore' | 'sync directory'

/**
 * Walks `file` one name at a time from `/`, following symbolic links as the kernel does, and refuses
 * (EPERMS, naming the directory or link and the fix) anything another user could change: see the module
 * comment. The file itself is not judged here (its owner and mode rules differ by kind). Without user ids
 * (Windows) nothing is judged. File-system errors other than a missing name are thrown as they are.
 */
export async function walkTrustedPath(file: string, kind: TrustedKind): Promise<WalkedPath> {
  const uid = process.getuid?.()
  const absolute = path.resolve(file)
  if (uid === undefined) return {exists: true, real: await fs.realpath(absolute).catch(() => absolute)}
  let pending = namesOf(absolute)
  let dir = path.parse(absolute).root
  let dirStat = await fs.lstat(dir)
  let links = 0
  while (pending.length > 0) {
    const name = pending.shift()!
    if (name === '..') {
      // `dir` is a real directory reached from `/`: its parent was judged on the way down.
      dir = path.dirname(dir)
      // eslint-disable-next-line no-await-in-loop -- a path is walked in order
      dirStat = await fs.lstat(dir)
      continue
    }

    const entry = path.join(dir, name)
    // eslint-disable-next-line no-await-in-loop -- a path is walked in order
    const stat = await lstatIfAny(entry)
    const holds: Holding = stat?.isSymbolicLink() ? (entry === absolute ? 'the name' : entry) : pending.length === 0 ? 'the name' : 'a directory'
    judgeDirectory({dir, file, holds, kind, stat: dirStat, uid})
    if (stat === undefined) return {exists: false, real: path.join(entry, ...pending)}
    if (stat.isSymbolicLink()) {
      judgeLink({entry, file, first: entry === absolute, kind, stat, uid})
      if (++links > MAX_LINKS) throw new KeystoreError('EIO', `cannot resolve ${kind} ${file}: more than ${MAX_LINKS} symbolic links (ELOOP); check where its links point`)
      // eslint-disable-next-line no-await-in-loop -- a path is walked in order
      const target = await fs.readlink(entry)
      pending = [...namesOf(target), ...pending]
      if (path.isAbsolute(target)) {
        dir = path.parse(target).root
        // eslint-disable-next-line no-await-in-loop -- a path is walked in order
        dirStat = await fs.lstat(dir)
      }

      continue
    }

    if (pending.length === 0) return {exists: true, real: entry}
    // Under a file: the caller's own open or mkdir fails with ENOTDIR, naming the path.
    if (!stat.isDirectory()) return {exists: false, real: path.join(entry, ...pending)}
    dir = entry
    dirStat = stat
  }

  return {exists: true, real: dir}
}

/** The names of a path, `.` and empty ones dropped (`..` kept: it is resolved on the real directory). */
function namesOf(target: string): string[] {
  return target.split(path.sep).filter((name) => name !== '' && name !== '.')
}

async function lstatIfAny(entry: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(entry)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

/**
 * What a directory holds on the way, for messages: the file or the link named (or where the file would be),
 * a later link (its path), or a directory on the way.
 */
type Holding = 'a directory' | 'the name' | string

interface DirectoryToJudge {
  file: string
  kind: TrustedKind
  dir: string
  stat: Stats
  uid: number
  holds: Holding
}

function judgeDirectory({dir, file, holds, kind, stat, uid}: DirectoryToJudge): void {
  let relation = ` on the path to ${kind} ${file}`
  let threat = 'could swap what it holds'
  if (holds === 'the name') {
    relation = ` of ${kind} ${file}`
    threat = `could replace the ${kind}`
  } else if (holds !== 'a directory') {
    relation = `, holding the symbolic link ${holds} on the path to ${kind} ${file},`
    threat = 'could re-point that link'
  }

  if (!isOwnerTrusted(stat.uid, uid)) {
    throw new KeystoreError(
      'EPERMS',
      `directory ${dir}${relation} is owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root, and its owner ${threat}; run "chown ${uid} ${dir}" or run as its owner ${STRICT_HINT}`,
    )
  }

  if (isWritableByOthers(stat) && !isSticky(stat)) {
    throw new KeystoreError(
      'EPERMS',
      `directory ${dir}${relation} has mode ${modeOf(stat)}, writable by group or others, who ${threat}; run "chmod go-w ${dir}" ${STRICT_HINT}`,
    )
  }
}

interface LinkToJudge {
  file: string
  kind: TrustedKind
  entry: string
  stat: Stats
  uid: number
  /** the link is the name given, not a later hop */
  first: boolean
}

function judgeLink({entry, file, first, kind, stat, uid}: LinkToJudge): void {
  if (isOwnerTrusted(stat.uid, uid)) return
  const what = first ? `${kind} ${file} is a symbolic link` : `symbolic link ${entry} on the path to ${kind} ${file} is`
  throw new KeystoreError(
    'EPERMS',
    `${what} owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root; check where it points, then run "chown -h ${uid} ${entry}" ${STRICT_HINT}`,
  )
}

/** Where the opened file really is: the kernel's name for the descriptor, else realpath of the name. */
export async function openedPath(fd: number, file: string): Promise<string> {
  return fs.readlink(`/proc/self/fd/${fd}`).catch(() => fs.realpath(file))
}

/**
 * True when the file opened (its {@link openedPath}) is the one at `real`. A file replaced by a rename
 * after it was opened (another writer's atomic save, an editor's) reads as "<path> (deleted)": what was
 * opened is still the file that was at `real`, whole, so it counts as that file.
 */
export function openedIsAt(opened: string, real: string): boolean {
  return opened === real || opened === `${real} (deleted)`
}

/**
 * The strict-perms rule for a config file: Beats' (owned by the current user or root, writable by nobody
 * else) and the path rule of {@link walkTrustedPath}. A config file says where the keystore is and where
 * events go: whoever could write or swap it could have root replace a file of their choice (`keystore
 * create --force` with their keystore.path) or write a secret into a name they can list (an output path
 * with `${APM_SECRET_TOKEN}` in it).
 *
 * Made for bounded-read's `readRegularFile` `inspect`, which gives the opened file's stat and descriptor before
 * anything is read: `readRegularFile(file, max, (stat, fd) => checkTrustedConfigFile(file, stat, fd))`.
 * Throws a KeystoreError with code EPERMS whose message names the file and the fix.
 */
export async function checkTrustedConfigFile(file: string, stat: Stats, fd: number): Promise<void> {
  const uid = process.getuid?.()
  if (uid === undefined) return
  if (!isOwnerTrusted(stat.uid, uid)) {
    throw new KeystoreError(
      'EPERMS',
      `config file ${file} is owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root, and a config file decides where the keystore is and what is written where; check its contents, then run "chown ${uid} ${file}" ${STRICT_HINT}`,
    )
  }

  if (isWritableByOthers(stat)) {
    throw new KeystoreError('EPERMS', `config file ${file} has mode ${modeOf(stat)}, writable by group or others; run "chmod go-w ${file}" ${STRICT_HINT}`)
  }

  const walked = await walkTrustedPath(file, 'config file')
  if (!walked.exists || !openedIsAt(await openedPath(fd, file), walked.real)) {
    throw new KeystoreError('EPERMS', `config file ${file} was replaced while it was being opened; check who else can change it, then retry ${STRICT_HINT}`)
  }
}
