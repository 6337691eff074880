/**
 * The sealed bundle format, version 2: keystore entries readable only by the hosts they were sealed to,
 * signed by the keystore that sealed them.
 *
 *   offset   size   field
 *   0        8      magic "APMBUNDL"
 *   8        1      version (2; 1 is still read)
 *   9        2      recipient count R (u16 BE, 1..MAX_RECIPIENTS)
 *   11       88 R   per recipient: fingerprint (8: SHA-256 of its public key), then the file key sealed to
 *                   it (80: an ephemeral X25519 public key, and a tweetnacl box of the 32-byte file key)
 *   11+88R   24     payload nonce
 *   35+88R   4      payload length P (u32 BE): exactly the bytes that follow
 *   39+88R   P      payload: secretbox of the plaintext under HMAC-SHA512(file key, purpose | bytes 0..39+88R)
 *
 *   plaintext (version 2): signed (u8: 1 signed, 0 not), created (u64 BE, ms since the epoch), signer
 *     (32: its Ed25519 public key, zeros when not signed), signature (64, zeros when not signed), entries
 *   plaintext (version 1): entries
 *   entries: count (u32 BE), then per entry: name length (u8), name, value length (u32 BE), value
 *
 * As age does: a random file key per bundle, sealed to each recipient from a fresh ephemeral key, and the
 * entries under the file key. The payload key is bound to every header byte, so a changed recipient list,
 * count or length fails the payload, and the header needs no MAC of its own. Key names, values and their
 * number are all inside the payload; only the recipients' fingerprints (public) and the total size show.
 *
 * Age's sealing is anonymous: anyone who knows a recipient (public by design) can seal to it. Version 2
 * adds who sealed it: an Ed25519 signature by the sealing keystore's signing key (crypto.ts) over
 * SHA-512(purpose | the whole header | the plaintext but the signature), so it covers every recipient's
 * stanza (a recipient cannot re-seal it to another host under the sender's name), the creation time
 * (what `import` judges a replay by) and the entries. It sits inside the payload: encrypted (observers
 * do not learn the sender) and authenticated by the secretbox (it cannot be removed or changed without
 * the payload failing). An unsigned bundle (`seal --stdin` without a signing keystore, and every version
 * 1 bundle) says so, and `import` treats it as made by anyone.
 *
 * ASCII armour (the default): the binary bundle in base64, 64 characters a line, between BEGIN and END
 * lines, ending in one newline. Both forms are read strictly: every size is checked against its cap and
 * every malformed byte refused with a precise error before any decryption; after that, one vague error
 * for all failures, so a bundle gives no oracle (a signature that does not verify, only a holder of the
 * file key can make, is named as such).
 */
import {
  bindKey,
  ED25519_PUBLIC_KEY_BYTES,
  ED25519_SIGNATURE_BYTES,
  Ed25519KeyPair,
  openSealedWithKeyPair,
  openSecretbox,
  randomBytesOf,
  SEALED_OVERHEAD_BYTES,
  SECRETBOX_KEY_BYTES,
  SECRETBOX_NONCE_BYTES,
  SECRETBOX_OVERHEAD_BYTES,
  sealSecretbox,
  sealToPublicKey,
  sha512Of,
  signDetached,
  verifyDetached,
  X25519KeyPair,
} from '../crypto.js'
import {isValidKeyName, MAX_KEYS, MAX_VALUE_BYTES} from '../entries.js'
import {KeystoreError} from '../errors.js'
import {MAX_KEYSTORE_BYTES} from '../keystore-file.js'
import {FINGERPRINT_BYTES, fingerprintBytes, formatFingerprint, formatSigner} from '../recipient.js'

export const BUNDLE_MAGIC = Buffer.from('APMBUNDL', 'latin1')
export const BUNDLE_VERSION = 2
/** Version 1 bundles (unsigned, undated) are still opened. */
const READABLE_VERSIONS: ReadonlySet<number> = new Set([1, BUNDLE_VERSION])
/**
 * The most hosts one bundle is sealed to: each costs two X25519 operations (about 3 ms in tweetnacl) to
 * seal, so 1,000 seal in seconds; a larger fleet is sealed in several bundles.
 */
