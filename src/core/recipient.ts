/**
 * A host's recipient: the text form of its X25519 public key, printed by `keystore recipient` and given
 * to `keystore seal --to`. It is "apm-recipient1" followed by the key and a six-character checksum in
 * bech32m (BIP 350): the checksum catches any one to four mistyped characters, a lost or an extra one,
 * and the alphabet has no 1, b, i or o to confuse. Its fingerprint, the first 8 bytes of the key's
 * SHA-256 in hex ("3f2a:9c1b:7e04:55d0"), names a host in messages and in a bundle's header.
 *
 * A host's signer is its Ed25519 public key in the same text form with the prefix "apm-signer": what
 * `keystore recipient` shows beside the recipient, and `keystore import --from` is given to pin the
 * sender of a bundle.
 */
import {bech32m} from '@scure/base'

import {ED25519_PUBLIC_KEY_BYTES, isWeakX25519PublicKey, sha256, X25519_KEY_BYTES} from './crypto.js'
import {KeystoreError} from './errors.js'

export const RECIPIENT_PREFIX = 'apm-recipient'
/** Every recipient is this long: the prefix, "1", 52 characters of key and 6 of checksum. */
export const RECIPIENT_LENGTH = RECIPIENT_PREFIX.length + 1 + Math.ceil((X25519_KEY_BYTES * 8) / 5) + 6
export const SIGNER_PREFIX = 'apm-signer'
/** Every signer is this long: the prefix, "1", 52 characters of key and 6 of checksum. */
export const SIGNER_LENGTH = SIGNER_PREFIX.length + 1 + Math.ceil((ED25519_PUBLIC_KEY_BYTES * 8) / 5) + 6
export const FINGERPRINT_BYTES = 8
const BECH32_ALPHABET = /^[qpzry9x8gf2tvdw0s3jn54khce6mua7l]*$/

/** The recipient text of an X25519 public key. */
export function formatRecipient(publicKey: Uint8Array): string {
  return bech32m.encodeFromBytes(RECIPIENT_PREFIX, publicKey)
}

/** The fingerprint bytes a bundle's header holds for a recipient. */
export function fingerprintBytes(publicKey: Uint8Array): Buffer {
  return sha256(publicKey).subarray(0, FINGERPRINT_BYTES)
}

/** The fingerprint as people read it: "3f2a:9c1b:7e04:55d0". */
export function formatFingerprint(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex').match(/.{4}/g)!.join(':')
}

export function fingerprintOf(publicKey: Uint8Array): string {
  return formatFingerprint(fingerprintBytes(publicKey))
}

/** The signer text of an Ed25519 public key. */
export function formatSigner(publicKey: Uint8Array): string {
  return bech32m.encodeFromBytes(SIGNER_PREFIX, publicKey)
}

/**
 * The public key of a recipient text, checked: prefix, alphabet, checksum, length, and not a weak key.
 * Throws EBADRECIPIENT (a usage error) naming the text and what is wrong with it.
 */
export function parseRecipient(text: string): Uint8Array {
  const bytes = parseKeyText(text, 'recipient', RECIPIENT_PREFIX, RECIPIENT_LENGTH, 'copy it again from "apm-server keystore recipient" on its host')
  if (isWeakX25519PublicKey(bytes)) throw keyTextError(text, 'recipient', 'is a weak key (a point of small order) that would let anyone open what is sealed to it', 'copy it again from "apm-server keystore recipient" on its host')
  return bytes
}

/** The public key of a signer text (for `import --from`), checked as a recipient is; EBADRECIPIENT when wrong. */
export function parseSigner(text: string): Uint8Array {
  return parseKeyText(text, 'signer', SIGNER_PREFIX, SIGNER_LENGTH, 'copy it again from "apm-server keystore recipient" on the sealing host (its "signer" line)')
}

function keyTextError(text: string, kind: string, why: string, fix: string): KeystoreError {
  // A recipient or signer is public, but the text may be anything: escaped and cut.
  const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text)
  return new KeystoreError('EBADRECIPIENT', `${kind} ${shown} ${why}; ${fix}`)
}

function parseKeyText(text: string, kind: string, prefix: string, length: number, fix: string): Uint8Array {
  const bad = (why: string) => keyTextError(text, kind, why, fix)
  const lower = text.toLowerCase()
  if (!lower.startsWith(`${prefix}1`)) throw bad(`does not start with ${prefix}1`)
  if (text !== lower && text !== text.toUpperCase()) throw bad('mixes upper and lower case')
  if (!BECH32_ALPHABET.test(lower.slice(prefix.length + 1))) throw bad(`holds a character ${kind}s never have (only a-z and 0-9, without 1, b, i and o)`)
  if (lower.length !== length) throw bad(`is ${text.length} characters long, not ${length}`)
  let bytes: Uint8Array
  try {
    bytes = bech32m.decodeToBytes(lower).bytes
  } catch {
    throw bad('has a checksum that does not match: a character was mistyped, lost or added')
  }

  if (bytes.length !== 32) throw bad(`holds ${bytes.length} bytes, not a 32-byte key`)
  return bytes
}
