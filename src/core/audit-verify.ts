/**
 * The audit trail of a keystore, the reading side: its lines as records, and the check of the chain
 * against the anchor the keystore records (./audit.ts says how both are written); and starting a new
 * trail, the old one kept aside and pinned by its hash in the new trail's first line. Reports the first bad
 * line: one that is not an audit line, is numbered out of place, or is not the line the next one (or the
 * keystore) records the hash of, and a file cut before the keystore's anchor. Lines past the anchor, and
 * lines a later line says were never confirmed, are what a crash between a line and its keystore write
 * leaves: shown as not confirmed, never as tampering.
 */
import {createHash} from 'node:crypto'
import {constants, promises as fs} from 'node:fs'

import {AUDITED_COMMANDS, AuditRecord, auditFileOf, checkExisting, GENESIS, RestartedFrom} from './audit.js'
import {KeystoreError} from './errors.js'
import {jsonDepthWithin} from './format/json-guard.js'
import type {AuditAnchor} from './format/native.js'
import {isValidKeyName, MAX_KEYS} from './entries.js'
import {OpenOptions, openKeystore, updateKeystore} from './keystore.js'
import {keystoreTarget} from './keystore-file.js'

/**
 * What this reader takes, in bytes and lines: years of changes (a line is ~250 bytes), with room for
 * syncs of thousands of keys. A bigger trail is refused unread, and `keystore audit --restart` keeps it
 * aside and starts a new one. The caps bound what a trail costs in memory: every line is kept, parsed.
 */
export const MAX_AUDIT_BYTES = 64 * 1024 * 1024
export const MAX_AUDIT_LINES = 100_000
/** A line naming every key of a full keystore is ~26 MiB. */
const MAX_LINE_BYTES = 32 * 1024 * 1024
const READ_CHUNK_BYTES = 1024 * 1024

export interface AuditEntry {
  /** its line number in the file */
  line: number
  /** undefined when the line is not an audit line */
  record?: AuditRecord
  /** the keystore records it: its change happened (or, result failed, its refusal) */
  confirmed: boolean
}

export interface AuditProblem {
  line: number
  message: string
}

export interface AuditReport {
  /** the audit file */
  file: string
  exists: boolean
  entries: AuditEntry[]
  /** the keystore's anchor; undefined for Beats v1 (which cannot hold one) or a trail not started */
  anchor?: AuditAnchor
  format: 'beats-v1' | 'native'
  /** the first bad line, when the trail was changed, cut, or does not belong to the keystore */
  problem?: AuditProblem
  /** bytes after the last newline, past the anchor: a crash inside a line's write */
  partialBytes: number
}

/** Reads the keystore's anchor, then the trail (in that order: a change made meanwhile only adds lines past the anchor). */
export async function readAuditTrail(keystoreFile: string, options: OpenOptions = {}): Promise<AuditReport> {
  const keystore = await openKeystore(keystoreFile, options)
  const file = auditFileOf(await keystoreTarget(keystoreFile, options))
  const anchor = keystore.auditAnchor
  const read = await readLines(file, options.strictPerms !== false)
  const report: AuditReport = {anchor, entries: [], exists: read !== undefined, file, format: keystore.format, partialBytes: read?.partial ?? 0}
  if (!read) {
    if (anchor) report.problem = {line: 1, message: `audit file ${file} is gone, but keystore ${keystoreFile} records ${anchor.lines} lines in it: it was removed; restore it from a backup`}
    return report
  }

  report.entries = read.lines.map((line, i) => ({confirmed: false, line: i + 1, record: line.record}))
  report.problem = checkChain(read.lines, report.entries, file) ?? checkAnchor(read.lines, anchor, report.format, file, keystoreFile) ?? checkSequence(report.entries, anchor, file, keystoreFile)
  markConfirmed(report.entries, anchor)
  return report
}

interface Line {
  /** undefined when the line is not an audit line */
  record: AuditRecord | undefined
  hash: string
  /** the offset right after its newline */
  end: number
}