export const MAX_RECIPIENTS = 1000
/** The entries of a bundle may hold no more bytes than a keystore file may: what cannot fit is refused unread. */
export const MAX_PAYLOAD_BYTES = MAX_KEYSTORE_BYTES
const FIXED_BYTES = 11
const STANZA_BYTES = FINGERPRINT_BYTES + SEALED_OVERHEAD_BYTES + SECRETBOX_KEY_BYTES
const LENGTH_BYTES = 4
const PAYLOAD_PURPOSE = 'apm-server bundle payload'
const SIGNATURE_PURPOSE = 'apm-server bundle signature v2\0'
/** The version 2 plaintext before the entries: signed flag, created, signer, signature. */
const SIGNED_AT = 0
const CREATED_AT = 1
const SIGNER_AT = 9
const SIGNATURE_AT = SIGNER_AT + ED25519_PUBLIC_KEY_BYTES
const PREFIX_BYTES = SIGNATURE_AT + ED25519_SIGNATURE_BYTES

export const ARMOR_BEGIN = '-----BEGIN APM-SERVER SEALED BUNDLE-----'
export const ARMOR_END = '-----END APM-SERVER SEALED BUNDLE-----'
const ARMOR_COLUMNS = 64
const largestBinary = FIXED_BYTES + STANZA_BYTES * MAX_RECIPIENTS + SECRETBOX_NONCE_BYTES + LENGTH_BYTES + PREFIX_BYTES + MAX_PAYLOAD_BYTES + SECRETBOX_OVERHEAD_BYTES
const largestBase64 = 4 * Math.ceil(largestBinary / 3)
/** The largest bundle file, armoured: what a reader reads at most. */
export const MAX_BUNDLE_FILE_BYTES = ARMOR_BEGIN.length + ARMOR_END.length + 2 + largestBase64 + Math.ceil(largestBase64 / ARMOR_COLUMNS)

/** Everything that goes wrong once the header checks pass: one message, no oracle. */
export const BUNDLE_OPEN_FAILED_MESSAGE = 'cannot be opened: it was changed after it was sealed, or is damaged; ask its sender to seal it again'

export interface BundleEntry {
  name: string
  value: Buffer
}

function formatError(detail: string): KeystoreError {
  return new KeystoreError('EFORMAT', detail)
}

export interface SealOptions {
  /** the sealing keystore's signing key pair; without it the bundle says it is not signed */
  signer?: Ed25519KeyPair
  /** when it is sealed, ms since the epoch (what `import` judges a replay by) */
  created: number
}

/**
 * Seals `entries` to every public key in `recipients` (deduplicated): the binary form. Refuses (ELIMITS)
 * a bundle that no reader would accept. Names must be valid and values non-empty (the caller's checks).
 */
export function sealBundle(entries: readonly BundleEntry[], recipients: readonly Uint8Array[], options: SealOptions): Buffer {
  const plaintext = encodeEntries(entries)
  try {
    return sealPayload(plaintext, recipients, options)
  } finally {
    plaintext.fill(0)
  }
}

/**
 * Seals encoded entries as they are: {@link sealBundle} after its checks, and the tests' forger
 * (`version` 1 makes an old bundle; `tamper` changes the signed prefix after it is signed).
 * @internal
 */
