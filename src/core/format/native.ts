/**
 * The native keystore format, version 1.
 *
 *   offset size  field
 *   0      8     magic "APMKEYS\0"
 *   8      1     format version (1)
 *   9      1     KDF: 0 none (obfuscation only), 1 argon2id
 *   10     4     argon2 memory in KiB (u32 BE; 0 for none)
 *   14     4     argon2 iterations (u32 BE; 0 for none)
 *   18     1     argon2 parallelism (0 for none)
 *   19     1     salt length S (16..64)
 *   20     S     salt
 *   20+S   24    secretbox nonce
 *   44+S   4     length I of the index box (u32 BE)
 *   48+S   I     index box: secretbox (XSalsa20-Poly1305) of JSON {values: sha256 of the values box,
 *                entries: [[name, value length], ...]}
 *   48+S+I ...   values box: secretbox of the values, concatenated in index order, then for each entry
 *                its created and updated times (ms since the epoch, two float64 BE)
 *
 * Two boxes so that `list` decrypts names only: with thousands of keys, decrypting everything in
 * pure-JS XSalsa20 would dominate its run time. The index carries the values box's digest, so every
 * byte of the file is still checked on every load. Each box has its own key, HMAC(KDF output, purpose,
 * header), so every header byte is authenticated and the shared nonce is never reused under one key.
 * The header is checked strictly, with caps, before any KDF runs; after that a failure has one message.
 */
import {createHash} from 'node:crypto'

import {
  ARGON2_LIMITS,
  Argon2Params,
  bindKeyToHeader,
  deriveArgon2id,
  deriveObfuscationKey,
  openSecretbox,
  randomBytesOf,
  SECRETBOX_NONCE_BYTES,
  SECRETBOX_OVERHEAD_BYTES,
  sealSecretbox,
} from '../crypto.js'
import {Entries, isValidKeyName, MAX_KEYS} from '../entries.js'
import {DECRYPT_FAILED_MESSAGE, KeystoreError} from '../errors.js'
import {jsonDepthWithin} from './json-guard.js'

export const NATIVE_MAGIC = Buffer.from('APMKEYS\0', 'latin1')
export const NATIVE_VERSION = 1
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

export interface NativeHeader {
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
  if (version !== NATIVE_VERSION) {
    throw new KeystoreError('EVERSION', `unsupported keystore format version ${version}; this build reads version ${NATIVE_VERSION}, upgrade apm-server`)
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

/** A decrypted index: names and metadata at once, values on demand. */
export interface NativeContents {
  /** names and value lengths, in file order */
  entries: Map<string, {length: number}>
  /** decrypts the values box: values and times */
  readValues(): Entries
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
  const index = parseIndex(toBuffer(openSecretbox(header.indexBox, header.nonce, boxKey(master, 'index', header.bytes))))
  // Checked now, not when values are read, so that a damaged values box fails every command.
  if (digest(header.valuesBox) !== index.valuesDigest) throw new KeystoreError('EDECRYPT', DECRYPT_FAILED_MESSAGE)
  // The values and their times must fill the values box exactly: checked now, so every command refuses the file.
  let size = TIME_BYTES * index.entries.size
  for (const {length} of index.entries.values()) size += length
  if (size !== header.valuesBox.length - SECRETBOX_OVERHEAD_BYTES) throw malformedPayload()
  return {
    entries: index.entries,
    readValues() {
      const plaintext = toBuffer(openSecretbox(header.valuesBox, header.nonce, boxKey(master, 'values', header.bytes)))
      const entries: Entries = new Map()
      let offset = 0
      let times = plaintext.length - TIME_BYTES * index.entries.size
      if (times < 0) throw malformedPayload()
      for (const [name, {length}] of index.entries) {
        const created = plaintext.readDoubleBE(times)
        const updated = plaintext.readDoubleBE(times + 8)
        if (!Number.isSafeInteger(created) || !Number.isSafeInteger(updated)) throw malformedPayload()
        entries.set(name, {created, updated, value: plaintext.subarray(offset, offset + length)})
        offset += length
        times += TIME_BYTES
      }

      if (offset !== plaintext.length - TIME_BYTES * index.entries.size) throw malformedPayload()
      return entries
    },
  }
}

/** Decrypts a whole native keystore, values included. */
export async function decodeNative(data: Buffer, password: () => Promise<Buffer>): Promise<Entries> {
  return (await openNative(data, password)).readValues()
}

export async function encodeNative(entries: Entries, kdf: NativeKdf, password: Buffer | undefined): Promise<Buffer> {
  const salt = randomBytesOf(SALT_BYTES)
  const nonce = randomBytesOf(SECRETBOX_NONCE_BYTES)
  const header = Buffer.alloc(FIXED_HEADER_BYTES + SALT_BYTES + SECRETBOX_NONCE_BYTES + INDEX_LENGTH_BYTES)
  NATIVE_MAGIC.copy(header, 0)
  header[8] = NATIVE_VERSION
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
  const master = await deriveMaster(kdf, salt, password)
  const names = [...entries.keys()]
  const indexOf = (valuesDigest: string) =>
    Buffer.from(
      JSON.stringify({
        entries: names.map((name) => [name, entries.get(name)!.value.length]),
        values: valuesDigest,
      }),
    )
  // The index length is part of the header that both keys are bound to, and the index holds the digest
  // of the values box sealed under such a key. A SHA-256 digest in base64 is always 44 characters, so
  // the length is known before the digest is.
  header.writeUInt32BE(indexOf(DIGEST_PLACEHOLDER).length + SECRETBOX_OVERHEAD_BYTES, header.length - INDEX_LENGTH_BYTES)
  const times = Buffer.alloc(TIME_BYTES * names.length)
  names.forEach((name, i) => {
    times.writeDoubleBE(entries.get(name)!.created, i * TIME_BYTES)
    times.writeDoubleBE(entries.get(name)!.updated, i * TIME_BYTES + 8)
  })
  const valuesBox = sealSecretbox(Buffer.concat([...names.map((name) => entries.get(name)!.value), times]), nonce, boxKey(master, 'values', header))
  const indexBox = sealSecretbox(indexOf(digest(valuesBox)), nonce, boxKey(master, 'index', header))
  return Buffer.concat([header, indexBox, valuesBox])
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

// Only reachable with the right key: a malformed payload means a bug or a forged file made with the key.
function malformedPayload(): KeystoreError {
  return formatError('keystore payload is malformed; restore the file from a backup')
}

interface Index {
  entries: NativeContents['entries']
  valuesDigest: string
}

// {"entries": [[name, length], ...], "values": "..."}: three levels, one array per key plus two.
const INDEX_DEPTH = 3
const INDEX_CONTAINERS = MAX_KEYS + 2

function parseIndex(plaintext: Buffer): Index {
  if (!jsonDepthWithin(plaintext, INDEX_DEPTH, INDEX_CONTAINERS)) throw malformedPayload()
  let parsed: unknown
  try {
    parsed = JSON.parse(plaintext.toString('utf8'))
  } catch {
    throw malformedPayload()
  }

  const {entries: rows, values} = (parsed ?? {}) as {entries?: unknown; values?: unknown}
  if (!Array.isArray(rows) || typeof values !== 'string') throw malformedPayload()
  const entries: Index['entries'] = new Map()
  for (const row of rows) {
    const [name, length] = Array.isArray(row) && row.length === 2 ? row : []
    const valid = typeof name === 'string' && isValidKeyName(name) && !entries.has(name) && Number.isSafeInteger(length) && length >= 0
    if (!valid) throw malformedPayload()
    entries.set(name, {length})
  }

  return {entries, valuesDigest: values}
}
