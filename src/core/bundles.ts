/**
 * Sealed bundles between keystores: this host's recipient (made on first use, kept in the native
 * keystore's metadata), sealing keys to recipients, and importing a bundle under the keystore's lock in
 * one atomic write. The bundle bytes themselves are src/core/format/bundle.ts.
 */
import {randomBytes} from 'node:crypto'
import {constants, promises as fs} from 'node:fs'
import path from 'node:path'

import {readRegularFile, RefusedFileError} from './bounded-read.js'
import {X25519KeyPair} from './crypto.js'
import {assertValidKeyName, MAX_VALUE_BYTES} from './entries.js'
import {KeystoreError} from './errors.js'
import {armorBundle, BundleEntry, MAX_BUNDLE_FILE_BYTES, openBundle, readBundle, SealedBundle, sealBundle} from './format/bundle.js'
import {askPasswordFirst, beatsHasNoHostKey, Keystore, OpenOptions, openKeystore, UpdateOptions, updateKeystore} from './keystore.js'
import {fingerprintOf, formatRecipient, parseRecipient} from './recipient.js'

export interface HostRecipient {
  recipient: string
  fingerprint: string
  /** true when this call made the key pair */
  created: boolean
}

/** This host's recipient; the key pair is made (under the lock, in one atomic write) on first use. */
export async function hostRecipient(file: string, options: UpdateOptions = {}): Promise<HostRecipient> {
  const keystore = await openKeystore(file, options)
  if (keystore.format !== 'native') throw beatsHasNoHostKey(file)
  let pair = keystore.hostKeyPair()
  let created = false
  if (!pair) {
    // Another process may have made it since: ensureHostKey keeps theirs.
    ;[pair, created] = await updateKeystore(file, options, (locked) => {
      const made = locked.ensureHostKey()
      return [locked.hostKeyPair()!, made] as const
    })
  }

  return {created, fingerprint: fingerprintOf(pair.publicKey), recipient: formatRecipient(pair.publicKey)}
}

export interface Sealed {
  /** the bundle, armoured unless `binary` */
  bundle: Buffer
  keys: string[]
  /** the fingerprints of the recipients, deduplicated, in the order given */
  recipients: string[]
}

/** Parses every recipient first: a mistyped one fails before any keystore is opened or password asked. */
export function parseRecipients(recipients: readonly string[]): Uint8Array[] {
  if (recipients.length === 0) throw new KeystoreError('EUSAGE', 'no recipient; give each host\'s recipient with --to ("apm-server keystore recipient" prints it)')
  return recipients.map((text) => parseRecipient(text))
}

/** Seals the given values (from stdin, without a keystore). */
export function sealValues(entries: readonly BundleEntry[], recipients: readonly Uint8Array[], binary = false): Sealed {
  for (const {name, value} of entries) {
    assertValidKeyName(name)
    if (value.length === 0) throw new KeystoreError('EBADVALUE', `empty value for key ${name}; give a non-empty value`)
    if (value.length > MAX_VALUE_BYTES) throw new KeystoreError('EBADVALUE', `the value for key ${name} is ${value.length} bytes, over the ${MAX_VALUE_BYTES}-byte limit for one value; store a smaller value`)
  }

  const sealed = sealBundle(entries, recipients)
  const fingerprints = [...new Set(recipients.map((key) => fingerprintOf(key)))]
  return {bundle: binary ? sealed : armorBundle(sealed), keys: entries.map(({name}) => name), recipients: fingerprints}
}

/** Seals the named keys of the keystore at `file` (all of them when none is named). */
export async function sealFromKeystore(file: string, names: readonly string[], recipients: readonly Uint8Array[], options: OpenOptions & {binary?: boolean} = {}): Promise<Sealed> {
  for (const name of names) assertValidKeyName(name)
  const keystore = await openKeystore(file, options)
  const chosen = names.length > 0 ? [...new Set(names)] : keystore.keys()
  const missing = chosen.filter((name) => !keystore.has(name))
  if (missing.length > 0) throw new KeystoreError('ENOKEY', `key${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not found in ${file}; "apm-server keystore list" shows the keys`)
  if (chosen.length === 0) throw new KeystoreError('ENOKEY', `keystore ${file} holds no keys to seal; add some first`)
  return sealValues(
    chosen.map((name) => ({name, value: keystore.get(name)})),
    recipients,
    options.binary,
  )
}

/** The bundle file at `file`, read with the bounded reader. */
export async function readBundleFile(file: string): Promise<Buffer> {
  try {
    return await readRegularFile(file, MAX_BUNDLE_FILE_BYTES)
  } catch (error) {
    if (error instanceof RefusedFileError) {
      if (error.refusal.reason === 'not-regular') throw new KeystoreError('EUSAGE', `bundle ${file} is ${error.refusal.type}, not a regular file; give the bundle file, or - for stdin`)
      throw new KeystoreError('ELIMITS', `bundle ${file} is over ${MAX_BUNDLE_FILE_BYTES} bytes, larger than any bundle a keystore can hold; it is not a bundle`)
    }

    throw new KeystoreError('EUSAGE', `cannot read bundle ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}; check the path`)
  }
}