export function sealPayload(
  entries: Buffer,
  recipients: readonly Uint8Array[],
  options: Partial<SealOptions> & {version?: 1 | 2; tamper?: (prefix: Buffer) => void} = {},
): Buffer {
  const unique = [...new Map(recipients.map((key) => [fingerprintBytes(key).toString('hex'), key])).values()]
  if (unique.length === 0 || unique.length > MAX_RECIPIENTS) {
    throw new KeystoreError('ELIMITS', `a bundle is sealed to 1 to ${MAX_RECIPIENTS} recipients, not ${unique.length}; seal to fewer hosts in each bundle`)
  }

  const version = options.version ?? BUNDLE_VERSION
  const prefix = Buffer.alloc(version === 1 ? 0 : PREFIX_BYTES)
  const fileKey = randomBytesOf(SECRETBOX_KEY_BYTES)
  const header = Buffer.alloc(FIXED_BYTES + STANZA_BYTES * unique.length + SECRETBOX_NONCE_BYTES + LENGTH_BYTES)
  BUNDLE_MAGIC.copy(header)
  header[8] = version
  header.writeUInt16BE(unique.length, 9)
  unique.forEach((key, i) => {
    const at = FIXED_BYTES + STANZA_BYTES * i
    fingerprintBytes(key).copy(header, at)
    header.set(sealToPublicKey(fileKey, key), at + FINGERPRINT_BYTES)
  })
  const nonceAt = header.length - SECRETBOX_NONCE_BYTES - LENGTH_BYTES
  randomBytesOf(SECRETBOX_NONCE_BYTES).copy(header, nonceAt)
  header.writeUInt32BE(prefix.length + entries.length + SECRETBOX_OVERHEAD_BYTES, header.length - LENGTH_BYTES)
  if (version !== 1) {
    prefix.writeBigUInt64BE(BigInt(options.created ?? Date.now()), CREATED_AT)
    if (options.signer) {
      prefix[SIGNED_AT] = 1
      prefix.set(options.signer.publicKey, SIGNER_AT)
      prefix.set(signDetached(signedDigest(header, prefix, entries), options.signer.secretKey), SIGNATURE_AT)
    }

    options.tamper?.(prefix)
  }

  const plaintext = Buffer.concat([prefix, entries])
  const payload = sealSecretbox(plaintext, header.subarray(nonceAt, nonceAt + SECRETBOX_NONCE_BYTES), bindKey(fileKey, PAYLOAD_PURPOSE, header))
  plaintext.fill(0)
  fileKey.fill(0)
  return Buffer.concat([header, payload])
}

/** What the signature covers: the whole header, the plaintext prefix but the signature, the entries. */
function signedDigest(header: Uint8Array, prefix: Buffer, entries: Uint8Array): Buffer {
  return sha512Of(Buffer.from(SIGNATURE_PURPOSE, 'latin1'), header, prefix.subarray(0, SIGNATURE_AT), entries)
}

function encodeEntries(entries: readonly BundleEntry[]): Buffer {
  if (entries.length > MAX_KEYS) throw new KeystoreError('ELIMITS', `a bundle holds at most ${MAX_KEYS} keys, as a keystore does, not ${entries.length}; seal fewer keys`)
  let length = 4
  for (const {name, value} of entries) {
    if (!isValidKeyName(name) || value.length === 0 || value.length > MAX_VALUE_BYTES) throw new TypeError('sealBundle: an entry breaks the keystore rules')
    length += 1 + name.length + 4 + value.length
  }

  if (length > MAX_PAYLOAD_BYTES) {
    throw new KeystoreError('ELIMITS', `the keys to seal hold ${length} bytes, over the ${MAX_PAYLOAD_BYTES}-byte limit of a keystore; seal fewer or smaller values`)
  }

  const out = Buffer.alloc(length)
  out.writeUInt32BE(entries.length, 0)
  let at = 4
  for (const {name, value} of entries) {
    out[at] = name.length
    at += 1 + out.write(name, at + 1, 'latin1')
    out.writeUInt32BE(value.length, at)
    at += 4 + value.copy(out, at + 4)
  }

  return out
}

/** The ASCII armour of a binary bundle. */
export function armorBundle(binary: Buffer): Buffer {
  const base64 = binary.toString('base64')
  const lines = [ARMOR_BEGIN]
  for (let at = 0; at < base64.length; at += ARMOR_COLUMNS) lines.push(base64.slice(at, at + ARMOR_COLUMNS))
  lines.push(ARMOR_END, '')
  return Buffer.from(lines.join('\n'), 'latin1')
}

/** A bundle whose header has been checked, not yet opened. */
export interface SealedBundle {
  /** the fingerprints of the hosts it is sealed to, as people read them */
  recipients: string[]
  /** the sealed file key for the host with this fingerprint, if it is one of them */
  stanzaFor(publicKey: Uint8Array): Buffer | undefined
  header: Buffer
  nonce: Buffer
  payload: Buffer
  version: number
}

/** Reads a bundle, armoured or binary, checking every header field; no decryption. */
export function readBundle(data: Buffer): SealedBundle {
  if (data.subarray(0, BUNDLE_MAGIC.length).equals(BUNDLE_MAGIC)) return parseBinary(data)
  if (data.subarray(0, ARMOR_BEGIN.length).toString('latin1') === ARMOR_BEGIN) return parseBinary(dearmor(data))
  throw formatError(`is not a sealed bundle (it starts with neither ${ARMOR_BEGIN} nor the binary magic)`)
}

