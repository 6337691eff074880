/**
 * The file output's files on disk: opening one safely, rotating the names
 * the way Beats' file output does, and syncing a rotated file in the background. ./file.ts decides
 * when; this module does the system calls.
 */
import {close, closeSync, constants, existsSync, fstatSync, fsync, openSync, promises as fs, renameSync, rmSync} from 'node:fs'
import path from 'node:path'
import {promisify} from 'node:util'

/** Where the files are and how many are kept. */
export interface OutputFiles {
  /** directory */
  path: string
  filename: string
  numberOfFiles: number
  /** file mode of new files */
  permissions: number
}

/** A file opened for appending: its descriptor and the bytes it already holds. */
export interface OpenFile {
  fd: number
  size: number
}

/**
 * Opens an output file for appending, as the server's user, never through what another user could have
 * put at its name: a symbolic link is not followed (O_NOFOLLOW), a FIFO is refused (O_NONBLOCK keeps
 * opening one from waiting), and so is a file owned by another user (not root), who could read it. With
 * `create`, only a new file will do (O_EXCL). The output directory itself may be writable by others
 * (Beats does not refuse that): such a user can then delete or rename files, and so stop a rotation,
 * but never redirect a write or read one.
 */
export function openOutputFile(file: string, mode: number, create = false): OpenFile {
  const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK | (create ? constants.O_EXCL : 0)
  let fd: number
  try {
    fd = openSync(file, flags, mode)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOOP') throw error
    throw new Error(`${file} is a symbolic link, which the output never follows; remove it (someone else may have planted it)`)
  }

  try {
    const stat = fstatSync(fd)
    const euid = process.geteuid?.()
    // Anyone can make a FIFO; devices only root can (/dev/null as a sink stays possible).
    if (stat.isFIFO()) throw new Error(`${file} is a FIFO, not a file; remove it`)
    if (euid !== undefined && stat.uid !== euid && stat.uid !== 0) {
      throw new Error(`${file} is owned by uid ${stat.uid}, not by the server's user (uid ${euid}) or root, and its owner could read the events; remove it or chown it`)
    }
    return {fd, size: stat.size}
  } catch (error) {
    closeSync(fd)
    if (create) rmSync(file, {force: true})
    throw error
  }
}

/**
 * filename -> filename.1 -> ... -> filename.(n-1); the oldest is replaced. The new file is opened
 * first, under a temporary name, so a rotation that cannot open it (out of descriptors, say) moves
 * nothing. Returns the new file, and the replaced one (held open across the rename over it, so that
 * freeing its blocks, milliseconds for a large file, happens at its last close, in the background).
 *
 * Only the files below the first free slot shift, and the oldest is replaced only when there is none,
 * by a rename, so a rotation that fails halfway loses no history file (its renames leave a free slot)
 * and can be tried again. On failure the file being written keeps its name, or, when that cannot be
 * restored, `onNameLost` is called: the caller must then open a new file under the name.
 */
export function rotateFiles(files: OutputFiles, onNameLost: () => void): OpenFile & {removed?: number} {
  const base = path.join(files.path, files.filename)
  const name = (index: number) => (index === 0 ? base : `${base}.${index}`)
  // Hidden, so that nothing globbing `filename*` picks it up; only ever empty, so a leftover is harmless.
  const next = path.join(files.path, `.${files.filename}.next`)
  const last = files.numberOfFiles - 1
  let free = 1
  while (free < last && existsSync(name(free))) free++
  // A leftover (or a link another user planted) goes first; the new file is then made, never opened.
  rmSync(next, {force: true})
  const {fd} = openOutputFile(next, files.permissions, true)
  let removed: number | undefined
  let moved = false
  try {
    const {size} = fstatSync(fd)
    if (free === last) removed = holdOpen(name(last))

    // filename itself moves last: until then it is where the output writes.
    for (let index = free - 1; index >= 0; index--) {
      try {
        renameSync(name(index), name(index + 1))
        moved = index === 0
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      }
    }

    try {
      renameSync(next, base)
    } catch (error) {
      // Put the current file back under its name; filename.1 is then a free slot for the next try.
      // If it had lost its name already (deleted from outside), it has none to get back.
      try {
        if (!moved) throw error
        renameSync(name(1), base)
      } catch {
        onNameLost()
      }

      throw error
    }

    return {fd, removed, size}
  } catch (error) {
    if (removed !== undefined) closeSync(removed)
    closeSync(fd)
    try {
      rmSync(next, {force: true})
    } catch {}

    throw error
  }
}

/**
 * The file about to be replaced, held open so that freeing its blocks happens at its last close, in the
 * background; undefined when it is not a regular file. Another user who can write the directory may have
 * put anything at its name: opened without following a link and without blocking (a FIFO would block
 * open(2), and with it the event loop, for good), then judged on the descriptor.
 */
function holdOpen(file: string): number | undefined {
  let fd: number
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch {
    return undefined
  }

  try {
    if (fstatSync(fd).isFile()) return fd
  } catch {}

  closeSync(fd)
  return undefined
}

const fsyncAsync = promisify(fsync)
const closeAsync = promisify(close)

/** Closes a removed file; fsyncs and closes a rotated one, then fsyncs their directory. Errors are ignored: the data is written. */
export async function syncRotated(fd: number, removed: number | undefined, directory: string): Promise<void> {
  if (removed !== undefined) await closeAsync(removed).catch(() => {})
  await fsyncAsync(fd).catch(() => {})
  await closeAsync(fd).catch(() => {})
  // Never blocking: a FIFO put at the directory's name must not hold the thread pool.
  const handle = await fs.open(directory, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NONBLOCK).catch(() => undefined)
  if (!handle) return
  await handle.sync().catch(() => {})
  await handle.close().catch(() => {})
}
