/**
 * The native keystore format, versions 1 and 2.
 *
 *   offset size  field
 *   0      8     magic "APMKEYS\0"
 *   8      1     format version (1 or 2)
 *   9      1     KDF: 0 none (obfuscation only), 1 argon2id
 *   10     4     argon2 memory in KiB (u32 BE; 0 for none)
 *   14     4     argon2 iterations (u32 BE; 0 for none)
 *   18     1     argon2 parallelism (0 for none)
 *   19     1     salt length S (16..64)
 *   20     S     salt
 *   20+S   24    secretbox nonce
 *   44+S   4     length I of the index box (u32 BE)
 *   48+S   I     index box: secretbox (XSalsa20-Poly1305) of JSON {entries: [[name, value length], ...],
 *                meta: {...} (version 2 only), values: sha256 of the values box}
 *   48+S+I ...   values box: secretbox of the values, concatenated in index order, then for each entry
 *                its created and updated times (ms since the epoch, two float64 BE)
 *
 * Two boxes so that `list` decrypts names only: with thousands of keys, decrypting everything in
 * pure-JS XSalsa20 would dominate its run time. The index carries the values box's digest, so every
 * byte of the file is still checked on every load. Each box has its own key, HMAC(KDF output, purpose,
 * header), so every header byte is authenticated and the shared nonce is never reused under one key.
 * The header is checked strictly, with caps, before any KDF runs; after that a failure has one message.
 *
 * Version 2 adds `meta`, the keystore's metadata: authenticated and encrypted with the index, under the
 * password when there is one, written atomically with the entries, and never a key. Its fields are named;
 * this build knows `hostKey` (the host's X25519 secret key for sealed bundles, base64), `expires` (when
 * entries expire: {name: ms since the epoch}, names of entries only) and `audit` (the audit trail's
 * anchor: its line count, the SHA-256 of its last line and its size in bytes, see src/core/audit.ts). A
 * field this build does not know is refused (EVERSION: written by a newer apm-server), never dropped on a
 * rewrite: a later version adds fields without changing this layout. Version 1 files still open, and are
 * rewritten as version 1 until they get metadata or `upgrade` converts them.
 */
import {createHash} from 'node:crypto'

import {
  ARGON2_LIMITS,
  Argon2Params,
  bindKeyToHeader,
  decryptAuthenticatedSecretbox,
  deriveArgon2id,
  deriveObfuscationKey,
  openSecretbox,
  randomBytesOf,
  SECRETBOX_NONCE_BYTES,
  SECRETBOX_OVERHEAD_BYTES,
  sealSecretbox,
} from '../crypto.js'
import {Entries, Entry, isValidKeyName, MAX_KEYS} from '../entries.js'
import {DECRYPT_FAILED_MESSAGE, EncodeLimitError, KeystoreError} from '../errors.js'
import {jsonBracketsWithin} from './json-guard.js'

export const NATIVE_MAGIC = Buffer.from('APMKEYS\0', 'latin1')
/** The version new keystores, `upgrade` and keystores with metadata are written in. */
export const NATIVE_VERSION = 2
export type NativeVersion = 1 | 2
const KDF_NONE = 0
const KDF_ARGON2ID = 1
const FIXED_HEADER_BYTES = 20
const INDEX_LENGTH_BYTES = 4
const SALT_BYTES = 32
const TIME_BYTES = 16
const MIN_SALT_BYTES = 16
const MAX_SALT_BYTES = 64
/**
 * The index of the most keys a keystore may hold (MAX_KEYS names of up to 255 characters) is under 28 MiB.
 * A larger declared index is refused before it is decrypted or parsed.
 */
const MAX_INDEX_BYTES = 32 * 1024 * 1024

export type NativeKdf = {type: 'argon2id'; params: Argon2Params} | {type: 'none'}

