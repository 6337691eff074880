/**
 * The keystore: entries held in memory, read from and written to one file in one of two formats.
 *
 * Reading is `openKeystore`. Every change goes through `updateKeystore`, which holds the cross-process
 * lock from the read to the atomic write, so concurrent writers never lose each other's changes, and
 * writes only when something changed.
 */
import {readFileHead, RefusedFileError} from './bounded-read.js'
import {AuditRequest, AuditSession} from './audit.js'
import {Argon2Params, DEFAULT_ARGON2, Ed25519KeyPair, generateX25519KeyPair, signingKeyPairOf, X25519KeyPair, x25519KeyPairOf} from './crypto.js'
import {assertValidKeyName, Entries, Entry, MAX_KEYS, MAX_VALUE_BYTES} from './entries.js'
import {EncodeLimitError, KeystoreError} from './errors.js'
import {decodeBeatsV1, encodeBeatsV1, looksBeatsV1} from './format/beats-v1.js'
import {
  AuditAnchor,
  checkArgon2Limits,
  encodeNative,
  EntryOrStored,
  looksNative,
  NATIVE_VERSION,
  NativeContents,
  NativeKdf,
  NativeMeta,
  NativeVersion,
  openNative,
  readNativeHeader,
  StoredValues,
} from './format/native.js'
import {KeystoreLock, MAX_KEYSTORE_BYTES, readKeystoreFile, ReadOptions, withKeystoreLock, writeKeystoreFile} from './keystore-file.js'

export type KeystoreFormat = 'beats-v1' | 'native'
export const KEYSTORE_FORMATS: readonly KeystoreFormat[] = ['native', 'beats-v1']

/** Supplies the keystore password; called only when a file turns out to be protected. */
export type PasswordSource = () => Promise<Buffer>

export interface OpenOptions extends ReadOptions {
  password?: PasswordSource
  /**
   * Called with the path when the keystore read has no password (native without one, or Beats v1). A
   * caller that was given a password warns here, or refuses by throwing: a keystore swapped for one
   * without a password must not be used without a word.
   */
  onUnprotected?: (file: string) => void
  /** how long to wait for another writer's lock, in ms */
  lockTimeoutMs?: number
}

export interface NewKeystoreSpec {
  format: KeystoreFormat
  /** protect the new keystore with this password (native only) */
  password?: Buffer
  /** argon2id cost for a new password; defaults to {@link DEFAULT_ARGON2}. Lower it only in tests. */
  kdfParams?: Argon2Params
}

export class Keystore {
  private dirty = false
  /** names set, removed or given an expiry since the file was read, in order: what an audit line names */
  private readonly touched = new Set<string>()
  /** the values box of the file read, once decrypted */
  private storedValues?: StoredValues

  private constructor(
    readonly path: string,
    private currentFormat: KeystoreFormat,
    /** an entry, or (native files) its position in the file read, for entries not read or changed since */
    private readonly entries: Map<string, EntryOrStored>,
    private kdf: NativeKdf,
    private password: Buffer | undefined,
    /** the native version to write: the file's, until metadata or `upgrade` needs the current one */
    private nativeVersion: NativeVersion,
    /** the native metadata (the host key); always empty for Beats v1 */
    private readonly meta: NativeMeta,
    /** decrypts the values box of the file read (native files decrypt names first: `list` never needs values) */
    private readonly readStoredValues?: () => StoredValues,
  ) {}

  /** @internal */
  static fromParts(file: string, format: KeystoreFormat, entries: Entries, kdf: NativeKdf, password?: Buffer): Keystore {
    return new Keystore(file, format, entries, kdf, password, NATIVE_VERSION, {})
  }

  /** @internal */
  static fromNative(file: string, contents: NativeContents, password?: Buffer): Keystore {
    return new Keystore(file, 'native', contents.positions, contents.kdf, password, contents.version, {...contents.meta}, () => contents.readValues())
  }

  /** The values box of the file read, decrypted on first use. */
  private stored(): StoredValues {
    if (!this.storedValues) {
      try {
        this.storedValues = this.readStoredValues!()
      } catch (error) {
        // Values are decrypted on first use, outside decode(): name the file here too.
        throw namePath(this.path, error)
      }
    }

    return this.storedValues
  }

  /** The entry of a name that exists. */
  private entry(name: string): Entry {
    const entry = this.entries.get(name)!
    return typeof entry === 'number' ? this.stored().entry(entry) : entry
  }

  get format(): KeystoreFormat {
    return this.currentFormat
  }

  get passwordProtected(): boolean {
    return this.kdf.type !== 'none'
  }

