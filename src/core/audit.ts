/**
 * The audit trail of a keystore, the writing side: `<keystore>.audit` beside the keystore's real file,
 * one JSON line per change (time, user, host, pid, command, key names, result; never a value), each
 * line holding its number and the SHA-256 of the line before it, so that the lines form a chain.
 * Reading and verifying it is ./audit-verify.ts.
 *
 * The chain is anchored in the native keystore's authenticated metadata (`audit`: the line count, the
 * hash of the last line and the file's size), written with the entries. Under the keystore's lock, a
 * change is written in this order:
 *   1. the new keystore is built in memory with the anchor of the trail as it will be (a keystore that
 *      could not be written is refused here, before any line);
 *   2. the line is appended (O_APPEND, one write) and fsynced;
 *   3. the keystore is written atomically.
 * A crash between 2 and 3 leaves one line more than the keystore records, describing a change that did
 * not happen: the verifier shows it as not confirmed, never as tampering. The next writer finds it (the
 * file is longer than the anchor says), chains after it and says in its own line how many lines before
 * it were never confirmed (`unconfirmed`). A half-written last line past the anchor (a crash inside
 * the write) is cut off by the next writer. Lines the anchor covers are never rewritten: a writer that
 * finds the file shorter than the anchor chains to the anchor's head, so the cut stays visible.
 *
 * Without a password the anchor is only obfuscated, as the values are: the trail then shows edits by
 * hand, not someone who also rewrites the keystore. A Beats v1 keystore has no place for the anchor:
 * its trail is chained, but a cut at its end cannot be seen.
 */
import {createHash} from 'node:crypto'
import {constants, promises as fs, Stats} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {isKeystoreError, KeystoreError, type ErrorCode} from './errors.js'
import type {AuditAnchor} from './format/native.js'
import {keystoreTarget, KeystoreLock} from './keystore-file.js'

export const AUDIT_SUFFIX = '.audit'
/** The `prev` of line 1. */
export const GENESIS = '0'.repeat(64)
/**
 * The commands that change a keystore, as their lines name them: the reader refuses a line naming any
 * other (it was not written by apm-server), and the writer refuses to write one (a new changing command
 * must be added here).
 */
export const AUDITED_COMMANDS: ReadonlySet<string> = new Set([
  'keystore add',
  'keystore audit --restart',
  'keystore create',
  'keystore import',
  'keystore passwd',
  'keystore recipient',
  'keystore remove',
  'keystore sync',
  'keystore upgrade',
])

/** One line of the trail, as written, fields in this order. Never a value. */
export interface AuditRecord {
  seq: number
  /** SHA-256 (hex) of the line before, without its newline; GENESIS for line 1 */
  prev: string
  time: string
  uid: number | null
  user: string | null
  host: string
  pid: number
  /** e.g. "keystore add" */
  command: string
  keys: string[]
  result: 'failed' | 'ok'
  /** the error code of a refused change */
  error?: ErrorCode
  /** lines right before this one that the keystore never recorded (their command stopped before writing it) */
  unconfirmed?: number
  /** line 1 of a trail started by `keystore audit --restart`: the trail kept aside, pinned by its hash */
  restarted?: RestartedFrom
}

export interface RestartedFrom {
  /** the file the previous trail was renamed to, or null when there was none */
  file: null | string
  bytes: number
  /** SHA-256 of the whole previous trail, hex */
  sha256: string
}

/** What a command asks to be recorded. */
export interface AuditRequest {
  command: string
  /** the keys the command means to change, named in a line that records its refusal */
  keys?: readonly string[]
  restarted?: RestartedFrom
}

/** What the writer needs of a keystore (src/core/keystore.ts). */
export interface AuditedKeystore {
  readonly auditAnchor: AuditAnchor | undefined
  changedNames(): string[]
  setAuditAnchor(anchor: AuditAnchor | undefined): void
}

export function auditFileOf(keystoreTarget: string): string {
  return `${keystoreTarget}${AUDIT_SUFFIX}`
}

export function hashLine(line: Uint8Array): string {
  return createHash('sha256').update(line).digest('hex')
}

/** Errors that are about the keystore's place, not the command's request: nothing is recorded for them. */
const NOT_RECORDED = new Set<ErrorCode>(['EAUDIT', 'ECANCELED', 'EIO', 'ELOCKED', 'ENOPASSWORD', 'EPERMS'])

/**
 * One command's use of the trail, under the keystore's lock: {@link prepare} then {@link commit} for a
 * change, or {@link recordRefusal} for a command refused once it held the lock.
 */
export class AuditSession {
  private trail?: AuditFile
  private pending?: Buffer
  private committed = false

  constructor(
    private readonly keystoreFile: string,
    private readonly request: AuditRequest,
    private readonly strictPerms: boolean | undefined,
  ) {}