/** Where the audit trail beside the keystore ended at the keystore's last audited write. */
export interface AuditAnchor {
  /** lines in the trail */
  lines: number
  /** SHA-256 of its last line (without the newline), lower-case hex */
  head: string
  /** its size in bytes */
  bytes: number
}

/** The keystore's metadata (version 2): never an entry, never listed. */
export interface NativeMeta {
  /** this host's X25519 secret key, for opening sealed bundles */
  hostKey?: Buffer
  /** when entries expire, in ms since the epoch; names of entries only */
  expires?: Map<string, number>
  audit?: AuditAnchor
}

const HOST_KEY_BYTES = 32

export interface NativeHeader {
  version: NativeVersion
  kdf: NativeKdf
  salt: Buffer
  nonce: Buffer
  /** the header bytes, magic to index length */
  bytes: Buffer
  indexBox: Buffer
  valuesBox: Buffer
}

export function looksNative(data: Buffer): boolean {
  return data.length >= NATIVE_MAGIC.length && data.subarray(0, NATIVE_MAGIC.length).equals(NATIVE_MAGIC)
}

function formatError(detail: string): KeystoreError {
  return new KeystoreError('EFORMAT', `${detail}`)
}

/** Parses and checks the header without any KDF work. */
export function readNativeHeader(data: Buffer): NativeHeader {
  if (!looksNative(data)) throw formatError('not an apm-server keystore (bad magic)')
  if (data.length < FIXED_HEADER_BYTES) throw formatError('keystore file is truncated (header incomplete)')
  const version = data[8]
  if (version !== 1 && version !== 2) {
    throw new KeystoreError('EVERSION', `unsupported keystore format version ${version}; this build reads versions up to ${NATIVE_VERSION}, upgrade apm-server`)
  }

  const kdfId = data[9]
  const memoryKiB = data.readUInt32BE(10)
  const iterations = data.readUInt32BE(14)
  const parallelism = data[18]
  let kdf: NativeKdf
  if (kdfId === KDF_NONE) {
    if (memoryKiB !== 0 || iterations !== 0 || parallelism !== 0) throw formatError('malformed keystore header (KDF parameters set without a KDF)')
    kdf = {type: 'none'}
  } else if (kdfId === KDF_ARGON2ID) {
    kdf = {params: {iterations, memoryKiB, parallelism}, type: 'argon2id'}
    checkArgon2Limits(kdf.params)
  } else {
    throw formatError(`malformed keystore header (unknown KDF ${kdfId})`)
  }

  const saltLength = data[19]
  if (saltLength < MIN_SALT_BYTES || saltLength > MAX_SALT_BYTES) throw formatError(`malformed keystore header (salt length ${saltLength})`)
  const headerLength = FIXED_HEADER_BYTES + saltLength + SECRETBOX_NONCE_BYTES + INDEX_LENGTH_BYTES
  if (data.length < headerLength + 2 * SECRETBOX_OVERHEAD_BYTES) throw formatError('keystore file is truncated')
  const indexLength = data.readUInt32BE(headerLength - INDEX_LENGTH_BYTES)
  if (indexLength < SECRETBOX_OVERHEAD_BYTES || indexLength > data.length - headerLength - SECRETBOX_OVERHEAD_BYTES) {
    throw formatError(`keystore file is truncated or malformed (index length ${indexLength})`)
  }

  if (indexLength > MAX_INDEX_BYTES + SECRETBOX_OVERHEAD_BYTES) {
    throw new KeystoreError(
      'ELIMITS',
      `keystore index is ${indexLength} bytes, over the ${MAX_INDEX_BYTES}-byte limit; the file is damaged or crafted, restore it from a backup`,
    )
  }

  return {
    bytes: data.subarray(0, headerLength),
    indexBox: data.subarray(headerLength, headerLength + indexLength),
    kdf,
    nonce: data.subarray(FIXED_HEADER_BYTES + saltLength, FIXED_HEADER_BYTES + saltLength + SECRETBOX_NONCE_BYTES),
    salt: data.subarray(FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + saltLength),
    valuesBox: data.subarray(headerLength + indexLength),
    version,
  }
}

