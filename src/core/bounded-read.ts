/**
 * Reading a file that someone else may have put in our way (the keystore, the password file, a value for
 * `add --file`, a config file): regular files only, opened without blocking, and never more than a cap
 * read, whatever the path turns out to be (a FIFO, /dev/zero behind a symlink, a file still growing).
 */
import {closeSync, constants, fstatSync, openSync, promises as fs, readSync, Stats} from 'node:fs'

/** Why a file was refused before (or while) it was read. */
export type FileRefusal = {reason: 'not-regular'; type: string} | {reason: 'too-big'; size: number}

export class RefusedFileError extends Error {
  constructor(readonly refusal: FileRefusal) {
    super(refusal.reason === 'not-regular' ? `${refusal.type}, not a regular file` : `over the size limit (${refusal.size} bytes)`)
    this.name = 'RefusedFileError'
  }
}

/** What a non-regular file is, in words for an error message: "a directory", "a FIFO", ... */
export function describeFileType(stat: Stats): string {
  if (stat.isDirectory()) return 'a directory'
  if (stat.isFIFO()) return 'a FIFO'
  if (stat.isCharacterDevice()) return 'a character device'
  if (stat.isBlockDevice()) return 'a block device'
  if (stat.isSocket()) return 'a socket'
  return stat.isFile() ? 'a regular file' : 'not a file'
}

/**
 * The bytes of the regular file at `file` (symbolic links followed), at most `maxBytes` of them.
 * Throws {@link RefusedFileError} for anything that is not a regular file or holds more, file-system
 * errors (ENOENT, EACCES, ...) as they are. `inspect` sees the opened file's stat (and descriptor) before
 * anything is read, e.g. to check its owner and mode.
 *
 * O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; on a regular file it
 * changes nothing. O_NOCTTY: a terminal device never becomes our controlling terminal.
 */
export async function readRegularFile(
  file: string,
  maxBytes: number,
  inspect?: (stat: Stats, fd: number) => Promise<void> | void,
): Promise<Buffer> {
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw new RefusedFileError({reason: 'not-regular', type: describeFileType(stat)})
    await inspect?.(stat, handle.fd)
    if (stat.size > maxBytes) throw new RefusedFileError({reason: 'too-big', size: stat.size})
    return await readAtMost(handle, stat.size, maxBytes)
  } finally {
    await handle.close()
  }
}

/**
 * The first `bytes` bytes of the regular file at `file` (symbolic links followed; fewer when it is
 * shorter), opened as {@link readRegularFile} opens files. Throws {@link RefusedFileError} for anything
 * that is not a regular file, file-system errors (ENOENT, ...) as they are.
 */
export async function readFileHead(file: string, bytes: number): Promise<Buffer> {
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw new RefusedFileError({reason: 'not-regular', type: describeFileType(stat)})
    const head = Buffer.alloc(bytes)
    const {bytesRead} = await handle.read(head, 0, bytes, 0)
    return head.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

/** Reads to the end, sized by `expected`, but refuses (without reading on) once more than `maxBytes` came. */
async function readAtMost(handle: fs.FileHandle, expected: number, maxBytes: number): Promise<Buffer> {
  // One byte more than expected: a file that grew since its stat is noticed, not cut short.
  let buffer = Buffer.alloc(Math.min(expected, maxBytes) + 1)
  let length = 0
  for (;;) {
    if (length === buffer.length) {
      if (length > maxBytes) throw new RefusedFileError({reason: 'too-big', size: length})
      const bigger = Buffer.alloc(Math.min(maxBytes + 1, Math.max(2 * buffer.length, 64 * 1024)))
      buffer.copy(bigger, 0, 0, length)
      buffer.fill(0)
      buffer = bigger
    }

    // eslint-disable-next-line no-await-in-loop -- a file is read in order
    const {bytesRead} = await handle.read(buffer, length, buffer.length - length, null)
    if (bytesRead === 0) break
    length += bytesRead
  }

  if (length > maxBytes) throw new RefusedFileError({reason: 'too-big', size: length})
  return buffer.subarray(0, length)
}

/**
 * {@link readRegularFile} for callers that cannot wait (a reload applied synchronously, e.g. TLS material):
 * the same rules, read with one synchronous call per chunk.
 */
export function readRegularFileSync(file: string, maxBytes: number): Buffer {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
  try {
    const stat = fstatSync(fd)
    if (!stat.isFile()) throw new RefusedFileError({reason: 'not-regular', type: describeFileType(stat)})
    if (stat.size > maxBytes) throw new RefusedFileError({reason: 'too-big', size: stat.size})
    // One byte more than the cap: a file that grew past it since its stat is refused, not cut short.
    const buffer = Buffer.alloc(maxBytes + 1)
    let length = 0
    for (let read = -1; read !== 0 && length < buffer.length; length += read) read = readSync(fd, buffer, length, buffer.length - length, null)
    if (length > maxBytes) throw new RefusedFileError({reason: 'too-big', size: length})
    return buffer.subarray(0, length)
  } finally {
    closeSync(fd)
  }
}