/** The binary bundle inside the armour, refusing anything apm-server would not have written. */
function dearmor(data: Buffer): Buffer {
  const text = data.toString('latin1')
  if (text.includes('\r')) throw formatError('has \\r\\n line endings; convert it back to \\n endings (dos2unix) and retry')
  const endAt = text.indexOf(`\n${ARMOR_END}`)
  if (endAt === -1) throw formatError(`is truncated: its ${ARMOR_END} line is missing`)
  const tail = text.slice(endAt + 1 + ARMOR_END.length)
  if (tail === '') throw formatError("ends without the newline after its END line (a shell's $(...) drops it); pass the file itself, or add the newline")
  if (tail !== '\n') throw formatError('has data after its END line; remove it')
  if (text[ARMOR_BEGIN.length] !== '\n') throw formatError('has data after its BEGIN line; remove it')
  const body = text.slice(ARMOR_BEGIN.length + 1, endAt)
  const lines = body.split('\n')
  for (const [i, line] of lines.entries()) {
    const last = i === lines.length - 1
    if (last ? line.length === 0 || line.length > ARMOR_COLUMNS : line.length !== ARMOR_COLUMNS) {
      throw formatError(`has a line ${i + 2} of ${line.length} characters; every line holds ${ARMOR_COLUMNS} but the last, which holds 1 to ${ARMOR_COLUMNS}`)
    }

    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line) || (!last && line.includes('='))) throw formatError(`has a character on line ${i + 2} that base64 does not use`)
  }

  const base64 = lines.join('')
  const binary = Buffer.from(base64, 'base64')
  // One text for each bundle: padding, and the unused bits before it, exactly as encoding writes them.
  if (base64.length % 4 !== 0 || binary.toString('base64') !== base64) throw formatError('has base64 that is not as apm-server writes it (padding or its last character)')
  return binary
}

function parseBinary(data: Buffer): SealedBundle {
  if (data.length < FIXED_BYTES) throw formatError('is truncated (header incomplete)')
  if (!data.subarray(0, BUNDLE_MAGIC.length).equals(BUNDLE_MAGIC)) throw formatError('is not a sealed bundle (bad magic)')
  const version = data[8]
  if (!READABLE_VERSIONS.has(version)) {
    throw new KeystoreError('EVERSION', `is a sealed bundle of version ${version}; this build reads versions 1 and ${BUNDLE_VERSION}, upgrade apm-server`)
  }

  const count = data.readUInt16BE(9)
  if (count === 0) throw formatError('is sealed to no recipient')
  if (count > MAX_RECIPIENTS) throw new KeystoreError('ELIMITS', `is sealed to ${count} recipients, over the limit of ${MAX_RECIPIENTS}; the bundle is damaged or crafted`)
  const headerLength = FIXED_BYTES + STANZA_BYTES * count + SECRETBOX_NONCE_BYTES + LENGTH_BYTES
  if (data.length < headerLength) throw formatError('is truncated (header incomplete)')
  const payloadLength = data.readUInt32BE(headerLength - LENGTH_BYTES)
  if (payloadLength !== data.length - headerLength) {
    throw formatError(`declares a ${payloadLength}-byte payload but ${data.length - headerLength} bytes follow its header (truncated or extended)`)
  }

  if (payloadLength > MAX_PAYLOAD_BYTES + PREFIX_BYTES + SECRETBOX_OVERHEAD_BYTES) {
    throw new KeystoreError('ELIMITS', `holds a ${payloadLength}-byte payload, more than a keystore may hold (${MAX_PAYLOAD_BYTES} bytes); seal fewer or smaller values`)
  }

  if (payloadLength < SECRETBOX_OVERHEAD_BYTES + (version === 1 ? 0 : PREFIX_BYTES) + 4) throw formatError(`has a ${payloadLength}-byte payload, too short to hold any entries`)

  const stanzas = new Map<string, Buffer>()
  const recipients: string[] = []
  for (let i = 0; i < count; i++) {
    const at = FIXED_BYTES + STANZA_BYTES * i
    const fingerprint = data.subarray(at, at + FINGERPRINT_BYTES)
    const hex = fingerprint.toString('hex')
    if (stanzas.has(hex)) throw formatError(`names recipient ${formatFingerprint(fingerprint)} twice`)
    stanzas.set(hex, data.subarray(at + FINGERPRINT_BYTES, at + STANZA_BYTES))
    recipients.push(formatFingerprint(fingerprint))
  }

  const header = data.subarray(0, headerLength)
  return {
    header,
    version,
    nonce: header.subarray(headerLength - LENGTH_BYTES - SECRETBOX_NONCE_BYTES, headerLength - LENGTH_BYTES),
    payload: data.subarray(headerLength),
    recipients,
    stanzaFor: (publicKey) => stanzas.get(fingerprintBytes(publicKey).toString('hex')),
  }
}