/** Throws ELIMITS for parameters a file may not ask for, and EUSAGE-free checks for our own choice. */
export function checkArgon2Limits(params: Argon2Params): void {
  const {iterations, memoryKiB, parallelism} = params
  const ok =
    Number.isInteger(memoryKiB) &&
    Number.isInteger(iterations) &&
    Number.isInteger(parallelism) &&
    parallelism >= 1 &&
    parallelism <= ARGON2_LIMITS.maxParallelism &&
    iterations >= 1 &&
    iterations <= ARGON2_LIMITS.maxIterations &&
    memoryKiB >= ARGON2_LIMITS.minMemoryKiBPerLane * parallelism &&
    memoryKiB <= ARGON2_LIMITS.maxMemoryKiB
  if (!ok) {
    throw new KeystoreError(
      'ELIMITS',
      `keystore asks for argon2id memory=${memoryKiB}KiB iterations=${iterations} parallelism=${parallelism}, outside the allowed ` +
        `range (memory ${ARGON2_LIMITS.minMemoryKiBPerLane}KiB per lane to ${ARGON2_LIMITS.maxMemoryKiB}KiB, iterations 1-${ARGON2_LIMITS.maxIterations}, ` +
        `parallelism 1-${ARGON2_LIMITS.maxParallelism}); the file is damaged or crafted, restore it from a backup`,
    )
  }
}

async function deriveMaster(kdf: NativeKdf, salt: Buffer, password: Buffer | undefined): Promise<Buffer> {
  if (kdf.type === 'none') return deriveObfuscationKey(salt)
  if (!password) throw new KeystoreError('ENOPASSWORD', 'keystore is password protected and no password was given')
  return deriveArgon2id(password, salt, kdf.params)
}

/** A decrypted index: names at once, values on demand. */
export interface NativeContents {
  version: NativeVersion
  /** the metadata (empty for version 1) */
  meta: NativeMeta
  kdf: NativeKdf
  /** each name to its position in the file (file order); a new map for each open, the caller's to keep */
  positions: Map<string, number>
  /** decrypts and checks the values box: values and times */
  readValues(): StoredValues
}

/**
 * The decrypted values box of an opened file, read in place: an entry is split out only when asked for,
 * and a rewrite copies unchanged entries in runs (see {@link encodeNative}) rather than one by one.
 */
export class StoredValues {
  /** @param starts where each position's value begins; starts[count] is where the times begin */
  constructor(
    private readonly plaintext: Buffer,
    private readonly starts: Float64Array,
  ) {}

  /** The entry at `position`; its value is a view into the decrypted box. */
  entry(position: number): Entry {
    const time = this.timeOffset(position)
    return {
      created: this.plaintext.readDoubleBE(time),
      updated: this.plaintext.readDoubleBE(time + 8),
      value: this.plaintext.subarray(this.starts[position], this.starts[position + 1]),
    }
  }

  valueLength(position: number): number {
    return this.starts[position + 1] - this.starts[position]
  }

  /**
   * Copies the values of positions [from, to) to `target` at `valueAt`, and their times at `timeAt`;
   * returns the number of value bytes copied.
   */
  copyRun(from: number, to: number, target: Buffer, valueAt: number, timeAt: number): number {
    this.plaintext.copy(target, timeAt, this.timeOffset(from), this.timeOffset(to))
    return this.plaintext.copy(target, valueAt, this.starts[from], this.starts[to])
  }

  private timeOffset(position: number): number {
    return this.starts[this.starts.length - 1] + TIME_BYTES * position
  }
}

function boxKey(master: Buffer, purpose: 'index' | 'values', header: Buffer): Uint8Array {
  return bindKeyToHeader(master, Buffer.concat([Buffer.from(purpose), header]))
}

