/**
 * The Beats v1 keystore, as Elastic's Go apm-server (libbeat/keystore) reads and writes it:
 *
 *   "v1" + base64(salt[64] | iv[12] | AES-256-GCM(ciphertext | tag[16]))
 *   key = PBKDF2-HMAC-SHA512(password "", salt, 10000 iterations, 32 bytes)
 *   plaintext = {"KEY":{"value":"<base64 of the bytes>"}, ...}
 *
 * The password is always empty in the Go server, so this format is obfuscation only.
 */
import {BEATS_V1, decryptAesGcm, deriveBeatsKey, encryptAesGcm, randomBytesOf} from '../crypto.js'
import {Entries, isValidKeyName, MAX_KEYS} from '../entries.js'
import {EncodeLimitError, KeystoreError} from '../errors.js'
import {jsonDepthWithin} from './json-guard.js'

export const BEATS_V1_PREFIX = Buffer.from('v1', 'latin1')
const EMPTY_PASSWORD = Buffer.alloc(0)
// Go's base64 decoder skips CR and LF, so files edited by hand with a trailing newline still load there.
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

export function looksBeatsV1(data: Buffer): boolean {
  return data.length >= 2 && data[0] === 0x76 && data[1] === 0x31
}

export function decodeBeatsV1(data: Buffer): Entries {
  if (!looksBeatsV1(data)) throw new KeystoreError('EFORMAT', 'not a Beats keystore (bad version prefix)')
  const text = data.subarray(BEATS_V1_PREFIX.length).toString('latin1').replaceAll(/[\r\n]/g, '')
  if (!BASE64.test(text) || text.length % 4 !== 0) throw new KeystoreError('EFORMAT', 'Beats keystore is malformed (invalid base64)')
  const raw = Buffer.from(text, 'base64')
  const minimum = BEATS_V1.saltBytes + BEATS_V1.ivBytes + BEATS_V1.tagBytes
  if (raw.length < minimum) throw new KeystoreError('EFORMAT', 'Beats keystore is truncated')
  const salt = raw.subarray(0, BEATS_V1.saltBytes)
  const iv = raw.subarray(BEATS_V1.saltBytes, BEATS_V1.saltBytes + BEATS_V1.ivBytes)
  const sealed = raw.subarray(BEATS_V1.saltBytes + BEATS_V1.ivBytes)
  const plaintext = decryptAesGcm(sealed, deriveBeatsKey(EMPTY_PASSWORD, salt), iv)
  return parseBeatsPayload(plaintext)
}

/**
 * The size of the file {@link encodeBeatsV1} writes, computed before anything is built: each entry is
 * `"NAME":{"value":"BASE64"}` (names are ASCII and never escaped), commas between, braces around, then
 * salt, IV and tag around the ciphertext, all in base64 after the "v1" prefix.
 */
export function encodedBeatsV1Size(entries: Entries): number {
  let json = 2 + Math.max(entries.size - 1, 0)
  for (const [name, entry] of entries) json += name.length + 4 * Math.ceil(entry.value.length / 3) + 15
  const raw = BEATS_V1.saltBytes + BEATS_V1.ivBytes + json + BEATS_V1.tagBytes
  return BEATS_V1_PREFIX.length + 4 * Math.ceil(raw / 3)
}

export function encodeBeatsV1(entries: Entries, maxFileBytes = Number.POSITIVE_INFINITY): Buffer {
  // Refused before the payload is built: a file over the readers' limits could never be opened again.
  if (entries.size > MAX_KEYS) throw new EncodeLimitError(`would hold ${entries.size} keys, over the limit of ${MAX_KEYS}`)
  const size = encodedBeatsV1Size(entries)
  if (size > maxFileBytes) throw new EncodeLimitError(`would be ${size} bytes, over the ${maxFileBytes}-byte limit`)
  // No prototype: on a plain object, assigning a key named __proto__ sets the prototype and the key vanishes.
  const payload: Record<string, {value: string}> = Object.create(null)
  for (const [name, entry] of entries) payload[name] = {value: entry.value.toString('base64')}
  const salt = randomBytesOf(BEATS_V1.saltBytes)
  const iv = randomBytesOf(BEATS_V1.ivBytes)
  const sealed = encryptAesGcm(Buffer.from(JSON.stringify(payload)), deriveBeatsKey(EMPTY_PASSWORD, salt), iv)
  return Buffer.concat([BEATS_V1_PREFIX, Buffer.from(Buffer.concat([salt, iv, sealed]).toString('base64'), 'latin1')])
}

function parseBeatsPayload(plaintext: Buffer): Entries {
  const bad = () => new KeystoreError('EFORMAT', 'Beats keystore payload is malformed; restore the file from a backup')
  // {"KEY": {"value": "..."}}: two levels, one object per key plus one.
  if (!jsonDepthWithin(plaintext, 2, MAX_KEYS + 1)) throw bad()
  let parsed: unknown
  try {
    parsed = JSON.parse(plaintext.toString('utf8'))
  } catch {
    throw bad()
  }

  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad()
  const entries: Entries = new Map()
  for (const [name, item] of Object.entries(parsed as Record<string, {value?: unknown}>)) {
    // Go marshals []byte as standard base64 and a nil slice as null.
    const value = item?.value
    if (!isValidKeyName(name) || (typeof value !== 'string' && value !== null) || (typeof value === 'string' && !BASE64.test(value))) throw bad()
    entries.set(name, {created: 0, updated: 0, value: Buffer.from(value ?? '', 'base64')})
  }

  return entries
}
