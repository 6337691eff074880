/**
 * A host's recipient: the text form of its X25519 public key, printed by `keystore recipient` and given
 * to `keystore seal --to`. It is "apm-recipient1" followed by the key and a six-character checksum in
 * bech32m (BIP 350): the checksum catches any one to four mistyped characters, a lost or an extra one,
 * and the alphabet has no 1, b, i or o to confuse. Its fingerprint, the first 8 bytes of the key's
 * SHA-256 in hex ("3f2a:9c1b:7e04:55d0"), names a host in messages and in a bundle's header.
 */
import {bech32m} from '@scure/base'

import {isWeakX25519PublicKey, sha256, X25519_KEY_BYTES} from './crypto.js'
import {KeystoreError} from './errors.js'

export const RECIPIENT_PREFIX = 'apm-recipient'
/** Every recipient is this long: the prefix, "1", 52 characters of key and 6 of checksum. */
export const RECIPIENT_LENGTH = RECIPIENT_PREFIX.length + 1 + Math.ceil((X25519_KEY_BYTES * 8) / 5) + 6
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

/**
 * The public key of a recipient text, checked: prefix, alphabet, checksum, length, and not a weak key.
 * Throws EBADRECIPIENT (a usage error) naming the text and what is wrong with it.
 */
export function parseRecipient(text: string): Uint8Array {
  const bad = (why: string) => {
    // A recipient is public, but the text may be anything: escaped and cut.
    const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text)
    return new KeystoreError('EBADRECIPIENT', `recipient ${shown} ${why}; copy it again from "apm-server keystore recipient" on its host`)
  }

  const lower = text.toLowerCase()
  if (!lower.startsWith(`${RECIPIENT_PREFIX}1`)) throw bad(`does not start with ${RECIPIENT_PREFIX}1`)
  if (text !== lower && text !== text.toUpperCase()) throw bad('mixes upper and lower case')
  if (!BECH32_ALPHABET.test(lower.slice(RECIPIENT_PREFIX.length + 1))) throw bad('holds a character recipients never have (only a-z and 0-9, without 1, b, i and o)')
  if (lower.length !== RECIPIENT_LENGTH) throw bad(`is ${text.length} characters long, not ${RECIPIENT_LENGTH}`)
  let bytes: Uint8Array
  try {
    bytes = bech32m.decodeToBytes(lower).bytes
  } catch {
    throw bad('has a checksum that does not match: a character was mistyped, lost or added')
  }

  if (bytes.length !== X25519_KEY_BYTES) throw bad(`holds ${bytes.length} bytes, not a ${X25519_KEY_BYTES}-byte key`)
  if (isWeakX25519PublicKey(bytes)) throw bad('is a weak key (a point of small order) that would let anyone open what is sealed to it')
  return bytes
}