  /** Builds this change's line and gives the keystore the anchor it will have once the line is appended. */
  async prepare(keystore: AuditedKeystore): Promise<void> {
    this.trail ??= await AuditFile.open(this.keystoreFile, this.strictPerms)
    const plan = await this.trail.plan(keystore.auditAnchor)
    const {command, restarted} = this.request
    this.pending = plan.line({command, keys: keystore.changedNames(), result: 'ok', ...(restarted ? {restarted} : {})})
    keystore.setAuditAnchor(plan.anchorAfter(this.pending))
  }

  /** Appends the prepared line, fsynced: call right before the keystore is written. */
  async commit(lock: KeystoreLock): Promise<void> {
    await lock.verify()
    await this.trail!.append(this.pending!)
    this.committed = true
  }

  /**
   * Records a command refused once it held the lock (a wrong password, a key that exists, a limit), as
   * result "failed" with the error's code. Best effort: the refusal itself is what the user must see.
   */
  async recordRefusal(error: unknown, keystore: AuditedKeystore | undefined, lock: KeystoreLock): Promise<void> {
    if (this.committed || !isKeystoreError(error) || NOT_RECORDED.has(error.code)) return
    try {
      this.trail ??= await AuditFile.open(this.keystoreFile, this.strictPerms)
      const plan = await this.trail.plan(keystore?.auditAnchor)
      const keys = this.request.keys ?? keystore?.changedNames() ?? []
      await lock.verify()
      await this.trail.append(plan.line({command: this.request.command, error: error.code, keys: [...keys], result: 'failed'}))
    } catch {
      // The refusal is reported either way; a trail that cannot be written fails the next change loudly.
    }
  }

  async close(): Promise<void> {
    await this.trail?.close()
  }
}

/** Where the next line goes and what it continues. */
type AuditEvent = Pick<AuditRecord, 'command' | 'error' | 'keys' | 'restarted' | 'result'>

interface Plan {
  line(event: AuditEvent): Buffer
  anchorAfter(line: Buffer): AuditAnchor
}

/** Read in pieces of this size when lines must be counted or hashed. */
const SCAN_CHUNK_BYTES = 1024 * 1024

/** The open trail: a regular file of ours, opened for reading and appending, never through a link. */
class AuditFile {
  private truncateTo?: number

  private constructor(
    private readonly file: string,
    private readonly handle: fs.FileHandle,
  ) {}

