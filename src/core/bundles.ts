/**
 * Sealed bundles between keystores: this host's recipient (made on first use, kept in the native
 * keystore's metadata), sealing keys to recipients, and importing a bundle under the keystore's lock in
 * one atomic write. The bundle bytes themselves are src/core/format/bundle.ts.
 */
import {randomBytes} from 'node:crypto'
import {constants, promises as fs} from 'node:fs'
import path from 'node:path'

import {readRegularFile, RefusedFileError} from './bounded-read.js'
import {Ed25519KeyPair, X25519KeyPair} from './crypto.js'
import {assertValidKeyName, MAX_VALUE_BYTES} from './entries.js'
import {KeystoreError} from './errors.js'
import {armorBundle, BundleEntry, MAX_BUNDLE_FILE_BYTES, OpenedBundle, openBundle, readBundle, SealedBundle, sealBundle} from './format/bundle.js'
import {askPasswordFirst, beatsHasNoHostKey, Keystore, OpenOptions, openKeystore, UpdateOptions, updateKeystore} from './keystore.js'
import {fingerprintOf, formatRecipient, formatSigner, parseRecipient} from './recipient.js'

export interface HostRecipient {
  recipient: string
  fingerprint: string
  /** this host's signer, what hosts taking its bundles pin with import --from */
  signer: string
  /** true when this call made the key pair */
  created: boolean
}

/** This host's recipient; the key pair is made (under the lock, in one atomic write) on first use. */
export async function hostRecipient(file: string, options: UpdateOptions = {}): Promise<HostRecipient> {
  const keystore = await openKeystore(file, options)
  if (keystore.format !== 'native') throw beatsHasNoHostKey(file)
  let pair = keystore.hostKeyPair()
  let signing = keystore.hostSigningKeyPair()
  let created = false
  if (!pair || !signing) {
    // Another process may have made it since: ensureHostKey keeps theirs.
    ;[pair, signing, created] = await updateKeystore(file, options, (locked) => {
      const made = locked.ensureHostKey()
      return [locked.hostKeyPair()!, locked.hostSigningKeyPair()!, made] as const
    })
  }

  return {created, fingerprint: fingerprintOf(pair.publicKey), recipient: formatRecipient(pair.publicKey), signer: formatSigner(signing.publicKey)}
}

export interface Sealed {
  /** the bundle, armoured unless `binary` */
  bundle: Buffer
  keys: string[]
  /** the signer that signed it, or null when it is not signed */
  signer: null | string
  /** the fingerprints of the recipients, deduplicated, in the order given */
  recipients: string[]
}

/** Parses every recipient first: a mistyped one fails before any keystore is opened or password asked. */
export function parseRecipients(recipients: readonly string[]): Uint8Array[] {
  if (recipients.length === 0) throw new KeystoreError('EUSAGE', 'no recipient; give each host\'s recipient with --to ("apm-server keystore recipient" prints it)')
  return recipients.map((text) => parseRecipient(text))
}

/** Seals the given values (from stdin), signed with `signer` when given. */
export function sealValues(entries: readonly BundleEntry[], recipients: readonly Uint8Array[], options: {binary?: boolean; signer?: Ed25519KeyPair} = {}): Sealed {
  for (const {name, value} of entries) {
    assertValidKeyName(name)
    if (value.length === 0) throw new KeystoreError('EBADVALUE', `empty value for key ${name}; give a non-empty value`)
    if (value.length > MAX_VALUE_BYTES) throw new KeystoreError('EBADVALUE', `the value for key ${name} is ${value.length} bytes, over the ${MAX_VALUE_BYTES}-byte limit for one value; store a smaller value`)
  }

  const sealed = sealBundle(entries, recipients, {created: Date.now(), signer: options.signer})
  const fingerprints = [...new Set(recipients.map((key) => fingerprintOf(key)))]
  return {
    bundle: options.binary ? sealed : armorBundle(sealed),
    keys: entries.map(({name}) => name),
    recipients: fingerprints,
    signer: options.signer ? formatSigner(options.signer.publicKey) : null,
  }
}