/** The complete lines of the trail (hashed; text kept up to the cap), or undefined when there is none. */
async function readLines(file: string, strict: boolean): Promise<{lines: Line[]; partial: number} | undefined> {
  let handle: fs.FileHandle
  try {
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    if (code === 'ELOOP') throw new KeystoreError('EAUDIT', `audit file ${file} is a symbolic link, not the trail this keystore writes; move it aside`)
    throw new KeystoreError('EIO', `cannot read audit file ${file}: ${code}; check its owner and permissions`)
  }

  try {
    const stat = await checkExisting(handle, file, strict)
    if (stat.size > MAX_AUDIT_BYTES) throw tooBig(file, `is ${stat.size} bytes, over the ${MAX_AUDIT_BYTES} bytes`)
    return await splitLines(handle, stat.size, file)
  } finally {
    await handle.close()
  }
}

function tooBig(file: string, what: string): KeystoreError {
  return new KeystoreError('ELIMITS', `audit file ${file} ${what} this command reads; start a new trail with "apm-server keystore audit --restart" (the old one is kept beside it)`)
}

async function splitLines(handle: fs.FileHandle, size: number, file: string): Promise<{lines: Line[]; partial: number}> {
  const lines: Line[] = []
  const buffer = Buffer.alloc(READ_CHUNK_BYTES)
  let hash = createHash('sha256')
  let pieces: Buffer[] = []
  let length = 0
  let offset = 0
  // Read no further than the size seen: a line appended meanwhile is past the anchor read before.
  while (offset < size) {
    // eslint-disable-next-line no-await-in-loop -- one piece after another
    const {bytesRead} = await handle.read(buffer, 0, Math.min(buffer.length, size - offset), offset)
    if (bytesRead === 0) break
    let start = 0
    for (let newline = buffer.indexOf(0x0a); newline !== -1 && newline < bytesRead; newline = buffer.indexOf(0x0a, newline + 1)) {
      const piece = buffer.subarray(start, newline)
      hash.update(piece)
      if (length + piece.length <= MAX_LINE_BYTES) pieces.push(Buffer.from(piece))
      length += piece.length
      if (lines.length === MAX_AUDIT_LINES) throw tooBig(file, `holds more than the ${MAX_AUDIT_LINES} lines`)
      lines.push({end: offset + newline + 1, hash: hash.digest('hex'), record: length <= MAX_LINE_BYTES ? parseRecord(Buffer.concat(pieces)) : undefined})
      hash = createHash('sha256')
      pieces = []
      length = 0
      start = newline + 1
    }

    const rest = buffer.subarray(start, bytesRead)
    hash.update(rest)
    if (length + rest.length <= MAX_LINE_BYTES) pieces.push(Buffer.from(rest))
    length += rest.length
    offset += bytesRead
  }

  return {lines, partial: length}
}

/**
 * What apm-server writes, and nothing else: a line is appended by whoever can write the file (no password
 * needed), so a field that only looks right (a host holding newlines, a command holding ESC[8m) would
 * fabricate history on a terminal. Such a line is "not an audit line", which --verify reports as damage.
 */
const FIELDS: Record<string, (value: unknown) => boolean> = {
  command: (v) => typeof v === 'string' && AUDITED_COMMANDS.has(v),
  host: (v) => typeof v === 'string' && v.length <= MAX_TEXT_LENGTH,
  keys: (v) => Array.isArray(v) && v.length <= MAX_KEYS && v.every((key) => typeof key === 'string' && isValidKeyName(key)),
  pid: (v) => Number.isSafeInteger(v),
  prev: (v) => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v),
  result: (v) => v === 'ok' || v === 'failed',
  seq: (v) => Number.isSafeInteger(v) && (v as number) >= 1,
  time: (v) => typeof v === 'string' && ISO_TIME.test(v) && Number.isFinite(Date.parse(v)),
  uid: (v) => v === null || Number.isSafeInteger(v),
  user: (v) => v === null || (typeof v === 'string' && v.length <= MAX_TEXT_LENGTH),
}

