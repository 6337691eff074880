/**
 * Locked, atomic, permission-checked file I/O for keystore files. Knows nothing of formats.
 */
import {constants, promises as fs} from 'node:fs'
import path from 'node:path'

import {KeystoreError} from './errors.js'

// The lock and atomic-write libraries (and signal-exit under them) are loaded by writers only: reading
// commands such as `list` start faster without them. Both are CommonJS: the module is the default export.
const loadLockfile = async () => (await import('proper-lockfile')).default
const loadWriteFileAtomic = async () => (await import('write-file-atomic')).default

/** Nothing legitimate comes close: 10,000 keys of 1 KiB are ~14 MiB. Larger files are refused unread. */
export const MAX_KEYSTORE_BYTES = 256 * 1024 * 1024

export interface ReadOptions {
  /** check owner and mode as Beats does; default true */
  strictPerms?: boolean
}

function ioError(action: string, file: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException)?.code
  // Not a file-system error: a bug, to be reported as such rather than as a permissions problem.
  if (typeof code !== 'string') return error
  return new KeystoreError('EIO', `cannot ${action} ${file}: ${code}; check the path and its permissions`, {cause: error})
}

/** Reads the whole file, or returns undefined when there is none. */
export async function readKeystoreFile(file: string, options: ReadOptions = {}): Promise<Buffer | undefined> {
  let handle: fs.FileHandle
  try {
    // Symbolic links are followed (secret mounts use them); the checks below apply to the target.
    // O_NONBLOCK: opening a FIFO would wait for a writer forever; for a regular file it changes nothing,
    // and anything that is not a regular file is refused below.
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw ioError('open keystore', file, error)
  }

  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw new KeystoreError('EFORMAT', `keystore ${file} is not a regular file; point keystore.path at a file`)
    if (options.strictPerms !== false) checkPermissions(file, stat)
    if (stat.size > MAX_KEYSTORE_BYTES) {
      throw new KeystoreError('ELIMITS', `keystore ${file} is ${stat.size} bytes, over the ${MAX_KEYSTORE_BYTES}-byte limit; the file is not a keystore or is damaged`)
    }

    return await handle.readFile()
  } finally {
    await handle.close()
  }
}

/** The Beats rule: owned by us or root, and no access for group or others. */
function checkPermissions(file: string, stat: {mode: number; uid: number}): void {
  const uid = process.getuid?.()
  if (uid !== undefined && stat.uid !== uid && stat.uid !== 0) {
    throw new KeystoreError(
      'EPERMS',
      `keystore ${file} is owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root; run "chown ${uid} ${file}" or run as its owner ` +
        '(--strict.perms=false disables this check)',
    )
  }

  // eslint-disable-next-line no-bitwise -- permission bits
  const open = stat.mode & 0o077
  if (open !== 0) {
    // eslint-disable-next-line no-bitwise -- permission bits
    const mode = (stat.mode & 0o777).toString(8).padStart(4, '0')
    throw new KeystoreError(
      'EPERMS',
      `keystore ${file} has mode ${mode}, open to group or others; run "chmod 600 ${file}" (--strict.perms=false disables this check)`,
    )
  }
}

/** Creates the keystore's directory (mode 0700) when it is missing. */
export async function ensureKeystoreDir(file: string): Promise<void> {
  try {
    await fs.mkdir(path.dirname(file), {mode: 0o700, recursive: true})
  } catch (error) {
    throw ioError('create directory', path.dirname(file), error)
  }
}

/**
 * Replaces the file atomically: temp file in the same directory (mode 0600, fsynced), rename over the
 * old one, then fsync the directory so the rename itself survives a power cut. Call under the lock.
 */
export async function writeKeystoreFile(file: string, data: Buffer): Promise<void> {
  await ensureKeystoreDir(file)
  // write-file-atomic follows a symbolic link and writes next to its target: clean up and sync there.
  const target = await fs.realpath(file).catch(() => file)
  await removeStaleTempFiles(target)
  try {
    const writeFileAtomic = await loadWriteFileAtomic()
    await writeFileAtomic(file, data, {fsync: true, mode: 0o600})
    const dir = await fs.open(path.dirname(target), constants.O_RDONLY)
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  } catch (error) {
    throw ioError('write keystore', file, error)
  }
}

