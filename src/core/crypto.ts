/**
 * The one module that touches cryptographic primitives. Formats call these; nothing else does.
 *
 * argon2 is imported lazily: a passwordless keystore never pays for loading the native addon.
 */
import {createCipheriv, createDecipheriv, createHash, createHmac, pbkdf2Sync, randomBytes} from 'node:crypto'
import nacl from 'tweetnacl'
import XSalsa20 from 'xsalsa20'

import {DECRYPT_FAILED_MESSAGE, KeystoreError} from './errors.js'
import {poly1305, poly1305Verify} from './poly1305.js'

export interface Argon2Params {
  /** memory in KiB */
  memoryKiB: number
  /** passes over memory */
  iterations: number
  /** lanes */
  parallelism: number
}

/**
 * RFC 9106 section 4, second recommended option: 64 MiB, t=3, p=4. It is the strongest setting that
 * stays around 0.2 s here, and the first option (2 GiB) would not fit small containers.
 */
export const DEFAULT_ARGON2: Readonly<Argon2Params> = Object.freeze({memoryKiB: 64 * 1024, iterations: 3, parallelism: 4})

/**
 * Caps on what a file may ask of us. A crafted header beyond these is refused before any work:
 * 1 GiB and 10 passes bound a hostile file to a few seconds and a known amount of memory,
 * while leaving room above the default for operators who want more.
 */
export const ARGON2_LIMITS = Object.freeze({
  maxMemoryKiB: 1024 * 1024,
  maxIterations: 10,
  maxParallelism: 16,
  // argon2 itself needs at least 8 KiB per lane.
  minMemoryKiBPerLane: 8,
})

export const SECRETBOX_KEY_BYTES = nacl.secretbox.keyLength // 32
export const SECRETBOX_NONCE_BYTES = nacl.secretbox.nonceLength // 24
export const SECRETBOX_OVERHEAD_BYTES = nacl.secretbox.overheadLength // 16

export function randomBytesOf(length: number): Buffer {
  return randomBytes(length)
}

export async function deriveArgon2id(password: Buffer, salt: Buffer, params: Argon2Params): Promise<Buffer> {
  const argon2 = await import('argon2')
  return argon2.hash(password, {
    hashLength: 32,
    memoryCost: params.memoryKiB,
    parallelism: params.parallelism,
    raw: true,
    salt,
    timeCost: params.iterations,
    type: argon2.argon2id,
  })
}

/**
 * Key material for a keystore without a password. This is obfuscation, as in Beats: anyone with the
 * file and this code can open it. The salt only makes every file's key differ.
 */
export function deriveObfuscationKey(salt: Buffer): Buffer {
  return createHmac('sha512', 'apm-server keystore without password').update(salt).digest().subarray(0, 32)
}

/**
 * secretbox authenticates only the ciphertext, so the header (magic, version, KDF parameters, salt,
 * nonce) is bound into the key instead: any change to a header byte yields another key and the box
 * fails to open.
 */
export function bindKeyToHeader(master: Buffer, header: Buffer): Uint8Array {
  return createHmac('sha512', master).update('apm-server keystore header').update(header).digest().subarray(0, 32)
}

// The same XSalsa20-Poly1305 as nacl.secretbox, without its byte-by-byte copies of the message in and
// out (a large share of the time on keystores of thousands of keys): boxes are built in place here, with
// XSalsa20 and Poly1305 in WebAssembly.

/**
 * XORs `data` in place with the XSalsa20 stream of `nonce` and `key`, from the stream's start, as
 * tweetnacl's crypto_stream_xor does, but in WebAssembly (the xsalsa20 package): a CLI run is over
 * before V8 optimises tweetnacl's JavaScript, which ran interpreted over every byte of a box (adding
 * one key to 1,000, about 140 KB: several ms per command). test/core/crypto.test.ts checks that the
 * boxes are tweetnacl's.
 */
function xsalsa20Xor(data: Uint8Array, nonce: Uint8Array, key: Uint8Array): void {
  const stream = new XSalsa20(nonce, key)
  try {
    stream.update(data, data)
  } finally {
    stream.final()
  }
}

/** NaCl's secretbox layout: the first 32 keystream bytes are the Poly1305 key, the message follows. */
const POLY1305_KEY_BYTES = 32