/**
 * Seals the named keys of the keystore at `file` (all of them when none is named), signed with its
 * signing key when it has a host key (a Beats v1 keystore, or one that never made its recipient, cannot
 * sign: the bundle says it is not signed).
 */
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
    {binary: options.binary, signer: keystore.format === 'native' ? keystore.hostSigningKeyPair() : undefined},
  )
}

/** The signing key pair of the keystore at `file`, for `seal --stdin --sign-with`: it must have a host key. */
export async function signingKeyOf(file: string, options: OpenOptions = {}): Promise<Ed25519KeyPair> {
  const keystore = await openKeystore(file, options)
  const pair = keystore.format === 'native' ? keystore.hostSigningKeyPair() : undefined
  if (!pair) {
    throw new KeystoreError('EUSAGE', `keystore ${file} has no signing key yet; run "apm-server keystore recipient" on it once (it makes the host key and prints the signer), then seal again`)
  }

  return pair
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
  /** the signer whose signature the bundle carries (verified), or null when it is not signed */
  signer: null | string
  /** when it was sealed, ISO 8601, or null for a version 1 bundle (it carries no time) */
  created: null | string
}

/**
 * How far ahead of this host's clock a bundle's sealing time may be: clocks kept by NTP differ by far
 * less, and a bundle stamped further ahead would stay "newer" than every later import for that long.
 */
export const BUNDLE_CLOCK_SKEW_MS = 5 * 60_000

export interface ImportOptions extends UpdateOptions {
  /** replace keys that exist with another value */
  force?: boolean
  /** when the keys added or replaced expire, ms since the epoch */
  expires?: number
  /** the signers' public keys, one of which must have signed the bundle; none given: any sender, or none */
  from?: readonly Uint8Array[]
  /** with `force`, replace values with those of a bundle sealed before they were last changed here */
  allowOlder?: boolean
}

/**
 * Opens the bundle with this host's key and adds every entry, all or nothing, under the keystore's lock
 * in one atomic write. A key that exists with another value is refused unless `force`, and then also
 * when the bundle was sealed before that value was last changed here (a replayed old bundle) unless
 * `allowOlder`; one with the same value is left as it is. With `from`, a bundle not signed by one of
 * those signers is refused (ESIGNER). `label` names the bundle in messages ("bundle FILE" or "the
 * bundle on stdin"). `expires` (ms since the epoch) is given to the keys added or replaced.
 */
export async function importBundle(file: string, data: Buffer, label: string, options: ImportOptions = {}): Promise<Imported> {
  // Checked before the keystore is opened: a damaged bundle never asks for a password.
  const bundle = withLabel(label, () => readBundle(data))
  await askPasswordFirst(file, options)
  return updateKeystore(file, options, (keystore) => {
    if (keystore.format !== 'native') throw beatsHasNoHostKey(file)
    const pair = keystore.hostKeyPair()
    if (!pair || !bundle.stanzaFor(pair.publicKey)) throw notSealedToThisHost(label, bundle, pair)
    const opened = withLabel(label, () => openBundle(bundle, pair))
    checkSigner(label, opened, options.from ?? [])
    checkClock(label, opened.created)
    const imported = addEntries(keystore, opened, label, options)
    if (options.expires !== undefined) for (const name of [...imported.added, ...imported.updated]) keystore.setExpiry(name, options.expires)
    return {
      ...imported,
      created: opened.created === undefined ? null : new Date(opened.created).toISOString(),
      signer: opened.signer ? formatSigner(opened.signer) : null,
    }
  })
}

/** With --from: the bundle must carry a verified signature by one of the signers named. */
function checkSigner(label: string, opened: OpenedBundle, from: readonly Uint8Array[]): void {
  if (from.length === 0) return
  const wanted = from.map((key) => formatSigner(key))
  if (!opened.signer) {
    throw new KeystoreError(
      'ESIGNER',
      `${label} is not signed, so anyone who knows this host's recipient could have made it, and --from asks for a bundle signed by ${describeNames(wanted)}; have it sealed with "apm-server keystore seal" from the sender's keystore (or seal --stdin --sign-with KEYSTORE); nothing was imported`,
    )
  }

  const found = formatSigner(opened.signer)
  if (!wanted.includes(found)) {
    throw new KeystoreError(
      'ESIGNER',
      `${label} is signed by ${found}, not by ${wanted.length === 1 ? wanted[0] : `one of ${describeNames(wanted)}`} (--from); check who sealed it, and add --from ${found} only if that sender is trusted; nothing was imported`,
    )
  }
}