  static async open(keystoreFile: string, strictPerms: boolean | undefined): Promise<AuditFile> {
    const target = await keystoreTarget(keystoreFile, {strictPerms})
    const file = auditFileOf(target)
    let handle: fs.FileHandle
    try {
      handle = await fs.open(file, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
      await setUpNewFile(handle, file, target)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw auditIoError(file, error)
      // O_NONBLOCK: a FIFO planted at the name is refused below instead of waited on.
      handle = await fs.open(file, constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((error_: unknown) => {
        throw auditIoError(file, error_)
      })
      await checkExisting(handle, file, strictPerms !== false).catch(async (error_: unknown) => {
        await handle.close()
        throw error_
      })
    }

    return new AuditFile(file, handle)
  }

  /**
   * Where the chain continues. With an anchor: after it, or after the lines past it (a crash between a
   * line and its keystore write), which the line then counts as unconfirmed; a file shorter than the
   * anchor continues from the anchor's head (the cut stays visible). Without one (Beats v1, a new
   * keystore): after the file's last line.
   */
  async plan(anchor: AuditAnchor | undefined): Promise<Plan> {
    const size = (await this.handle.stat()).size
    let seq: number
    let prev: string
    let unconfirmed: number | undefined
    let at = size
    if (anchor && size <= anchor.bytes) {
      seq = anchor.lines + 1
      prev = anchor.head
    } else {
      const from = anchor ? anchor.bytes : 0
      const scan = await this.scan(from, size)
      at = scan.end
      this.truncateTo = scan.end < size ? scan.end : undefined
      seq = (anchor ? anchor.lines : 0) + scan.lines + 1
      prev = scan.lastHash ?? anchor?.head ?? GENESIS
      if (anchor && scan.lines > 0) unconfirmed = scan.lines
    }

    return {
      anchorAfter: (line) => ({bytes: at + line.length + 1, head: hashLine(line), lines: seq}),
      line: (event) => Buffer.from(JSON.stringify(record(seq, prev, event, unconfirmed))),
    }
  }

  /** Counts the complete lines in [from, to) and hashes the last one; `end` is where the last one ends. */
  private async scan(from: number, to: number): Promise<{lines: number; lastHash?: string; end: number}> {
    const buffer = Buffer.alloc(Math.min(SCAN_CHUNK_BYTES, Math.max(1, to - from)))
    let hash = createHash('sha256')
    let lines = 0
    let lastHash: string | undefined
    let end = from
    for (let at = from; at < to; ) {
      // eslint-disable-next-line no-await-in-loop -- one piece after another
      const {bytesRead} = await this.handle.read(buffer, 0, Math.min(buffer.length, to - at), at)
      if (bytesRead === 0) break
      let start = 0
      for (let newline = buffer.indexOf(0x0a, 0); newline !== -1 && newline < bytesRead; newline = buffer.indexOf(0x0a, newline + 1)) {
        lastHash = hash.update(buffer.subarray(start, newline)).digest('hex')
        hash = createHash('sha256')
        lines++
        end = at + newline + 1
        start = newline + 1
      }

      hash.update(buffer.subarray(start, bytesRead))
      at += bytesRead
    }

    return {end, lastHash, lines}
  }

  /** Appends one line and its newline, fsynced; cuts a half-written line past the anchor off first. */
  async append(line: Buffer): Promise<void> {
    try {
      if (this.truncateTo !== undefined) await this.handle.truncate(this.truncateTo)
      this.truncateTo = undefined
      // One write of the whole line: O_APPEND puts it at the end in one piece. It must be on disk before
      // the keystore that records it is (a keystore ahead of its trail would look like a cut trail):
      // fdatasync, which flushes the new size with the data, and no more.
      await this.handle.writeFile(Buffer.concat([line, Buffer.from('\n')]))
      await this.handle.datasync()
    } catch (error) {
      throw auditIoError(this.file, error)
    }
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => {})
  }
}

function record(seq: number, prev: string, event: AuditEvent, unconfirmed: number | undefined): AuditRecord {
  if (!AUDITED_COMMANDS.has(event.command)) throw new TypeError(`audit: ${event.command} is not in AUDITED_COMMANDS`)
  const uid = process.getuid?.() ?? null
  let user: string | null = null
  try {
    user = os.userInfo().username
  } catch {
    // A uid without a passwd entry (a container's random uid): the uid says who.
  }

  return {
    seq,
    prev,
    time: new Date().toISOString(),
    uid,
    user,
    host: os.hostname(),
    pid: process.pid,
    command: event.command,
    keys: event.keys,
    result: event.result,
    ...(event.error === undefined ? {} : {error: event.error}),
    ...(unconfirmed === undefined ? {} : {unconfirmed}),
    ...(event.restarted === undefined ? {} : {restarted: event.restarted}),
  }
}

/** A new trail: mode 0600 whatever the umask, the keystore's owner (root changing another's keystore), its name made durable. */
async function setUpNewFile(handle: fs.FileHandle, file: string, keystore: string): Promise<void> {
  await handle.chmod(0o600)
  const owner = await fs.stat(keystore).catch(() => undefined)
  const own = await handle.stat()
  if (owner && (owner.uid !== own.uid || owner.gid !== own.gid) && process.getuid?.() === 0) await handle.chown(owner.uid, owner.gid)
  const dir = await fs.open(path.dirname(file), constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}

/** An existing trail must be a file of its own (one link), and with strict permissions ours (or root's) and closed to others. */
export async function checkExisting(handle: fs.FileHandle, file: string, strict: boolean): Promise<Stats> {
  const stat = await handle.stat()
  const hint = '(--strict.perms=false disables this check)'
  if (!stat.isFile()) throw new KeystoreError('EAUDIT', `audit file ${file} is not a regular file; move it aside, a new trail is started in its place`)
  if (stat.nlink !== 1) throw new KeystoreError('EPERMS', `audit file ${file} has ${stat.nlink} hard links; an audit trail must be a file of its own: copy it and replace it with the copy`)
  const uid = process.getuid?.()
  if (!strict || uid === undefined) return stat
  if (stat.uid !== uid && stat.uid !== 0) throw new KeystoreError('EPERMS', `audit file ${file} is owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root; run "chown ${uid} ${file}" ${hint}`)
  // eslint-disable-next-line no-bitwise -- permission bits
  if ((stat.mode & 0o077) !== 0) throw new KeystoreError('EPERMS', `audit file ${file} has mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}, open to group or others; run "chmod 600 ${file}" ${hint}`)
  return stat
}

export function auditIoError(file: string, error: unknown): unknown {
  if (isKeystoreError(error)) return error
  const code = (error as NodeJS.ErrnoException)?.code
  if (typeof code !== 'string') return error
  if (code === 'ELOOP') return new KeystoreError('EPERMS', `audit file ${file} is a symbolic link; an audit trail must be a file of its own: move the link aside`)
  return new KeystoreError('EIO', `cannot write audit file ${file}: ${code}; it must be writable by whoever changes the keystore (check its owner and permissions); nothing was changed`)
}