/** As Date.prototype.toISOString writes it. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
/** A host name (at most 255 bytes on Linux) or a user name; a longer one is not something we wrote. */
const MAX_TEXT_LENGTH = 1024
/** C0 and C1 control characters and DEL: none is in anything apm-server records. */
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/

/** True when no string anywhere in `value` (keys of objects included) holds a control character. */
function isPrintable(value: unknown): boolean {
  if (typeof value === 'string') return !CONTROL.test(value)
  if (Array.isArray(value)) return value.every((item) => isPrintable(item))
  if (typeof value === 'object' && value !== null) return Object.entries(value).every(([name, item]) => isPrintable(name) && isPrintable(item))
  return true
}

/** An audit line's record, or undefined when it is not one (fields of later versions are allowed). */
function parseRecord(text: Buffer | undefined): AuditRecord | undefined {
  // {..., "keys": [...], "restarted": {...}}: two levels, three containers.
  if (!text || !jsonDepthWithin(text, 2, 3)) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(text.toString('utf8'))
  } catch {
    return undefined
  }

  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !isPrintable(parsed)) return undefined
  const fields = parsed as Record<string, unknown>
  if (!Object.entries(FIELDS).every(([name, valid]) => Object.hasOwn(fields, name) && valid(fields[name]))) return undefined
  if (fields.error !== undefined && !(typeof fields.error === 'string' && /^E[A-Z0-9]{1,31}$/.test(fields.error))) return undefined
  if (fields.unconfirmed !== undefined && !(Number.isSafeInteger(fields.unconfirmed) && (fields.unconfirmed as number) >= 0)) return undefined
  return parsed as AuditRecord
}

/** The first line that is not an audit line, is numbered out of place, or does not follow the line before it. */
function checkChain(lines: Line[], entries: AuditEntry[], file: string): AuditProblem | undefined {
  for (const [i, {record}] of entries.entries()) {
    const n = i + 1
    if (!record) return {line: n, message: `line ${n} of ${file} is not an audit line: it was changed, or written by something else; restore the file from a backup`}
    if (record.seq !== n) {
      const why = record.seq > n ? `${record.seq - n} line${record.seq - n === 1 ? ' was' : 's were'} removed before it` : 'lines were added before it, or it was copied'
      return {line: n, message: `line ${n} of ${file} is numbered ${record.seq}: ${why}; restore the file from a backup`}
    }

    const expected = n === 1 ? GENESIS : lines[n - 2].hash
    if (record.prev !== expected) {
      if (n === 1) return {line: 1, message: `line 1 of ${file} does not start a trail: lines before it were removed; restore the file from a backup`}
      return {line: n - 1, message: `line ${n - 1} of ${file} was changed (line ${n} records another hash for it), or lines between them were removed; restore the file from a backup`}
    }
  }

  return undefined
}

/** The keystore's anchor against the file: as many lines, the last one with the recorded hash, ending where recorded. */
function checkAnchor(lines: Line[], anchor: AuditAnchor | undefined, format: AuditReport['format'], file: string, keystoreFile: string): AuditProblem | undefined {
  if (!anchor) {
    if (format === 'beats-v1' || lines.length === 0) return undefined
    return {
      line: 1,
      message: `keystore ${keystoreFile} records no audit trail, yet ${file} holds ${lines.length} lines: the keystore was replaced by one from before its first recorded change, or the trail belongs to another keystore; restore the pair from one backup`,
    }
  }

  if (lines.length < anchor.lines) {
    return {line: lines.length + 1, message: `${file} ends after line ${lines.length}, but keystore ${keystoreFile} records ${anchor.lines} lines: lines were removed from its end; restore the file from a backup`}
  }

  const last = lines[anchor.lines - 1]
  if (last.hash !== anchor.head || last.end !== anchor.bytes) {
    return {line: anchor.lines, message: `line ${anchor.lines} of ${file} was changed (keystore ${keystoreFile} records another hash for it); restore the file from a backup`}
  }

  return undefined
}