/** nacl.secretbox: the Poly1305 tag, then the XSalsa20 ciphertext. */
export function sealSecretbox(plaintext: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(POLY1305_KEY_BYTES + plaintext.length)
  out.set(plaintext, POLY1305_KEY_BYTES)
  xsalsa20Xor(out, nonce, key)
  poly1305(out, POLY1305_KEY_BYTES - SECRETBOX_OVERHEAD_BYTES, out, POLY1305_KEY_BYTES, plaintext.length, out)
  out.fill(0, 0, POLY1305_KEY_BYTES - SECRETBOX_OVERHEAD_BYTES)
  return out.subarray(POLY1305_KEY_BYTES - SECRETBOX_OVERHEAD_BYTES)
}

/** nacl.secretbox.open; EDECRYPT when the tag does not match. */
export function openSecretbox(box: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  return decryptSecretbox(box, nonce, key, true)
}

/**
 * Decrypts a secretbox without checking its Poly1305 tag. Only for a box whose every byte is already
 * authenticated otherwise: the native format's values box, whose SHA-256 is in the authenticated index
 * and is compared before this is called. Checking the tag again would add nothing but time.
 */
export function decryptAuthenticatedSecretbox(box: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  return decryptSecretbox(box, nonce, key, false)
}

function decryptSecretbox(box: Uint8Array, nonce: Uint8Array, key: Uint8Array, verify: boolean): Uint8Array {
  if (box.length < SECRETBOX_OVERHEAD_BYTES) throw new KeystoreError('EDECRYPT', DECRYPT_FAILED_MESSAGE)
  const length = box.length - SECRETBOX_OVERHEAD_BYTES
  const out = new Uint8Array(POLY1305_KEY_BYTES + length)
  out.set(box.subarray(SECRETBOX_OVERHEAD_BYTES), POLY1305_KEY_BYTES)
  xsalsa20Xor(out, nonce, key)
  // The tag is checked against the ciphertext, still intact in `box`, before any plaintext is returned.
  if (verify && !poly1305Verify(box, 0, box, SECRETBOX_OVERHEAD_BYTES, length, out)) {
    out.fill(0)
    throw new KeystoreError('EDECRYPT', DECRYPT_FAILED_MESSAGE)
  }

  out.fill(0, 0, POLY1305_KEY_BYTES)
  return out.subarray(POLY1305_KEY_BYTES)
}

/** An X25519 key pair (tweetnacl's box keys): a host's key for sealed bundles, or a sender's ephemeral one. */
export interface X25519KeyPair {
  publicKey: Uint8Array
  secretKey: Uint8Array
}

export const X25519_KEY_BYTES = nacl.box.publicKeyLength // 32
/** What {@link sealToPublicKey} adds to a message: the ephemeral public key and the Poly1305 tag. */
export const SEALED_OVERHEAD_BYTES = X25519_KEY_BYTES + nacl.box.overheadLength // 48

export function generateX25519KeyPair(): X25519KeyPair {
  return nacl.box.keyPair()
}

/** The key pair of a stored secret key (the public key is derived, never stored). */
export function x25519KeyPairOf(secretKey: Uint8Array): X25519KeyPair {
  return nacl.box.keyPair.fromSecretKey(secretKey)
}

/**
 * True for a public key whose shared secret with any key is all zeros (a point of small order): anything
 * sealed to it could be opened by anyone. libsodium refuses these; tweetnacl does not check, so we do.
 * Clamped scalars are multiples of the cofactor, so one multiplication by any scalar tells.
 */
export function isWeakX25519PublicKey(publicKey: Uint8Array): boolean {
  return nacl.scalarMult(randomBytes(X25519_KEY_BYTES), publicKey).every((byte) => byte === 0)
}

/**
 * The nonce of a sealed message: the first 24 bytes of SHA-512(ephemeral public key | recipient's public
 * key), as libsodium's crypto_box_seal derives it (with BLAKE2b there). It binds both keys to the box,
 * and the ephemeral key is never reused, so no nonce is ever reused under one shared key.
 */
function sealedNonce(ephemeralPublicKey: Uint8Array, recipientPublicKey: Uint8Array): Uint8Array {
  return createHash('sha512').update(ephemeralPublicKey).update(recipientPublicKey).digest().subarray(0, nacl.box.nonceLength)
}

/**
 * Seals `message` so that only the holder of `recipientPublicKey`'s secret key can open it: a box from a
 * fresh ephemeral key pair, whose secret key is dropped at once (age and libsodium's sealed boxes do the
 * same). Returns the ephemeral public key followed by the box. The caller refuses weak keys first
 * ({@link isWeakX25519PublicKey}).
 */
export function sealToPublicKey(message: Uint8Array, recipientPublicKey: Uint8Array): Uint8Array {
  const ephemeral = nacl.box.keyPair()
  const box = nacl.box(message, sealedNonce(ephemeral.publicKey, recipientPublicKey), recipientPublicKey, ephemeral.secretKey)
  ephemeral.secretKey.fill(0)
  const out = new Uint8Array(X25519_KEY_BYTES + box.length)
  out.set(ephemeral.publicKey)
  out.set(box, X25519_KEY_BYTES)
  return out
}

