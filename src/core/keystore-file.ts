/**
 * Locked, atomic, permission-checked file I/O for keystore files. Knows nothing of formats.
 *
 * The atomic write is written here rather than taken from write-file-atomic: that library names its temp
 * file predictably (a hash of its own path, the pid and a counter), opens it following symbolic links and
 * without O_EXCL, then chowns and chmods it by path, so another user who could write the directory planted
 * a link at the predicted name, read the new keystore through it and had root chown a file of their choice.
 * No maintained library creates the temp file with O_CREAT|O_EXCL|O_NOFOLLOW under a random name and sets
 * owner and mode on the descriptor, so those few calls are made here.
 */
import {randomBytes} from 'node:crypto'
import * as fsCallbacks from 'node:fs'
import {BigIntStats, constants, promises as fs, Stats} from 'node:fs'
import path from 'node:path'

import {readRegularFile, RefusedFileError} from './bounded-read.js'
import {isKeystoreError, KeystoreError} from './errors.js'
import {isOwnerTrusted, isWritableByOthers, modeOf, openedIsAt, openedPath, STRICT_HINT, walkTrustedPath} from './trusted-path.js'

// The lock library (and signal-exit under it) is loaded by writers only: reading commands such as `list`
// start faster without it. It is CommonJS: the module is the default export.
const loadLockfile = async () => (await import('proper-lockfile')).default

/** Nothing legitimate comes close: 10,000 keys of 1 KiB are ~14 MiB. Larger files are refused unread. */
export const MAX_KEYSTORE_BYTES = 256 * 1024 * 1024

export interface ReadOptions {
  /** check owner and mode of the file and its directory, as Beats does for the file; default true */
  strictPerms?: boolean
}

function ioError(action: string, file: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException)?.code
  // Not a file-system error: a bug, to be reported as such rather than as a permissions problem.
  if (typeof code !== 'string') return error
  return new KeystoreError('EIO', `cannot ${action} ${file}: ${code}; check the path and its permissions`, {cause: error})
}

/**
 * Reads the whole file, or returns undefined when there is none. Under strict perms the path is judged
 * first (see {@link keystoreTarget}), whether or not the file exists, then the file opened.
 */
export async function readKeystoreFile(file: string, options: ReadOptions = {}): Promise<Buffer | undefined> {
  // A rename between the walk and the open (another writer saving, a Secret mount's ..data link flipped
  // to a new folder) is legitimate: the walk is made again, a few times, before it is an error.
  for (let attempt = 1; ; attempt++) {
    try {
      // eslint-disable-next-line no-await-in-loop -- one attempt after another
      return await readKeystoreFileOnce(file, options)
    } catch (error) {
      if (!(error instanceof PathChangedError) || attempt === OPEN_ATTEMPTS) throw error instanceof PathChangedError ? error.keystoreError : error
    }
  }
}

const OPEN_ATTEMPTS = 3

class PathChangedError extends Error {
  constructor(readonly keystoreError: KeystoreError) {
    super(keystoreError.message)
  }
}

async function readKeystoreFileOnce(file: string, options: ReadOptions): Promise<Buffer | undefined> {
  const strict = options.strictPerms !== false
  try {
    const expected = strict ? await judgedTarget(file, true) : undefined
    // Symbolic links are followed (secret mounts use them); the checks apply to the target and the way there.
    return await readRegularFile(file, MAX_KEYSTORE_BYTES, async (stat, fd) => {
      if (!strict) return
      checkPermissions(file, stat)
      // The walk judged the way to `expected`: the file opened must be that one.
      const opened = await openedPath(fd, file)
      if (!openedIsAt(opened, expected!)) {
        throw new PathChangedError(new KeystoreError('EIO', `keystore ${file} changed while it was being opened (it led to ${expected}, then to ${opened}); retry`))
      }
    })
  } catch (error) {
    if (error instanceof PathChangedError) throw error
    if (error instanceof RefusedFileError) {
      const {refusal} = error
      if (refusal.reason === 'not-regular') throw new KeystoreError('EFORMAT', `keystore ${file} is not a regular file; point keystore.path at a file`)
      throw new KeystoreError('ELIMITS', `keystore ${file} is ${refusal.size} bytes, over the ${MAX_KEYSTORE_BYTES}-byte limit; the file is not a keystore or is damaged`)
    }

    if (isKeystoreError(error)) throw error
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw ioError('open keystore', file, error)
  }
}