  get changed(): boolean {
    return this.dirty
  }

  /** Key names, sorted. */
  keys(): string[] {
    return [...this.entries.keys()].sort()
  }

  has(name: string): boolean {
    return this.entries.has(name)
  }

  /** The stored bytes of `name`. */
  get(name: string): Buffer {
    if (!this.entries.has(name)) throw missingKey(name, this.path)
    return this.entry(name).value
  }

  /** Metadata of an entry, without its value. */
  describe(name: string): Omit<Entry, 'value'> {
    if (!this.entries.has(name)) throw missingKey(name, this.path)
    const {created, updated} = this.entry(name)
    return {created, updated}
  }

  /** When the entry's value expires (ms since the epoch), or undefined when it does not. */
  expiry(name: string): number | undefined {
    if (!this.entries.has(name)) throw missingKey(name, this.path)
    return this.meta.expires?.get(name)
  }

  /**
   * Sets when the entry's value expires (undefined: never). Native only: Beats v1 has nowhere to keep it
   * that the Go apm-server would not read as a secret.
   */
  setExpiry(name: string, at: number | undefined): void {
    if (!this.entries.has(name)) throw missingKey(name, this.path)
    if (at === undefined) {
      if (!this.meta.expires?.delete(name)) return
    } else {
      if (this.currentFormat !== 'native') throw beatsHasNoExpiry(this.path)
      if (!Number.isSafeInteger(at) || at <= 0) throw new TypeError('setExpiry: a whole number of ms since the epoch')
      this.meta.expires ??= new Map()
      this.meta.expires.set(name, at)
      this.nativeVersion = NATIVE_VERSION
    }

    this.touched.add(name)
    this.dirty = true
  }

  /** The names set, removed or given an expiry since the keystore was read, in that order. */
  changedNames(): string[] {
    return [...this.touched]
  }

  /** Where the audit trail ended at the last audited write (native only). */
  get auditAnchor(): AuditAnchor | undefined {
    return this.meta.audit
  }

  /**
   * Records where the audit trail ends once this write's line is appended (written with the keystore).
   * Beats v1 has no place for it: its trail is chained but anchored nowhere.
   */
  setAuditAnchor(anchor: AuditAnchor | undefined): void {
    if (this.currentFormat !== 'native') return
    if (anchor === undefined) {
      delete this.meta.audit
      return
    }

    this.meta.audit = {...anchor}
    this.nativeVersion = NATIVE_VERSION
  }

  /**
   * Stores `value` under `name`. Refuses to replace an existing key unless `overwrite`. The update time
   * recorded is the latest of now, `notBefore` (ms since the epoch: a signed bundle's sealing time) and
   * just after the one already recorded: a later change is always recorded as later, so a replayed
   * bundle cannot look as new as it when a clock (this host's, or the sealer's) was off.
   */
  set(name: string, value: Buffer, options: {overwrite?: boolean; notBefore?: number} = {}): 'added' | 'updated' {
    assertValidKeyName(name)
    if (value.length === 0) throw new KeystoreError('EBADVALUE', `empty value for key ${name}; give a non-empty value`)
    if (value.length > MAX_VALUE_BYTES) {
      throw new KeystoreError('EBADVALUE', `the value for key ${name} is ${value.length} bytes, over the ${MAX_VALUE_BYTES}-byte limit for one value; store a smaller value`)
    }

    const existing = this.entries.has(name) ? this.entry(name) : undefined
    if (existing && !options.overwrite) throw new KeystoreError('EKEYEXISTS', `key ${name} already exists in ${this.path}; use --force to overwrite it`)
    if (!existing && this.entries.size >= MAX_KEYS) {
      throw new KeystoreError('ELIMITS', `keystore ${this.path} already holds ${MAX_KEYS} keys, the most it may hold; remove keys first`)
    }
    const now = Date.now()
    const updated = Math.max(now, options.notBefore ?? now, existing ? existing.updated + 1 : now)
    this.entries.set(name, {created: existing?.created ?? now, updated, value: Buffer.from(value)})
    // An expiry belongs to a value: a new value has none until it is given one.
    this.meta.expires?.delete(name)
    this.touched.add(name)
    this.dirty = true
    return existing ? 'updated' : 'added'
  }

  /** Removes every name, or none of them when any is missing. */
  remove(names: readonly string[]): void {
    for (const name of names) assertValidKeyName(name)
    const missing = names.filter((name) => !this.entries.has(name))
    if (missing.length > 0) {
      throw new KeystoreError('ENOKEY', `key${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not found in ${this.path}; nothing was removed`)
    }

    for (const name of names) {
      this.entries.delete(name)
      this.meta.expires?.delete(name)
      this.touched.add(name)
    }

    if (names.length > 0) this.dirty = true
  }

