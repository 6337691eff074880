/**
 * Keystore entries: a secret's bytes and times, the key-name rule, and the size bounds of a value.
 */
import {KeystoreError} from './errors.js'

/** One secret. Values are bytes: nothing is trimmed, split or coerced. */
export interface Entry {
  value: Buffer
  /** milliseconds since the epoch; 0 when the format does not record it (Beats v1) */
  created: number
  updated: number
}

export type Entries = Map<string, Entry>

/**
 * The most keys one keystore may hold. Far above any real use (a fleet's secrets number in the tens), and
 * low enough that a forged file of millions of tiny entries is refused before it is parsed into memory.
 */
export const MAX_KEYS = 100_000

/**
 * The most one value may hold: a quarter of the largest keystore file readers accept (so a few of them
 * still fit), and far above any secret or certificate bundle.
 */
export const MAX_VALUE_BYTES = 64 * 1024 * 1024

export const KEY_NAME_RULE = 'key names are 1 to 255 characters from A-Z a-z 0-9 _ . -'
const KEY_NAME = /^[A-Za-z0-9_.-]{1,255}$/

export function isValidKeyName(name: string): boolean {
  return KEY_NAME.test(name)
}

export function assertValidKeyName(name: string): void {
  if (!isValidKeyName(name)) {
    // The name is user input, not a secret, but may be huge or hold control characters: show it escaped and cut.
    const shown = JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}...` : name)
    throw new KeystoreError('EBADKEY', `invalid key name ${shown}: ${KEY_NAME_RULE}`)
  }
}