/** The Beats rule: owned by us or root, and no access for group or others. */
function checkPermissions(file: string, stat: {mode: number; uid: number}): void {
  const uid = process.getuid?.()
  if (uid !== undefined && !isOwnerTrusted(stat.uid, uid)) {
    throw new KeystoreError(
      'EPERMS',
      `keystore ${file} is owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root; run "chown ${uid} ${file}" or run as its owner ${STRICT_HINT}`,
    )
  }

  // eslint-disable-next-line no-bitwise -- permission bits
  const open = stat.mode & 0o077
  if (open !== 0) {
    throw new KeystoreError('EPERMS', `keystore ${file} has mode ${modeOf(stat)}, open to group or others; run "chmod 600 ${file}" ${STRICT_HINT}`)
  }
}

/**
 * The file a write replaces, the lock guards and readers open: the end of the chain of symbolic links
 * (secret mounts use them) when it exists, else the name itself in its real directory (no file yet, or a
 * dangling link, which the write replaces as write-file-atomic did). Lock, temp files, their cleanup and
 * the rename all use it, so two names for one keystore share one lock.
 *
 * Under strict perms the way there is judged first ({@link walkTrustedPath}: every directory and link on
 * it), and the directory holding the file must be owned by us or root and writable by nobody else, even
 * with the sticky bit: writers make their temp files and lock there. Throws ENOENT when that directory
 * does not exist yet.
 */
async function judgedTarget(file: string, strict: boolean): Promise<string> {
  if (!strict) return realTarget(file)
  const walked = await walkTrustedPath(file, 'keystore')
  const target = walked.exists ? walked.real : await realTarget(file)
  const uid = process.getuid?.()
  if (uid !== undefined) checkOwnDirectory(file, path.dirname(target), await fs.stat(path.dirname(target)), uid)
  return target
}

/** The name in its real directory, or the target of the link at it. */
async function realTarget(file: string): Promise<string> {
  try {
    return await fs.realpath(file)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    return path.join(await fs.realpath(path.dirname(file)), path.basename(file))
  }
}

function checkOwnDirectory(file: string, dir: string, stat: Stats, uid: number): void {
  if (!isOwnerTrusted(stat.uid, uid)) {
    throw new KeystoreError(
      'EPERMS',
      `directory ${dir} of keystore ${file} is owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root, and its owner could replace the keystore; run "chown ${uid} ${dir}" or run as its owner ${STRICT_HINT}`,
    )
  }

  if (isWritableByOthers(stat)) {
    throw new KeystoreError(
      'EPERMS',
      `directory ${dir} of keystore ${file} has mode ${modeOf(stat)}, writable by group or others, who could replace the keystore; run "chmod go-w ${dir}" ${STRICT_HINT}`,
    )
  }
}

/**
 * Judges the path (strict perms) before anything is made or removed there, creates missing directories,
 * then judges it again (a directory just made, or made by someone else in between) and returns the
 * target. The first judgement stops at a missing directory, whose existing ancestors it has judged.
 */
async function prepareTarget(file: string, strict: boolean): Promise<string> {
  if (strict) {
    await judgedTarget(file, true).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
    })
  }

  await ensureKeystoreDir(file)
  return judgedTarget(file, strict)
}

/** Creates the keystore's directory (mode 0700) when it is missing. */
export async function ensureKeystoreDir(file: string): Promise<void> {
  try {
    await fs.mkdir(path.dirname(file), {mode: 0o700, recursive: true})
  } catch (error) {
    throw ioError('create directory', path.dirname(file), error)
  }
}

export interface WriteOptions extends ReadOptions {
  /** runs right before the rename that replaces the file; throwing aborts the write (a lost lock) */
  beforeReplace?: () => Promise<void>
  /** the file the lock guards ({@link KeystoreLock.target}): the write refuses to replace another one */
  target?: string
}

/**
 * What a name refers to, as a string to compare: a file or directory removed and replaced by another
 * gets another inode, or the same inode number reused (ext4 does at once), but never the same birth time.
 */
function identityOf(stat: BigIntStats | undefined): string | undefined {
  if (!stat || !(stat.isFile() || stat.isDirectory())) return undefined
  return `${stat.isFile() ? 'f' : 'd'}:${stat.dev}:${stat.ino}:${stat.birthtimeNs}:${stat.uid}`
}

/** Temp files are `<name>.tmp-<32 hex digits>`, next to the real file. */
const TEMP_INFIX = '.tmp-'
const TEMP_SUFFIX = /^[0-9a-f]{32}$/