  /** Sets, changes or (with undefined) removes the password. Native format only. */
  setPassword(password: Buffer | undefined, kdfParams: Argon2Params = DEFAULT_ARGON2): void {
    if (this.currentFormat !== 'native') {
      throw new KeystoreError('EUNSUPPORTED', `keystore ${this.path} is in Beats v1 format, which cannot hold a password; run "apm-server keystore upgrade" first`)
    }

    if (password === undefined) {
      this.kdf = {type: 'none'}
      this.password = undefined
    } else {
      if (password.length === 0) throw new KeystoreError('EPASSWORD', 'the new password is empty; give a non-empty password, or use --remove to remove it')
      checkArgon2Limits(kdfParams)
      this.kdf = {params: {...kdfParams}, type: 'argon2id'}
      this.password = Buffer.from(password)
    }

    this.dirty = true
  }

  /** Rewrites in another format (native: its current version) on the next save. */
  convertTo(format: KeystoreFormat): void {
    if (format === 'beats-v1' && this.passwordProtected) {
      throw new KeystoreError('EUNSUPPORTED', 'a password-protected keystore cannot be written in Beats v1 format; remove the password first')
    }

    if (format === 'beats-v1' && this.meta.hostKey) {
      throw new KeystoreError('EUNSUPPORTED', `keystore ${this.path} holds this host's key for sealed bundles, which Beats v1 cannot hold; keep it native`)
    }

    if (format === 'beats-v1' && this.meta.expires?.size) throw beatsHasNoExpiry(this.path)

    this.currentFormat = format
    if (format === 'native') this.nativeVersion = NATIVE_VERSION
    this.dirty = true
  }

  /**
   * This host's X25519 key pair for sealed bundles, or undefined when it has none yet. The secret key is
   * the keystore's metadata: never an entry, never listed, kept with the keystore's own protection.
   */
  hostKeyPair(): X25519KeyPair | undefined {
    return this.meta.hostKey ? x25519KeyPairOf(this.meta.hostKey) : undefined
  }

  /**
   * This host's Ed25519 signing key pair for the bundles it seals, derived from its host key (see
   * crypto.ts signingKeyPairOf), or undefined when it has none yet.
   */
  hostSigningKeyPair(): Ed25519KeyPair | undefined {
    return this.meta.hostKey ? signingKeyPairOf(this.meta.hostKey) : undefined
  }

  /** Makes this host's key pair when there is none (written on the next save); true when it made one. */
  ensureHostKey(): boolean {
    if (this.currentFormat !== 'native') throw beatsHasNoHostKey(this.path)
    if (this.meta.hostKey) return false
    this.meta.hostKey = Buffer.from(generateX25519KeyPair().secretKey)
    this.nativeVersion = NATIVE_VERSION
    this.dirty = true
    return true
  }

  /** Marks the keystore to be written even when nothing changed (fresh salt and nonce). */
  touch(): void {
    this.dirty = true
  }

  /**
   * The file's bytes. Refuses (ELIMITS) a keystore that the readers would refuse, before it is built:
   * written, it would put every secret in it out of reach.
   * @internal
   */
  async encode(): Promise<Buffer> {
    // The values of the file read are decrypted and checked before any rewrite, even when none is kept.
    const stored = this.readStoredValues ? this.stored() : undefined
    try {
      if (this.currentFormat === 'native') {
        return await encodeNative(this.entries, this.kdf, this.password, stored, MAX_KEYSTORE_BYTES, {meta: this.meta, version: this.nativeVersion})
      }

      const entries: Entries = new Map()
      for (const name of this.entries.keys()) entries.set(name, this.entry(name))
      return encodeBeatsV1(entries, MAX_KEYSTORE_BYTES)
    } catch (error) {
      if (!(error instanceof EncodeLimitError)) throw error
      throw new KeystoreError(
        'ELIMITS',
        `keystore ${this.path} ${error.message}, and could then not be read again; nothing was written: remove keys, or keep large values outside the keystore`,
      )
    }
  }
}

/** The refusal for `recipient` and `import` on a Beats v1 keystore. */
export function beatsHasNoHostKey(file: string): KeystoreError {
  return new KeystoreError(
    'EUNSUPPORTED',
    `keystore ${file} is in Beats v1 format, which cannot hold this host's key for sealed bundles; run "apm-server keystore upgrade" first (the Go apm-server can then no longer read it), or fill it with "apm-server keystore sync"`,
  )
}