const DIGEST_PLACEHOLDER = 'A'.repeat(44)

function digest(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('base64')
}

/**
 * Opens a native keystore's index. `password` is asked for only when the file has one.
 */
export async function openNative(data: Buffer, password: () => Promise<Buffer>): Promise<NativeContents> {
  const header = readNativeHeader(data)
  const master = await deriveMaster(header.kdf, header.salt, header.kdf.type === 'none' ? undefined : await password())
  const index = parseIndex(toBuffer(openSecretbox(header.indexBox, header.nonce, boxKey(master, 'index', header.bytes))), header.version)
  // Checked now, not when values are read, so that a damaged values box fails every command.
  if (digest(header.valuesBox) !== index.valuesDigest) throw new KeystoreError('EDECRYPT', DECRYPT_FAILED_MESSAGE)
  // The values and their times must fill the values box exactly: checked now, so every command refuses the file.
  const {starts} = index
  const count = starts.length - 1
  if (starts[count] + TIME_BYTES * count !== header.valuesBox.length - SECRETBOX_OVERHEAD_BYTES) throw malformedPayload()
  return {
    kdf: header.kdf,
    meta: index.meta,
    positions: index.positions,
    readValues() {
      // Its digest was compared above, inside the authenticated index: every byte of it is already checked.
      const plaintext = toBuffer(decryptAuthenticatedSecretbox(header.valuesBox, header.nonce, boxKey(master, 'values', header.bytes)))
      // Every time is checked here, so a file with one bad time fails as a whole, whichever entries are used.
      const view = new DataView(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength)
      for (let at = starts[count]; at < plaintext.length; at += 8) {
        if (!Number.isSafeInteger(view.getFloat64(at))) throw malformedPayload()
      }

      return new StoredValues(plaintext, starts)
    },
    version: header.version,
  }
}

/** Decrypts a whole native keystore, values included. */
export async function decodeNative(data: Buffer, password: () => Promise<Buffer>): Promise<Entries> {
  const contents = await openNative(data, password)
  const values = contents.readValues()
  const entries: Entries = new Map()
  for (const [name, position] of contents.positions) entries.set(name, values.entry(position))
  return entries
}

/** The header of a new native file; its last field, the index length, is written once the index is known. */
function nativeHeader(kdf: NativeKdf, salt: Buffer, nonce: Buffer, version: number): Buffer {
  const header = Buffer.alloc(FIXED_HEADER_BYTES + SALT_BYTES + SECRETBOX_NONCE_BYTES + INDEX_LENGTH_BYTES)
  NATIVE_MAGIC.copy(header, 0)
  header[8] = version
  if (kdf.type === 'argon2id') {
    checkArgon2Limits(kdf.params)
    header[9] = KDF_ARGON2ID
    header.writeUInt32BE(kdf.params.memoryKiB, 10)
    header.writeUInt32BE(kdf.params.iterations, 14)
    header[18] = kdf.params.parallelism
  }

  header[19] = SALT_BYTES
  salt.copy(header, FIXED_HEADER_BYTES)
  nonce.copy(header, FIXED_HEADER_BYTES + SALT_BYTES)
  return header
}

/**
 * What {@link encodeNative} writes for one name: an entry, or the position of an unchanged entry in
 * `stored`, whose bytes are copied as they are.
 */
export type EntryOrStored = Entry | number

/** Which version to write, and the metadata (version 2 only). */
export interface NativeLayout {
  version: NativeVersion
  meta: NativeMeta
}

/**
 * Encodes `entries`, in their order, with a fresh salt and nonce (so every box is sealed anew). Entries
 * given as positions are copied from `stored`; consecutive ones in one piece. Writes the current version
 * unless `layout` says otherwise; metadata needs version 2.
 */