/**
 * Replaces the file atomically: a new temp file in the real file's directory (O_EXCL|O_NOFOLLOW, a random
 * name, mode 0600 and the old file's owner set on the descriptor, fsynced), renamed over the old one, then
 * the directory fsynced so the rename itself survives a power cut. Call under the lock, with its target. A
 * symbolic link at `file` is followed (secret mounts), as write-file-atomic did: the link's target is
 * replaced (see {@link keystoreTarget}).
 */
export async function writeKeystoreFile(file: string, data: Buffer, options: WriteOptions = {}): Promise<void> {
  let target: string
  try {
    target = await prepareTarget(file, options.strictPerms !== false)
    if (options.target !== undefined && target !== options.target) throw repointed(file, options.target)
  } catch (error) {
    throw isKeystoreError(error) ? error : ioError('write keystore', file, error)
  }

  const old = await fs.stat(target).catch(() => undefined)
  await removeStaleTempFiles(target)
  const temp = `${target}${TEMP_INFIX}${randomBytes(16).toString('hex')}`
  try {
    const written = await writeNewFile(temp, data, old)
    await options.beforeReplace?.()
    await checkStillOurs(temp, written, file)
    await fs.rename(temp, target)
    await syncDirectory(path.dirname(target))
  } catch (error) {
    // unlink never follows a link; after a successful rename there is nothing left to remove.
    await fs.unlink(temp).catch(() => {})
    throw isKeystoreError(error) ? error : ioError('write keystore', file, error)
  }
}

function repointed(file: string, locked: string): KeystoreError {
  return new KeystoreError('ELOCKED', `keystore ${file} no longer leads to ${locked}, the file this process locked: it was re-pointed meanwhile; nothing was written, retry`)
}

/** Writes the new file; returns its identity (see {@link identityOf}). */
async function writeNewFile(temp: string, data: Buffer, old: Stats | undefined): Promise<string | undefined> {
  // O_EXCL fails on any existing name, a planted link included; O_NOFOLLOW says so twice.
  const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  try {
    if (old) await keepOwner(handle, old)
    // The umask may have taken bits away from 0600; nothing else has had the file.
    await handle.chmod(0o600)
    await handle.writeFile(data)
    await handle.sync()
    return identityOf(await handle.stat({bigint: true}))
  } finally {
    await handle.close()
  }
}

/**
 * rename(2) takes names, not descriptors: in a directory others can write (only with --strict.perms=false)
 * they could swap the temp name for a link of theirs, which the rename would then put in place. Checked
 * right before the rename; the kernel offers no rename by descriptor to close the last microseconds.
 */
async function checkStillOurs(temp: string, written: string | undefined, file: string): Promise<void> {
  const now = identityOf(await fs.lstat(temp, {bigint: true}).catch(() => undefined))
  if (now !== undefined && now === written) return
  throw new KeystoreError(
    'EIO',
    `cannot write keystore ${file}: its temp file was removed or replaced by another process; make ${path.dirname(temp)} writable by its owner only ("chmod go-w") and retry`,
  )
}