/** The refusal of an expiry on a Beats v1 keystore. */
export function beatsHasNoExpiry(file: string): KeystoreError {
  return new KeystoreError(
    'EUNSUPPORTED',
    `keystore ${file} is in Beats v1 format, which cannot hold an expiry; run "apm-server keystore upgrade" first (the Go apm-server can then no longer read it), or leave out --expires`,
  )
}

function missingKey(name: string, file: string): KeystoreError {
  return new KeystoreError('ENOKEY', `key ${name} not found in ${file}; "apm-server keystore list" shows the keys`)
}

function noKeystore(file: string): KeystoreError {
  return new KeystoreError('ENOKEYSTORE', `no keystore at ${file}; create one with "apm-server keystore create"`)
}

export interface KeystoreInfo {
  format: KeystoreFormat
  passwordProtected: boolean
}

/** Format and protection of the file, from its header alone (no KDF, no password). */
export function inspectKeystoreData(data: Buffer): KeystoreInfo {
  if (looksNative(data)) return {format: 'native', passwordProtected: readNativeHeader(data).kdf.type !== 'none'}
  if (looksBeatsV1(data)) return {format: 'beats-v1', passwordProtected: false}
  throw new KeystoreError('EFORMAT', 'not a keystore file (unknown format)')
}

/** Format and protection of the keystore at `file`, or undefined when there is none. */
export async function inspectKeystore(file: string, options: ReadOptions = {}): Promise<KeystoreInfo | undefined> {
  const data = await readKeystoreFile(file, options)
  return data === undefined ? undefined : withPath(file, () => inspectKeystoreData(data))
}

async function decode(file: string, data: Buffer, options: OpenOptions): Promise<Keystore> {
  return withPathAsync(file, async () => {
    // onUnprotected only for a keystore that opens: a damaged one gets its one error, nothing more.
    if (looksBeatsV1(data)) {
      const entries = decodeBeatsV1(data)
      options.onUnprotected?.(file)
      return Keystore.fromParts(file, 'beats-v1', entries, {type: 'none'})
    }

    let password: Buffer | undefined
    const contents = await openNative(data, async () => {
      if (!options.password) throw new KeystoreError('ENOPASSWORD', `keystore ${file} is password protected; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE`)
      password = await options.password()
      return password
    })
    if (contents.kdf.type === 'none') options.onUnprotected?.(file)
    return Keystore.fromNative(file, contents, password)
  })
}

/**
 * Asks the password source now when the keystore at `file` is protected: callers that read their input
 * first and then take the lock call it in between, so a person typing a password never holds the lock.
 * The source is expected to remember its answer (the CLI's does).
 */
export async function askPasswordFirst(file: string, options: OpenOptions): Promise<void> {
  if (options.password && (await inspectKeystore(file, options))?.passwordProtected) await options.password()
}

/** Opens the keystore for reading. */
export async function openKeystore(file: string, options: OpenOptions = {}): Promise<Keystore> {
  const data = await readKeystoreFile(file, options)
  if (data === undefined) throw noKeystore(file)
  return decode(file, data, options)
}

/** A new, empty keystore in memory; nothing is written until {@link saveKeystore} or {@link updateKeystore}. */
export function newKeystore(file: string, spec: NewKeystoreSpec): Keystore {
  const keystore = Keystore.fromParts(file, spec.format, new Map(), {type: 'none'})
  if (spec.password) {
    if (spec.format !== 'native') {
      throw new KeystoreError('EUNSUPPORTED', 'Beats v1 keystores cannot have a password (the Go apm-server always opens them with an empty one); use --format native')
    }

    keystore.setPassword(spec.password, spec.kdfParams)
  }

  keystore.touch()
  return keystore
}

export interface UpdateOptions extends OpenOptions {
  /** when there is no keystore: create this one instead of failing */
  createIfMissing?: NewKeystoreSpec
  /** record the change (or its refusal) in the audit trail beside the keystore (src/core/audit.ts) */
  audit?: AuditRequest
}

/**
 * Locks the keystore, reads it, lets `change` modify it in memory, and writes it back atomically if
 * anything changed. Nothing is written if `change` throws. With `audit`, the change is appended to the
 * audit trail first (a refusal too, once the lock is held), and the keystore records the trail's end.
 */