export async function encodeNative(
  entries: ReadonlyMap<string, EntryOrStored>,
  kdf: NativeKdf,
  password: Buffer | undefined,
  stored?: StoredValues,
  maxFileBytes = Number.POSITIVE_INFINITY,
  layout: NativeLayout = {meta: {}, version: NATIVE_VERSION},
): Promise<Buffer> {
  for (const name of layout.meta.expires?.keys() ?? []) if (!entries.has(name)) throw new TypeError('encodeNative: an expiry for a name that is not an entry')
  const metaJson = encodeMeta(layout.meta)
  if (layout.version === 1 && metaJson !== '{}') throw new TypeError('encodeNative: version 1 cannot hold metadata')
  const salt = randomBytesOf(SALT_BYTES)
  const nonce = randomBytesOf(SECRETBOX_NONCE_BYTES)
  const header = nativeHeader(kdf, salt, nonce, layout.version)
  const master = await deriveMaster(kdf, salt, password)
  // The index JSON, {"entries":[[name,length],...],"values":digest}, written row by row instead of
  // JSON.stringify of [name, length] pairs built first, and without destructuring (which runs the iterator
  // protocol, slow in the interpreter this code runs in): adding one key to 10,000, encodeNative's own
  // time went from 12.6 to 8.2 ms (mean of 16 profiled runs, bench/lib/profile-startup.js).
  let rows = ''
  let valuesLength = 0
  for (const name of entries.keys()) {
    const entry = entries.get(name)!
    let length: number
    if (typeof entry !== 'number') length = entry.value.length
    else if (stored) length = stored.valueLength(entry)
    else throw new TypeError('encodeNative: an entry refers to stored values, and none were given')
    rows += `${rows ? ',' : ''}[${JSON.stringify(name)},${length}]`
    valuesLength += length
  }

  // Between the rows and the digest: nothing in version 1, the metadata in version 2.
  const middle = layout.version === 1 ? '' : `,"meta":${metaJson}`
  checkEncodedLimits(entries.size, rows.length + middle.length, header.length, valuesLength, maxFileBytes)
  const plaintext = Buffer.alloc(valuesLength + TIME_BYTES * entries.size)
  let valueAt = 0
  let timeAt = valuesLength
  // A run of stored entries, [runFrom, runTo) in the old file, not copied yet.
  let runFrom = 0
  let runTo = 0
  const copyRun = () => {
    if (runTo === runFrom) return
    valueAt += stored!.copyRun(runFrom, runTo, plaintext, valueAt, timeAt)
    timeAt += TIME_BYTES * (runTo - runFrom)
    runFrom = runTo
  }

  for (const entry of entries.values()) {
    if (typeof entry === 'number') {
      if (entry !== runTo) {
        copyRun()
        runFrom = entry
      }

      runTo = entry + 1
      continue
    }

    copyRun()
    entry.value.copy(plaintext, valueAt)
    valueAt += entry.value.length
    plaintext.writeDoubleBE(entry.created, timeAt)
    plaintext.writeDoubleBE(entry.updated, timeAt + 8)
    timeAt += TIME_BYTES
  }

  copyRun()
  // The index length is part of the header that both keys are bound to, and the index holds the digest
  // of the values box sealed under such a key. A SHA-256 digest in base64 is always 44 characters, so
  // the index is built once with a placeholder, and the digest written over it.
  const index = Buffer.from(`{"entries":[${rows}]${middle},"values":"${DIGEST_PLACEHOLDER}"}`)
  const digestAt = index.length - DIGEST_PLACEHOLDER.length - 2
  header.writeUInt32BE(index.length + SECRETBOX_OVERHEAD_BYTES, header.length - INDEX_LENGTH_BYTES)
  const valuesBox = sealSecretbox(plaintext, nonce, boxKey(master, 'values', header))
  index.write(digest(valuesBox), digestAt, 'latin1')
  const indexBox = sealSecretbox(index, nonce, boxKey(master, 'index', header))
  return Buffer.concat([header, indexBox, valuesBox])
}