/** The new file gets the old one's owner and group, e.g. when root rewrites a keystore it does not own. */
async function keepOwner(handle: fs.FileHandle, old: Stats): Promise<void> {
  const own = await handle.stat()
  if (own.uid === old.uid && own.gid === old.gid) return
  try {
    await handle.chown(old.uid, old.gid)
  } catch (error) {
    // Only root may give a file away: anyone else keeps the file as their own, as write-file-atomic did.
    const code = (error as NodeJS.ErrnoException).code
    if (process.getuid?.() === 0 || (code !== 'EPERM' && code !== 'EINVAL')) throw error
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * A writer killed by SIGKILL leaves its temp file behind. Writers only run under the lock, so any such
 * file now is a leftover (of a dead writer, or of one whose lock was taken over and which will not rename).
 * unlink removes a link, never what it points to.
 */
async function removeStaleTempFiles(file: string): Promise<void> {
  const dir = path.dirname(file)
  const prefix = `${path.basename(file)}${TEMP_INFIX}`
  const names = await fs.readdir(dir).catch(() => [] as string[])
  const stale = names.filter((name) => name.startsWith(prefix) && TEMP_SUFFIX.test(name.slice(prefix.length)))
  await Promise.all(stale.map((name) => fs.unlink(path.join(dir, name)).catch(() => {})))
}

export interface LockOptions extends ReadOptions {
  /** how long to wait for another process's lock, in ms */
  timeoutMs?: number
}

/** The lock held by {@link withKeystoreLock}. */
export interface KeystoreLock {
  /** the file the lock guards, symbolic links resolved: pass it to {@link writeKeystoreFile} */
  readonly target: string
  /**
   * Throws ELOCKED unless the lock is still ours and the keystore's name still leads to `target`: call it
   * right before replacing the file.
   */
  verify(): Promise<void>
}

export const DEFAULT_LOCK_TIMEOUT_MS = 15_000
/** A lock whose holder stopped refreshing it for this long is taken over (the holder was killed). */
const STALE_LOCK_MS = 4000
/** A takeover marker left by a process killed in the few ms a takeover takes is cleared after this. */
const STALE_TAKEOVER_MS = 10_000
/** proper-lockfile's own stale takeover is never used: see removeStaleLock. */
const NEVER_STALE_MS = 2 ** 31 - 1

/** The identity of each lock directory this process holds, as made (see {@link identityOf}). */
const heldLocks = new Map<string, string>()

/**
 * proper-lockfile's file-system calls, with its lock directory made 0700 whatever the umask, and its
 * exit handler (SIGINT, SIGTERM) removing the directory only while it is still the one this process made:
 * a writer stopped past the stale time and then interrupted must not remove its successor's lock.
 */
const LOCK_FS = {
  ...fsCallbacks,
  mkdir: (dir: string, callback: (error: NodeJS.ErrnoException | null) => void) => fsCallbacks.mkdir(dir, {mode: 0o700}, callback),
  rmdirSync(dir: string) {
    const held = heldLocks.get(dir)
    if (held !== undefined && identityOf(fsCallbacks.lstatSync(dir, {bigint: true, throwIfNoEntry: false})) !== held) return
    fsCallbacks.rmdirSync(dir)
  },
}
/** The same, for letting go of a lock that another process has taken over: its directory is theirs now. */
const LOST_LOCK_FS = {...LOCK_FS, rmdir: (_dir: string, callback: (error: null) => void) => callback(null)}

/**
 * Removes `lockDir` when its holder stopped refreshing it. proper-lockfile's own takeover (stat, then
 * rmdir) lets a process that found the lock stale remove the lock another process took over meanwhile,
 * and both then write (moxystudio/node-proper-lockfile#121). Here one process at a time takes over
 * (mkdir of a marker is atomic) and it checks staleness again, under the marker, before removing.
 *
 * A lock directory is always empty, so it is removed with rmdir, never recursively: a recursive removal
 * walks by path, and another user who could plant an old "lock" full of directories that flip to symbolic
 * links had root delete its own files through it. Anything else at the lock's name is refused.
 */
async function removeStaleLock(lockDir: string): Promise<void> {
  const stat = await fs.lstat(lockDir).catch(() => undefined)
  if (!stat || Date.now() - stat.mtimeMs <= STALE_LOCK_MS) return
  checkLockDirectory(lockDir, stat)
  const marker = `${lockDir}.takeover`
  try {
    await fs.mkdir(marker, {mode: 0o700})
  } catch {
    const left = await fs.lstat(marker).catch(() => undefined)
    if (left && Date.now() - left.mtimeMs > STALE_TAKEOVER_MS) {
      checkLockDirectory(marker, left)
      await removeEmptyDirectory(marker)
    }

    return
  }

  try {
    const again = await fs.lstat(lockDir).catch(() => undefined)
    if (again && Date.now() - again.mtimeMs > STALE_LOCK_MS) {
      checkLockDirectory(lockDir, again)
      await removeEmptyDirectory(lockDir)
    }
  } finally {
    await fs.rmdir(marker).catch(() => {})
  }
}

function notOurLock(lockDir: string, what: string): KeystoreError {
  return new KeystoreError(
    'ELOCKED',
    `${lockDir} ${what}, so it is not a lock apm-server made (those are empty directories of the user running it, or root); nothing was changed: check what it is, and remove it yourself if no apm-server process is running`,
  )
}

/** A lock (or takeover marker) made by this program is a directory owned by us or root. */
function checkLockDirectory(lockDir: string, stat: Stats): void {
  const uid = process.getuid?.()
  if (stat.isSymbolicLink()) throw notOurLock(lockDir, 'is a symbolic link')
  if (!stat.isDirectory()) throw notOurLock(lockDir, 'is not a directory')
  if (uid !== undefined && !isOwnerTrusted(stat.uid, uid)) throw notOurLock(lockDir, `is owned by uid ${stat.uid}`)
}

async function removeEmptyDirectory(dir: string): Promise<void> {
  try {
    await fs.rmdir(dir)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    // Gone already: another process took over first.
    if (code === 'ENOENT') return
    if (code === 'ENOTEMPTY' || code === 'EEXIST') throw notOurLock(dir, 'is not empty')
    if (code === 'ENOTDIR') throw notOurLock(dir, 'is not a directory')
    throw error
  }
}

function lostLock(file: string): KeystoreError {
  return new KeystoreError(
    'ELOCKED',
    `lost the lock on ${file}: this process stalled for over ${STALE_LOCK_MS / 1000}s and another one took the lock over; nothing was written, check the keystore ("apm-server keystore list") and retry`,
  )
}

/**
 * Runs `fn` holding the cross-process lock `<target>.lock` (a directory, refreshed while held), where the
 * target is the file `file` leads to (see {@link keystoreTarget}; under strict perms the path is judged
 * before anything is made or removed). `fn` gets the lock to verify right before it replaces the file: a
 * holder stopped for longer than the stale time (SIGSTOP, a suspended VM) may have lost it to another
 * writer, and must then write nothing.
 */
export async function withKeystoreLock<T>(file: string, fn: (lock: KeystoreLock) => Promise<T>, options: LockOptions = {}): Promise<T> {
  const strict = options.strictPerms !== false
  let target: string
  try {
    // Judged before the lock is taken: taking it may remove a stale lock, in a directory others must not write.
    target = await prepareTarget(file, strict)
  } catch (error) {
    throw isKeystoreError(error) ? error : ioError('lock keystore', file, error)
  }

  const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS
  const lockfile = await loadLockfile()
  // The file that gets replaced is locked, not the name given: two names for one keystore (a link and its
  // target) must share one lock.
  const lockfilePath = `${target}.lock`
  let compromised: Error | undefined
  const started = Date.now()
  let release: () => Promise<void>
  for (;;) {
    try {
      // eslint-disable-next-line no-await-in-loop -- waiting for the lock is sequential by nature
      release = await lockfile.lock(target, {
        fs: LOCK_FS,
        lockfilePath,
        onCompromised(error) {
          compromised = error
        },
        realpath: false,
        stale: NEVER_STALE_MS,
        update: STALE_LOCK_MS / 4,
      })
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw ioError('lock keystore', file, error)
      // eslint-disable-next-line no-await-in-loop -- a dead holder's lock is taken over, one process at a time
      await removeStaleLock(lockfilePath)
      if (Date.now() - started >= timeoutMs) {
        throw new KeystoreError(
          'ELOCKED',
          `keystore ${file} is locked by another process (waited ${Math.round(timeoutMs / 1000)}s); retry, or remove ${lockfilePath} if no apm-server process is running`,
        )
      }

      // eslint-disable-next-line no-await-in-loop -- jittered back-off between attempts
      await new Promise((resolve) => {
        setTimeout(resolve, 10 + Math.random() * 40)
      })
    }
  }

  const currentIdentity = async () => identityOf(await fs.lstat(lockfilePath, {bigint: true}).catch(() => undefined))
  const identity = await currentIdentity()
  if (identity !== undefined) heldLocks.set(lockfilePath, identity)
  const held = async () => compromised === undefined && identity !== undefined && (await currentIdentity()) === identity
  // A takeover marker left by a process killed mid-takeover: harmless to remove while we hold a fresh lock,
  // since a takeover only removes a lock it finds stale under the marker.
  await fs.rmdir(`${lockfilePath}.takeover`).catch(() => {})
  try {
    return await fn({
      target,
      async verify() {
        if (!(await held())) throw lostLock(file)
        const now = await judgedTarget(file, strict).catch((error: unknown) => {
          throw isKeystoreError(error) ? error : ioError('write keystore', file, error)
        })
        if (now !== target) throw repointed(file, target)
      },
    })
  } finally {
    if (await held()) await release().catch(() => {})
    // Forget it without removing the directory, which is the new holder's.
    else await lockfile.unlock(target, {fs: LOST_LOCK_FS, lockfilePath, realpath: false}).catch(() => {})
    heldLocks.delete(lockfilePath)
  }
}

/**
 * The real path of the keystore file a write replaces (the target of a symbolic link), with its
 * directories checked as a write checks them: for files kept beside the keystore (its audit trail).
 */
export async function keystoreTarget(file: string, options: ReadOptions = {}): Promise<string> {
  try {
    return await judgedTarget(file, options.strictPerms !== false)
  } catch (error) {
    throw isKeystoreError(error) ? error : ioError('find keystore', file, error)
  }
}