function openFailed(): KeystoreError {
  return new KeystoreError('EDECRYPT', BUNDLE_OPEN_FAILED_MESSAGE)
}

/** An opened bundle: its entries, and who sealed it when (checked: a signer is only named when its signature verified). */
export interface OpenedBundle {
  entries: BundleEntry[]
  /** the signer's Ed25519 public key, or undefined when the bundle is not signed */
  signer?: Uint8Array
  /** when it was sealed (ms since the epoch), or undefined for a version 1 bundle */
  created?: number
}

/** Opens a bundle sealed to `pair` (the caller checked it is: {@link SealedBundle.stanzaFor}). */
export function openBundle(bundle: SealedBundle, pair: X25519KeyPair): OpenedBundle {
  const stanza = bundle.stanzaFor(pair.publicKey)
  const fileKey = stanza && openSealedWithKeyPair(stanza, pair)
  if (!fileKey || fileKey.length !== SECRETBOX_KEY_BYTES) throw openFailed()
  let opened: Uint8Array
  try {
    opened = openSecretbox(bundle.payload, bundle.nonce, bindKey(fileKey, PAYLOAD_PURPOSE, bundle.header))
  } catch {
    throw openFailed()
  } finally {
    fileKey.fill(0)
  }

  const plaintext = Buffer.from(opened.buffer, opened.byteOffset, opened.byteLength)
  if (bundle.version === 1) return {entries: decodeEntries(plaintext)}
  const prefix = plaintext.subarray(0, PREFIX_BYTES)
  const entries = plaintext.subarray(PREFIX_BYTES)
  const created = Number(prefix.readBigUInt64BE(CREATED_AT))
  const signed = prefix[SIGNED_AT]
  if (signed > 1 || !Number.isSafeInteger(created)) throw openFailed()
  if (signed === 0) {
    if (prefix.subarray(SIGNER_AT).some((byte) => byte !== 0)) throw openFailed()
    return {created, entries: decodeEntries(entries)}
  }

  const signer = Buffer.from(prefix.subarray(SIGNER_AT, SIGNATURE_AT))
  if (!verifyDetached(signedDigest(bundle.header, prefix, entries), prefix.subarray(SIGNATURE_AT, PREFIX_BYTES), signer)) {
    throw new KeystoreError('ESIGNER', `claims to be signed by ${formatSigner(signer)}, but its signature does not match: it was forged or changed; ask its sender to seal it again, and check how it travelled`)
  }

  return {created, entries: decodeEntries(entries), signer}
}

/** The entries of an opened payload: authenticated, so only the sealer could have made it wrong. */
function decodeEntries(plaintext: Buffer): BundleEntry[] {
  const count = plaintext.readUInt32BE(0)
  if (count > MAX_KEYS) throw new KeystoreError('ELIMITS', `holds ${count} keys, more than a keystore may hold (${MAX_KEYS}); seal fewer keys`)
  const entries: BundleEntry[] = []
  const names = new Set<string>()
  let at = 4
  for (let i = 0; i < count; i++) {
    if (at + 1 > plaintext.length) throw openFailed()
    const nameEnd = at + 1 + plaintext[at]
    if (nameEnd + 4 > plaintext.length) throw openFailed()
    const name = plaintext.toString('latin1', at + 1, nameEnd)
    const valueLength = plaintext.readUInt32BE(nameEnd)
    const valueEnd = nameEnd + 4 + valueLength
    if (!isValidKeyName(name) || names.has(name) || valueLength === 0 || valueLength > MAX_VALUE_BYTES || valueEnd > plaintext.length) throw openFailed()
    names.add(name)
    entries.push({name, value: plaintext.subarray(nameEnd + 4, valueEnd)})
    at = valueEnd
  }

  if (at !== plaintext.length) throw openFailed()
  return entries
}