/**
 * The crash story, checked: every line says, by `unconfirmed`, which line the keystore recorded when it
 * was written (line k with u: line k-1-u), and a line that knew it (a change, or a refusal with the
 * keystore open) must agree with the lines after it. Lines past a recorded line are the leftovers of
 * commands that stopped before their keystore write: each later one counts all before it. A keystore put
 * back from an older copy breaks that story (a change made after it, by a command that did write the
 * keystore, is followed by a line, or the keystore, that says the keystore never recorded it), where
 * crashes cannot. Linear: each line is compared with the last line that knew the keystore's record.
 * One line past the keystore's record cannot be told from one crash.
 */
function checkSequence(entries: AuditEntry[], anchor: AuditAnchor | undefined, file: string, keystoreFile: string): AuditProblem | undefined {
  let known: {line: number; recorded: number} | undefined
  const follows = (recorded: number, by: string): AuditProblem | undefined => {
    if (!known || known.line <= recorded || known.recorded === recorded) return undefined
    return {
      line: known.line,
      message: `line ${known.line} of ${file} is a change made when keystore ${keystoreFile} recorded line ${known.recorded}, yet ${by} line ${recorded}: the keystore was put back from an older copy (a change, a rotation among them, was undone); check its values, then restore the pair from one backup or run keystore audit --restart`,
    }
  }

  for (const {line, record} of entries) {
    // A refusal made without the keystore open (a wrong password) did not know what it recorded.
    if (!record || (record.result === 'failed' && record.unconfirmed === undefined)) continue
    const recorded = line - 1 - (record.unconfirmed ?? 0)
    const problem = follows(recorded, `line ${line} says it recorded only`)
    if (problem) return problem
    known = {line, recorded}
  }

  return anchor ? follows(anchor.lines, 'it now records only') : undefined
}

/**
 * Starts a new trail: under the keystore's lock the trail is renamed to `<trail>.<time>` (kept: it is the
 * evidence of whatever made this necessary), and the new trail's first line names it with its size and
 * SHA-256; the keystore is rewritten anchored to that line. For a trail over what `keystore audit`
 * reads, a trail found changed (once looked into), or a keystore restored without its trail. A crash
 * in the middle leaves a trail that does not verify: run it again.
 */
export async function restartAuditTrail(keystoreFile: string, options: OpenOptions = {}): Promise<{file: string; restarted: RestartedFrom}> {
  const trail = auditFileOf(await keystoreTarget(keystoreFile, options))
  const restarted: RestartedFrom = {bytes: 0, file: null, sha256: createHash('sha256').digest('hex')}
  const audit = {command: 'keystore audit --restart', restarted}
  await updateKeystore(keystoreFile, {...options, audit}, async (keystore) => {
    const old = await fs.lstat(trail).catch(() => undefined)
    if (old) {
      if (!old.isFile()) throw new KeystoreError('EAUDIT', `audit file ${trail} is not a regular file; move it aside yourself, then run --restart again`)
      const kept = `${trail}.${new Date().toISOString().replaceAll(':', '-')}`
      if (await fs.lstat(kept).catch(() => undefined)) throw new KeystoreError('EAUDIT', `${kept} already exists; wait a moment and run --restart again`)
      Object.assign(restarted, {bytes: old.size, file: kept, sha256: await hashFile(trail)})
      await fs.rename(trail, kept)
    }

    keystore.setAuditAnchor(undefined)
    keystore.touch()
  })
  return {file: trail, restarted}
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256')
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  try {
    for await (const chunk of handle.createReadStream({autoClose: false})) hash.update(chunk as Buffer)
  } finally {
    await handle.close()
  }

  return hash.digest('hex')
}

/** Up to the anchor, every change but those a later line says were never confirmed (refusals never change it). */
function markConfirmed(entries: AuditEntry[], anchor: AuditAnchor | undefined): void {
  if (!anchor) return
  let i = Math.min(anchor.lines, entries.length)
  while (i >= 1) {
    const entry = entries[i - 1]
    entry.confirmed = entry.record?.result === 'ok'
    const skipped = entry.record?.unconfirmed ?? 0
    i -= 1 + skipped
  }
}