/**
 * Writes a bundle to `file`: a new file in the same directory, renamed over the old one, so a reader
 * never sees half a bundle. Not the keystore writer: a bundle is safe to share, so it gets the mode a
 * shell redirection would give (0666 less the umask), not 0600, and no lock.
 */
export async function writeBundleFile(file: string, data: Buffer): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${randomBytes(8).toString('hex')}`)
  try {
    const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666)
    try {
      await handle.writeFile(data)
      await handle.sync()
    } finally {
      await handle.close()
    }

    await fs.rename(temp, file)
  } catch (error) {
    await fs.unlink(temp).catch(() => {})
    throw new KeystoreError('EIO', `cannot write ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}; check the path and its permissions`)
  }
}

export interface Imported {
  added: string[]
  updated: string[]
  /** keys the keystore already held with the same value */
  unchanged: number
}

/**
 * Opens the bundle with this host's key and adds every entry, all or nothing, under the keystore's lock
 * in one atomic write. A key that exists with another value is refused unless `force`; one with the same
 * value is left as it is. `label` names the bundle in messages ("bundle FILE" or "the bundle on stdin").
 * `expires` (ms since the epoch) is given to the keys added or replaced.
 */
export async function importBundle(file: string, data: Buffer, label: string, options: UpdateOptions & {force?: boolean; expires?: number} = {}): Promise<Imported> {
  // Checked before the keystore is opened: a damaged bundle never asks for a password.
  const bundle = withLabel(label, () => readBundle(data))
  await askPasswordFirst(file, options)
  return updateKeystore(file, options, (keystore) => {
    if (keystore.format !== 'native') throw beatsHasNoHostKey(file)
    const pair = keystore.hostKeyPair()
    if (!pair || !bundle.stanzaFor(pair.publicKey)) throw notSealedToThisHost(label, bundle, pair)
    const imported = addEntries(keystore, withLabel(label, () => openBundle(bundle, pair)), options.force ?? false)
    if (options.expires !== undefined) for (const name of [...imported.added, ...imported.updated]) keystore.setExpiry(name, options.expires)
    return imported
  })
}

function addEntries(keystore: Keystore, entries: BundleEntry[], force: boolean): Imported {
  const result: Imported = {added: [], unchanged: 0, updated: []}
  const conflicts = entries.filter(({name, value}) => keystore.has(name) && !keystore.get(name).equals(value)).map(({name}) => name)
  if (conflicts.length > 0 && !force) {
    throw new KeystoreError(
      'EKEYEXISTS',
      `key${conflicts.length > 1 ? 's' : ''} ${describeNames(conflicts)} already exist${conflicts.length > 1 ? '' : 's'} in ${keystore.path} with another value; use --force to replace ${conflicts.length > 1 ? 'them' : 'it'}; nothing was imported`,
    )
  }

  for (const {name, value} of entries) {
    if (!keystore.has(name)) {
      keystore.set(name, value)
      result.added.push(name)
    } else if (keystore.get(name).equals(value)) {
      result.unchanged++
    } else {
      keystore.set(name, value, {overwrite: true})
      result.updated.push(name)
    }
  }

  result.added.sort()
  result.updated.sort()
  return result
}

function notSealedToThisHost(label: string, bundle: SealedBundle, pair: X25519KeyPair | undefined): KeystoreError {
  const hosts = `${bundle.recipients.length} host${bundle.recipients.length === 1 ? '' : 's'} (${describeNames(bundle.recipients)})`
  if (!pair) {
    return new KeystoreError(
      'ENOTRECIPIENT',
      `${label} is sealed to ${hosts}, and this host has no key yet, so it is none of them; run "apm-server keystore recipient" here and have the bundle sealed again to what it prints`,
    )
  }

  return new KeystoreError(
    'ENOTRECIPIENT',
    `${label} is sealed to ${hosts}, not to this host (${fingerprintOf(pair.publicKey)}); have it sealed again to this host's recipient ("apm-server keystore recipient" prints it)`,
  )
}

/** Names a few, counts the rest: a message stays one readable line. */
function describeNames(names: readonly string[]): string {
  return names.length <= 10 ? names.join(', ') : `${names.slice(0, 10).join(', ')} and ${names.length - 10} more`
}

/** Bundle format errors say what is wrong ("is truncated ..."); this names the bundle first. */
function withLabel<T>(label: string, fn: () => T): T {
  try {
    return fn()
  } catch (error) {
    if (error instanceof KeystoreError) throw new KeystoreError(error.code, `${label} ${error.message}`)
    throw error
  }
}