/** `{"entries":[` rows `],"values":"` digest `"}` around the rows (and the metadata). */
const INDEX_FRAME_BYTES = '{"entries":[],"values":""}'.length + DIGEST_PLACEHOLDER.length

/**
 * Refuses, before anything is allocated or sealed, a file that readNativeHeader, parseIndex or the file
 * reader would refuse: a keystore nobody can open again. `rowsLength` is the index rows' (and metadata's)
 * length in characters, which is their length in bytes: key names, numbers and base64 are ASCII.
 */
function checkEncodedLimits(count: number, rowsLength: number, headerLength: number, valuesLength: number, maxFileBytes: number): void {
  if (count > MAX_KEYS) throw new EncodeLimitError(`would hold ${count} keys, over the limit of ${MAX_KEYS}`)
  const indexLength = rowsLength + INDEX_FRAME_BYTES
  if (indexLength > MAX_INDEX_BYTES) throw new EncodeLimitError(`would have a ${indexLength}-byte index, over the ${MAX_INDEX_BYTES}-byte limit`)
  const fileLength = headerLength + indexLength + valuesLength + TIME_BYTES * count + 2 * SECRETBOX_OVERHEAD_BYTES
  if (fileLength > maxFileBytes) throw new EncodeLimitError(`would be ${fileLength} bytes, over the ${maxFileBytes}-byte limit`)
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

// Only reachable with the right key: a malformed payload means a bug or a forged file made with the key.
function malformedPayload(): KeystoreError {
  return formatError('keystore payload is malformed; restore the file from a backup')
}

interface Index {
  meta: NativeMeta
  positions: NativeContents['positions']
  /** where each position's value begins in the values box; starts[count] is the values' total length */
  starts: Float64Array
  valuesDigest: string
}

// {"entries": [[name, length], ...], "meta": {"audit": {...}, "expires": {...}, ...}, "values": "..."}:
// one array per key plus two, and the metadata object with its two objects. Rows and metadata nested
// deeper are refused by the checks after parsing; a field version 1 ignores may nest, within the count.
const INDEX_CONTAINERS = MAX_KEYS + 5

function parseIndex(plaintext: Buffer, version: NativeVersion): Index {
  const text = plaintext.toString('utf8')
  if (!jsonBracketsWithin(text, INDEX_CONTAINERS)) throw malformedPayload()
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw malformedPayload()
  }

  const {entries: rows, meta, values} = (parsed ?? {}) as {entries?: unknown; meta?: unknown; values?: unknown}
  if (!Array.isArray(rows) || typeof values !== 'string') throw malformedPayload()
  const count = rows.length
  const positions: Index['positions'] = new Map()
  const starts = new Float64Array(count + 1)
  // Indexed reads rather than `for...of` and `[name, length] = row`: this loop runs once per command, in
  // V8's interpreter, where the iterator protocol is slow (10,000 rows: parseIndex's own time went from
  // 15.0 to 12.3 ms, mean of 16 profiled runs), and the value starts are summed here in the same pass.
  for (let i = 0; i < count; i++) {
    const row: unknown = rows[i]
    if (!Array.isArray(row) || row.length !== 2) throw malformedPayload()
    const name: unknown = row[0]
    const length: unknown = row[1]
    if (typeof name !== 'string' || !isValidKeyName(name) || !Number.isSafeInteger(length) || (length as number) < 0) throw malformedPayload()
    positions.set(name, i)
    // A repeated name replaces its first position instead of adding one.
    if (positions.size === i) throw malformedPayload()
    starts[i + 1] = starts[i] + (length as number)
  }

  // Version 1 never had metadata (and ignored other fields); version 2 always has the object.
  return {meta: version === 1 ? {} : parseMeta(meta, positions), positions, starts, valuesDigest: values}
}

