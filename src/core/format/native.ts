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
 *   44+S   ...   secretbox (XSalsa20-Poly1305) of the JSON payload
 *
 * The key that opens the box is HMAC(KDF output, header), so every header byte is authenticated.
 * The header is checked strictly, with caps, before any KDF runs; after that a failure has one message.
 */
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
import {Entries, isValidKeyName} from '../entries.js'
import {KeystoreError} from '../errors.js'

export const NATIVE_MAGIC = Buffer.from('APMKEYS\0', 'latin1')
export const NATIVE_VERSION = 1
const KDF_NONE = 0
const KDF_ARGON2ID = 1
const FIXED_HEADER_BYTES = 20
const SALT_BYTES = 32
const MIN_SALT_BYTES = 16
const MAX_SALT_BYTES = 64

export type NativeKdf = {type: 'argon2id'; params: Argon2Params} | {type: 'none'}

export interface NativeHeader {
  kdf: NativeKdf
  salt: Buffer
  nonce: Buffer
  /** the header bytes, magic to nonce */
  bytes: Buffer
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
  const headerLength = FIXED_HEADER_BYTES + saltLength + SECRETBOX_NONCE_BYTES
  if (data.length < headerLength + SECRETBOX_OVERHEAD_BYTES) throw formatError('keystore file is truncated')
  return {
    bytes: data.subarray(0, headerLength),
    kdf,
    nonce: data.subarray(FIXED_HEADER_BYTES + saltLength, headerLength),
    salt: data.subarray(FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + saltLength),
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

/**
 * Decrypts a native keystore. `password` is asked for only when the file has one.
 */
export async function decodeNative(data: Buffer, password: () => Promise<Buffer>): Promise<Entries> {
  const header = readNativeHeader(data)
  const master = await deriveMaster(header.kdf, header.salt, header.kdf.type === 'none' ? undefined : await password())
  const plaintext = openSecretbox(data.subarray(header.bytes.length), header.nonce, bindKeyToHeader(master, header.bytes))
  return parsePayload(Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength))
}

export async function encodeNative(entries: Entries, kdf: NativeKdf, password: Buffer | undefined): Promise<Buffer> {
  const salt = randomBytesOf(SALT_BYTES)
  const nonce = randomBytesOf(SECRETBOX_NONCE_BYTES)
  const header = Buffer.alloc(FIXED_HEADER_BYTES + SALT_BYTES + SECRETBOX_NONCE_BYTES)
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
  const box = sealSecretbox(serializePayload(entries), nonce, bindKeyToHeader(master, header))
  return Buffer.concat([header, box])
}

// The payload is JSON with base64 values: names are restricted to a JSON-safe alphabet and values stay
// binary safe. Times are milliseconds since the epoch.
interface PayloadEntry {
  created: number
  updated: number
  value: string
}

function serializePayload(entries: Entries): Buffer {
  const out: Record<string, PayloadEntry> = {}
  for (const [name, entry] of entries) out[name] = {created: entry.created, updated: entry.updated, value: entry.value.toString('base64')}
  return Buffer.from(JSON.stringify({entries: out}))
}

function parsePayload(plaintext: Buffer): Entries {
  // Only reachable with the right key: a malformed payload means a bug or a forged file made with the key.
  const bad = () => formatError('keystore payload is malformed; restore the file from a backup')
  let parsed: unknown
  try {
    parsed = JSON.parse(plaintext.toString('utf8'))
  } catch {
    throw bad()
  }

  const raw = (parsed as {entries?: unknown})?.entries
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad()
  const entries: Entries = new Map()
  for (const [name, item] of Object.entries(raw as Record<string, PayloadEntry>)) {
    if (!isValidKeyName(name) || typeof item?.value !== 'string' || typeof item.created !== 'number' || typeof item.updated !== 'number') throw bad()
    entries.set(name, {created: item.created, updated: item.updated, value: Buffer.from(item.value, 'base64')})
  }

  return entries
}