/** A bundle sealed in the future (by this host's clock) says one of the two clocks is wrong. */
function checkClock(label: string, created: number | undefined): void {
  const now = Date.now()
  if (created === undefined || created - now <= BUNDLE_CLOCK_SKEW_MS) return
  const ahead = Math.round((created - now) / 1000)
  throw new KeystoreError(
    'ECLOCK',
    `${label} was sealed at ${new Date(created).toISOString()}, ${ahead} s ahead of this host's clock (${new Date(now).toISOString()}), more than the ${BUNDLE_CLOCK_SKEW_MS / 60_000} minutes allowed: the sealing host's clock runs ahead, or this one's behind; correct the clock that is wrong (NTP), then seal the bundle again; nothing was imported`,
  )
}

function addEntries(keystore: Keystore, opened: OpenedBundle, label: string, options: ImportOptions): Omit<Imported, 'created' | 'signer'> {
  const result = {added: [] as string[], unchanged: 0, updated: [] as string[]}
  const {created, entries} = opened
  const conflicts = entries.filter(({name, value}) => keystore.has(name) && !keystore.get(name).equals(value)).map(({name}) => name)
  if (conflicts.length > 0 && !options.force) {
    throw new KeystoreError(
      'EKEYEXISTS',
      `key${conflicts.length > 1 ? 's' : ''} ${describeNames(conflicts)} already exist${conflicts.length > 1 ? '' : 's'} in ${keystore.path} with another value; use --force to replace ${conflicts.length > 1 ? 'them' : 'it'}; nothing was imported`,
    )
  }

  // A replayed old bundle would roll a rotated value back: a value is replaced only by a bundle sealed
  // after it last changed (a change made after an import is recorded later than the bundle it imported).
  const stale = options.allowOlder ? [] : conflicts.filter((name) => created === undefined || created <= keystore.describe(name).updated)
  if (stale.length > 0) throw staleBundle(label, keystore, stale, created)
  // A signed bundle's value is recorded as changed no earlier than it was sealed, so the next bundle from
  // that sealer is judged by the sealer's own clock, not against this host's (break-new2 3: a sealer
  // minutes ahead let a replay of its older bundle look newer than the value its newer one set here).
  const notBefore = opened.signer ? created : undefined
  for (const {name, value} of entries) {
    if (!keystore.has(name)) {
      keystore.set(name, value, {notBefore})
      result.added.push(name)
    } else if (keystore.get(name).equals(value)) {
      result.unchanged++
    } else {
      keystore.set(name, value, {notBefore, overwrite: true})
      result.updated.push(name)
    }
  }

  result.added.sort()
  result.updated.sort()
  return result
}

function staleBundle(label: string, keystore: Keystore, stale: readonly string[], created: number | undefined): KeystoreError {
  const keys = `key${stale.length > 1 ? 's' : ''} ${describeNames(stale)}`
  const them = stale.length > 1 ? 'them' : 'it'
  if (created === undefined) {
    return new KeystoreError(
      'ESTALE',
      `${label} is a version 1 bundle, which carries no time, so it cannot show it is newer than ${keys} in ${keystore.path}; have it sealed again with this apm-server, or use --allow-older to replace ${them} anyway; nothing was imported`,
    )
  }

  const changed = new Date(keystore.describe(stale[0]).updated).toISOString()
  return new KeystoreError(
    'ESTALE',
    `${label} was sealed at ${new Date(created).toISOString()}, before ${keys} ${stale.length > 1 ? 'were' : 'was'} last changed in ${keystore.path} (${changed}): an old bundle replayed would roll ${them} back; have it sealed again, or use --allow-older to restore the older value${stale.length > 1 ? 's' : ''}; nothing was imported`,
  )
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