const META_FIELDS: ReadonlySet<string> = new Set(['audit', 'expires', 'hostKey'])
const BASE64_32_BYTES = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/
const SHA256_HEX = /^[0-9a-f]{64}$/

function parseMeta(meta: unknown, positions: ReadonlyMap<string, number>): NativeMeta {
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw malformedPayload()
  const unknown = Object.keys(meta).filter((field) => !META_FIELDS.has(field))
  if (unknown.length > 0) {
    // Only a writer holding the key can put names here; still escaped and cut.
    const shown = unknown.slice(0, 3).map((field) => JSON.stringify(field.slice(0, 40)))
    throw new KeystoreError('EVERSION', `keystore holds metadata this build does not know (${shown.join(', ')}), written by a newer apm-server; upgrade apm-server`)
  }

  const {audit, expires, hostKey} = meta as {audit?: unknown; expires?: unknown; hostKey?: unknown}
  const parsed: NativeMeta = {}
  if (hostKey !== undefined) {
    // Canonical base64 of exactly 32 bytes: one way to write each key.
    if (typeof hostKey !== 'string' || !BASE64_32_BYTES.test(hostKey)) throw malformedPayload()
    parsed.hostKey = Buffer.from(hostKey, 'base64')
  }

  if (expires !== undefined) parsed.expires = parseExpires(expires, positions)
  if (audit !== undefined) parsed.audit = parseAuditAnchor(audit)
  return parsed
}

/** {name: ms}: names of entries, whole positive times; an empty map is written as no field. */
function parseExpires(expires: unknown, positions: ReadonlyMap<string, number>): Map<string, number> {
  if (typeof expires !== 'object' || expires === null || Array.isArray(expires)) throw malformedPayload()
  const parsed = new Map<string, number>()
  for (const [name, at] of Object.entries(expires)) {
    if (!positions.has(name) || !Number.isSafeInteger(at) || (at as number) <= 0) throw malformedPayload()
    parsed.set(name, at as number)
  }

  if (parsed.size === 0) throw malformedPayload()
  return parsed
}

function parseAuditAnchor(audit: unknown): AuditAnchor {
  if (typeof audit !== 'object' || audit === null || Array.isArray(audit)) throw malformedPayload()
  const {bytes, head, lines, ...rest} = audit as {bytes?: unknown; head?: unknown; lines?: unknown}
  const whole = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 1
  if (Object.keys(rest).length > 0 || !whole(bytes) || !whole(lines) || typeof head !== 'string' || !SHA256_HEX.test(head)) throw malformedPayload()
  return {bytes: bytes as number, head, lines: lines as number}
}

/** The metadata's JSON, fields in a fixed order. */
function encodeMeta(meta: NativeMeta): string {
  const fields: string[] = []
  if (meta.audit !== undefined) {
    const {bytes, head, lines} = meta.audit
    if (!(lines >= 1 && bytes >= 1 && Number.isSafeInteger(lines) && Number.isSafeInteger(bytes) && SHA256_HEX.test(head))) throw new TypeError('encodeNative: a malformed audit anchor')
    fields.push(`"audit":{"bytes":${bytes},"head":"${head}","lines":${lines}}`)
  }

  if (meta.expires !== undefined && meta.expires.size > 0) {
    let rows = ''
    for (const [name, at] of meta.expires) {
      if (!Number.isSafeInteger(at) || at <= 0) throw new TypeError('encodeNative: an expiry is a whole number of ms since the epoch')
      rows += `${rows ? ',' : ''}${JSON.stringify(name)}:${at}`
    }

    fields.push(`"expires":{${rows}}`)
  }

  if (meta.hostKey !== undefined) {
    if (meta.hostKey.length !== HOST_KEY_BYTES) throw new TypeError('encodeNative: a host key is 32 bytes')
    fields.push(`"hostKey":"${meta.hostKey.toString('base64')}"`)
  }

  return `{${fields.join(',')}}`
}