/** Opens what {@link sealToPublicKey} sealed to `pair`'s public key; undefined when it does not open. */
export function openSealedWithKeyPair(sealed: Uint8Array, pair: X25519KeyPair): Uint8Array | undefined {
  if (sealed.length < SEALED_OVERHEAD_BYTES) return undefined
  const ephemeralPublicKey = sealed.subarray(0, X25519_KEY_BYTES)
  const opened = nacl.box.open(sealed.subarray(X25519_KEY_BYTES), sealedNonce(ephemeralPublicKey, pair.publicKey), ephemeralPublicKey, pair.secretKey)
  return opened ?? undefined
}

/** An Ed25519 key pair (tweetnacl's sign keys): a host's signing key for the bundles it seals. */
export interface Ed25519KeyPair {
  publicKey: Uint8Array
  secretKey: Uint8Array
}

export const ED25519_PUBLIC_KEY_BYTES = nacl.sign.publicKeyLength // 32
export const ED25519_SIGNATURE_BYTES = nacl.sign.signatureLength // 64
const SIGNING_KEY_PURPOSE = 'apm-server host signing key v1'

/**
 * The host's Ed25519 signing key pair, derived from its X25519 secret key: HMAC-SHA512(secret, purpose),
 * first 32 bytes, as the Ed25519 seed. One secret, two keys separated by purpose, so the signing key is
 * kept exactly as the host key is (in the keystore's metadata, under its password, kept by passwd,
 * upgrade and sync, never listed) and the keystore format needs no new field: keystores stay readable
 * by earlier builds, and a host that already has a recipient has its signer without a write.
 */
export function signingKeyPairOf(hostSecretKey: Uint8Array): Ed25519KeyPair {
  const seed = createHmac('sha512', hostSecretKey).update(SIGNING_KEY_PURPOSE).digest().subarray(0, nacl.sign.seedLength)
  return nacl.sign.keyPair.fromSeed(seed)
}

/** An Ed25519 signature of `message` (a digest: tweetnacl hashes in JavaScript, so callers sign 64 bytes, not megabytes). */
export function signDetached(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return nacl.sign.detached(message, secretKey)
}

export function verifyDetached(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  return nacl.sign.detached.verify(message, signature, publicKey)
}

/** SHA-512 of the parts, in order, with node's hash (the message a bundle's signature covers). */
export function sha512Of(...parts: Uint8Array[]): Buffer {
  const hash = createHash('sha512')
  for (const part of parts) hash.update(part)
  return hash.digest()
}

/** A key for one purpose, bound to the bytes it protects: HMAC-SHA512(key, purpose | bound), first 32 bytes. */
export function bindKey(key: Uint8Array, purpose: string, bound: Uint8Array): Uint8Array {
  return createHmac('sha512', key).update(purpose).update(bound).digest().subarray(0, SECRETBOX_KEY_BYTES)
}

/** SHA-256 of `data` (fingerprints of public keys). */
export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest()
}

// Beats v1: the parameters are fixed by the Go implementation (libbeat/keystore), not chosen here.
export const BEATS_V1 = Object.freeze({iterations: 10_000, ivBytes: 12, keyBytes: 32, saltBytes: 64, tagBytes: 16})

export function deriveBeatsKey(password: Buffer, salt: Buffer): Buffer {
  // Synchronous on purpose: 10,000 rounds take a few milliseconds, less than a thread-pool round trip.
  return pbkdf2Sync(password, salt, BEATS_V1.iterations, BEATS_V1.keyBytes, 'sha512')
}

export function encryptAesGcm(plaintext: Buffer, key: Buffer, iv: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
}

export function decryptAesGcm(sealed: Buffer, key: Buffer, iv: Buffer): Buffer {
  const ciphertext = sealed.subarray(0, sealed.length - BEATS_V1.tagBytes)
  const tag = sealed.subarray(sealed.length - BEATS_V1.tagBytes)
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv)
    decipher.setAuthTag(tag)
    return Buffer.concat([decipher.update(ciphertext), decipher.final()])
  } catch {
    throw new KeystoreError('EDECRYPT', DECRYPT_FAILED_MESSAGE)
  }
}

/** A random URL-safe token of `length` characters (6 bits of entropy each). */
export function generateToken(length: number): string {
  return randomBytes(Math.ceil((length * 3) / 4)).toString('base64url').slice(0, length)
}