export async function updateKeystore<T>(file: string, options: UpdateOptions, change: (keystore: Keystore) => Promise<T> | T): Promise<T> {
  return withKeystoreLock(
    file,
    async (lock) => {
      const data = await readKeystoreFile(file, options)
      const audit = options.audit && new AuditSession(file, options.audit, options.strictPerms)
      let keystore: Keystore | undefined
      try {
        if (data !== undefined) keystore = await decode(file, data, options)
        else if (options.createIfMissing) keystore = newKeystore(file, options.createIfMissing)
        else throw noKeystore(file)
        const result = await change(keystore)
        if (keystore.changed) await writeChange(keystore, lock, options, audit)
        return result
      } catch (error) {
        if (audit && data !== undefined) await audit.recordRefusal(error, keystore, lock)
        throw error
      } finally {
        await audit?.close()
      }
    },
    {strictPerms: options.strictPerms, timeoutMs: options.lockTimeoutMs},
  )
}

/** The audit line (when audited), then the keystore: see src/core/audit.ts for why in this order. */
async function writeChange(keystore: Keystore, lock: KeystoreLock, options: ReadOptions, audit: AuditSession | undefined): Promise<void> {
  await audit?.prepare(keystore)
  const data = await keystore.encode()
  await audit?.commit(lock)
  await writeKeystoreFile(keystore.path, data, {beforeReplace: lock.verify, strictPerms: options.strictPerms, target: lock.target})
}

/**
 * Creates an empty keystore. An existing keystore is an error unless `overwrite`; anything else at the
 * path (see {@link whatIsAt}) is never replaced.
 */
export async function createKeystore(
  file: string,
  spec: NewKeystoreSpec & {overwrite?: boolean; lockTimeoutMs?: number; strictPerms?: boolean; audit?: AuditRequest},
): Promise<Keystore> {
  const keystore = newKeystore(file, spec)
  // Built before the lock when there is no trail to anchor: a slow KDF then holds no other writer up.
  const early = spec.audit ? undefined : await keystore.encode()
  await withKeystoreLock(
    file,
    async (lock) => {
      const existing = await whatIsAt(lock.target)
      if (existing !== 'nothing' && !spec.overwrite) throw new KeystoreError('EEXISTS', `keystore ${file} already exists; use --force to overwrite it`)
      if (existing !== 'nothing' && existing !== 'keystore') {
        throw new KeystoreError(
          'EFORMAT',
          `${file} is not a keystore (${existing}) and create replaces only keystores; check keystore.path and --path.data, or move it away first`,
        )
      }

      if (early) {
        await writeKeystoreFile(file, early, {beforeReplace: lock.verify, strictPerms: spec.strictPerms, target: lock.target})
        return
      }

      const audit = new AuditSession(file, spec.audit!, spec.strictPerms)
      try {
        await writeChange(keystore, lock, spec, audit)
      } finally {
        await audit.close()
      }
    },
    {strictPerms: spec.strictPerms, timeoutMs: spec.lockTimeoutMs},
  )
  return keystore
}

/** Enough of a file to tell either format by its first bytes. */
const HEAD_BYTES = 16

/**
 * What `create` would replace: nothing, a keystore (native or Beats v1 by its first bytes; damaged or
 * unreadable further on, it may still be replaced), or, in words, something else. `--force` replaced any
 * file before, so a wrong or planted keystore.path made root replace a file of someone's choice; a file
 * that does not start like a keystore was never written by a keystore tool, and removing it first is one
 * deliberate command.
 */
async function whatIsAt(target: string): Promise<string> {
  try {
    const head = await readFileHead(target, HEAD_BYTES)
    if (looksNative(head) || looksBeatsV1(head)) return 'keystore'
    return head.length === 0 ? 'it is empty' : 'it does not start like a native or Beats v1 keystore'
  } catch (error) {
    // readFileHead refuses only what is not a regular file.
    if (error instanceof RefusedFileError && error.refusal.reason === 'not-regular') return `it is ${error.refusal.type}`
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return 'nothing'
    throw new KeystoreError('EIO', `cannot read ${target}: ${code}; check the path and its permissions`, {cause: error})
  }
}

// Errors from format modules do not know the path; add it so every message names the file.
function withPath<T>(file: string, fn: () => T): T {
  try {
    return fn()
  } catch (error) {
    throw namePath(file, error)
  }
}

async function withPathAsync<T>(file: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (error) {
    throw namePath(file, error)
  }
}

function namePath(file: string, error: unknown): unknown {
  if (error instanceof KeystoreError && !error.message.includes(file) && error.code !== 'ENOPASSWORD' && error.code !== 'ECANCELED') {
    return new KeystoreError(error.code, `${file}: ${error.message}`, {cause: error.cause})
  }

  return error
}