/**
 * write-file-atomic names its temp file `<file>.<uint32>` and removes it on exit and on signals, but a
 * SIGKILL leaves it behind. Writers only run under the lock, so any such file now is a leftover.
 */
async function removeStaleTempFiles(file: string): Promise<void> {
  const base = path.basename(file)
  const pattern = new RegExp(`^${base.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.\\d{1,10}$`)
  let names: string[]
  try {
    names = await fs.readdir(path.dirname(file))
  } catch {
    return
  }

  await Promise.all(names.filter((name) => pattern.test(name)).map((name) => fs.rm(path.join(path.dirname(file), name), {force: true})))
}

export interface LockOptions {
  /** how long to wait for another process's lock, in ms */
  timeoutMs?: number
}

export const DEFAULT_LOCK_TIMEOUT_MS = 15_000
/** A lock whose holder stopped refreshing it for this long is taken over (the holder was killed). */
const STALE_LOCK_MS = 4000
/** A takeover marker left by a process killed in the few ms a takeover takes is cleared after this. */
const STALE_TAKEOVER_MS = 10_000
/** proper-lockfile's own stale takeover is never used: see removeStaleLock. */
const NEVER_STALE_MS = 2 ** 31 - 1

/**
 * Removes `lockDir` when its holder stopped refreshing it. proper-lockfile's own takeover (stat, then
 * rmdir) lets a process that found the lock stale remove the lock another process took over meanwhile,
 * and both then write (moxystudio/node-proper-lockfile#121). Here one process at a time takes over
 * (mkdir of a marker is atomic) and it checks staleness again, under the marker, before removing.
 */
async function removeStaleLock(lockDir: string): Promise<void> {
  const stat = await fs.stat(lockDir).catch(() => undefined)
  if (!stat || Date.now() - stat.mtimeMs <= STALE_LOCK_MS) return
  const marker = `${lockDir}.takeover`
  try {
    await fs.mkdir(marker)
  } catch {
    const left = await fs.stat(marker).catch(() => undefined)
    if (left && Date.now() - left.mtimeMs > STALE_TAKEOVER_MS) await fs.rmdir(marker).catch(() => {})
    return
  }

  try {
    const again = await fs.stat(lockDir).catch(() => undefined)
    if (again && Date.now() - again.mtimeMs > STALE_LOCK_MS) await fs.rm(lockDir, {force: true, recursive: true})
  } finally {
    await fs.rmdir(marker).catch(() => {})
  }
}

/**
 * Runs `fn` holding the cross-process lock `<file>.lock` (a directory, refreshed while held).
 */
export async function withKeystoreLock<T>(file: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  await ensureKeystoreDir(file)
  const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS
  const lockfile = await loadLockfile()
  let compromised: Error | undefined
  const started = Date.now()
  let release: () => Promise<void>
  for (;;) {
    try {
      // eslint-disable-next-line no-await-in-loop -- waiting for the lock is sequential by nature
      release = await lockfile.lock(file, {
        lockfilePath: `${file}.lock`,
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
      await removeStaleLock(`${file}.lock`)
      if (Date.now() - started >= timeoutMs) {
        throw new KeystoreError(
          'ELOCKED',
          `keystore ${file} is locked by another process (waited ${Math.round(timeoutMs / 1000)}s); retry, or remove ${file}.lock if no apm-server process is running`,
        )
      }

      // eslint-disable-next-line no-await-in-loop -- jittered back-off between attempts
      await new Promise((resolve) => {
        setTimeout(resolve, 10 + Math.random() * 40)
      })
    }
  }

  // A takeover marker left by a process killed mid-takeover: harmless to remove while we hold a fresh lock,
  // since a takeover only removes a lock it finds stale under the marker.
  await fs.rmdir(`${file}.lock.takeover`).catch(() => {})
  try {
    const result = await fn()
    if (compromised) throw new KeystoreError('ELOCKED', `lost the lock on ${file} while writing; check the keystore and retry`)
    return result
  } finally {
    await release().catch(() => {})
  }
}
