/**
 * What decrypting the TLS key will cost, read from the key file before OpenSSL sees it. An encrypted
 * PKCS#8 key names its key derivation and its cost (PBKDF2 iterations, scrypt's N, r and p), and OpenSSL
 * runs the whole derivation, synchronously on the event loop, before it can tell the key or the passphrase
 * is wrong: a key of 100 million iterations held the server 35 s at a reload, past the reload's 30 s bound
 * (a timer, which cannot fire meanwhile), and SIGTERM waited; 2^31-1 would be 13 minutes.
 *
 * The cost is bounded rather than the decryption moved to a worker: a worker could not stop OpenSSL once
 * started (it would burn a core for those 13 minutes, once a SIGHUP), and the decrypted key would have to
 * cross threads. Only the few fields that give the cost are read, walking the DER by hand: no parser in
 * Node reads them, and a dependency for four fixed structures is more to trust than this. A block it
 * cannot read is refused (OpenSSL accepts BER forms, such as indefinite lengths, that could hide a cost).
 */

/**
 * PBKDF2 (and PKCS#5 v1.5, PKCS#12) iterations at most: OpenSSL writes 2,048 by default, other tools tens
 * to hundreds of thousands (600,000 is OWASP's advice for PBKDF2-SHA256). 1,000,000 takes ~0.4 s here.
 */
export const MAX_KEY_ITERATIONS = 1_000_000
/** scrypt's N × r × p at most (2^20: e.g. N=2^14, r=8, p=8, ~0.4 s); OpenSSL also caps its memory at 32 MiB. */
export const MAX_KEY_SCRYPT_COST = 2 ** 20

/** The key derivation of one encrypted key, as its file names it. */
export type KeyDerivation =
  | {kind: 'iterations'; scheme: string; iterations: bigint}
  | {kind: 'scrypt'; n: bigint; r: bigint; p: bigint}
  | {kind: 'unknown'; oid: string}

const PBES2 = '1.2.840.113549.1.5.13'
const PBKDF2 = '1.2.840.113549.1.5.12'
const SCRYPT = '1.3.6.1.4.1.11591.4.11'
/** PKCS#5 v1.5 (PBES1) and PKCS#12 password-based encryption: `{salt, iterations}` parameters. */
const SALT_AND_ITERATIONS = /^1\.2\.840\.113549\.1\.(5\.(1|3|4|6|10|11)|12\.1\.[1-6])$/

const SEQUENCE = 0x30
const INTEGER = 0x02
const OCTET_STRING = 0x04
const OID = 0x06

class DerError extends Error {}

interface Tlv {
  tag: number
  /** where the content starts and ends */
  start: number
  end: number
}

/** The TLV at `at`, within `limit`: definite lengths of at most 4 bytes only (DER). */
function readTlv(der: Buffer, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new DerError('truncated')
  const tag = der[at]
  let length = der[at + 1]
  let start = at + 2
  if (length >= 0x80) {
    const bytes = length - 0x80
    if (bytes === 0 || bytes > 4 || start + bytes > limit) throw new DerError('not a DER length')
    length = 0
    for (let i = 0; i < bytes; i++) length = length * 256 + der[start + i]
    start += bytes
  }

  if (start + length > limit) throw new DerError('truncated')
  return {end: start + length, start, tag}
}

/** The items of a constructed value, in order. */
function children(der: Buffer, parent: Tlv): Tlv[] {
  const items: Tlv[] = []
  for (let at = parent.start; at < parent.end; at = items.at(-1)!.end) items.push(readTlv(der, at, parent.end))
  return items
}

function expect(tlv: Tlv | undefined, tag: number): Tlv {
  if (tlv?.tag !== tag) throw new DerError(`expected tag ${tag}`)
  return tlv
}

function oidOf(der: Buffer, tlv: Tlv): string {
  const bytes = der.subarray(expect(tlv, OID).start, tlv.end)
  if (bytes.length === 0 || bytes.length > 64) throw new DerError('bad OID')
  const parts: number[] = []
  let value = 0
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f)
    if ((byte & 0x80) === 0) {
      parts.push(value)
      value = 0
    }
  }

  const first = Math.min(2, Math.floor(parts[0] / 40))
  return [first, parts[0] - first * 40, ...parts.slice(1)].join('.')
}

function integerOf(der: Buffer, tlv: Tlv | undefined): bigint {
  const {end, start} = expect(tlv, INTEGER)
  if (end === start || (der[start] & 0x80) !== 0) throw new DerError('not a positive INTEGER')
  return BigInt(`0x${der.toString('hex', start, end)}`)
}

/** The key derivation of a DER EncryptedPrivateKeyInfo (RFC 5208, with PBES2 of RFC 8018 and scrypt of RFC 7914). */
export function keyDerivationOf(der: Buffer): KeyDerivation {
  const top = expect(readTlv(der, 0, der.length), SEQUENCE)
  const [algorithm] = children(der, top)
  const [schemeOid, schemeParameters] = children(der, expect(algorithm, SEQUENCE))
  const scheme = oidOf(der, schemeOid)
  if (SALT_AND_ITERATIONS.test(scheme)) {
    const [salt, iterations] = children(der, expect(schemeParameters, SEQUENCE))
    expect(salt, OCTET_STRING)
    return {iterations: integerOf(der, iterations), kind: 'iterations', scheme: scheme.includes('.12.1.') ? 'PKCS#12' : 'PBES1'}
  }

  if (scheme !== PBES2) return {kind: 'unknown', oid: scheme}
  const [kdf] = children(der, expect(schemeParameters, SEQUENCE))
  const [kdfOid, kdfParameters] = children(der, expect(kdf, SEQUENCE))
  const kdfName = oidOf(der, kdfOid)
  const fields = children(der, expect(kdfParameters, SEQUENCE))
  // PBKDF2's salt may be a choice (an AlgorithmIdentifier, never used); OpenSSL reads only the octet string.
  expect(fields[0], OCTET_STRING)
  if (kdfName === PBKDF2) return {iterations: integerOf(der, fields[1]), kind: 'iterations', scheme: 'PBKDF2'}
  if (kdfName === SCRYPT) return {kind: 'scrypt', n: integerOf(der, fields[1]), p: integerOf(der, fields[3]), r: integerOf(der, fields[2])}
  return {kind: 'unknown', oid: `${scheme} with ${kdfName}`}
}

const ENCRYPTED_BLOCK = /-----BEGIN ENCRYPTED PRIVATE KEY-----([\s\S]*?)-----END ENCRYPTED PRIVATE KEY-----/g
const ENCRYPTED_LABEL = /-----BEGIN ENCRYPTED PRIVATE KEY-----/g

/**
 * Why decrypting the key in `pem` would cost too much (or cannot be judged), or undefined. Keys that are
 * not encrypted, or encrypted the traditional OpenSSL way (`Proc-Type: 4,ENCRYPTED`: one MD5 round), cost
 * nothing to judge. The message names neither the passphrase nor the key, and ends with the fix.
 */
export function keyCostProblem(pem: Buffer): string | undefined {
  const text = pem.toString('latin1')
  const blocks = [...text.matchAll(ENCRYPTED_BLOCK)]
  if (blocks.length !== (text.match(ENCRYPTED_LABEL)?.length ?? 0)) return 'an ENCRYPTED PRIVATE KEY block has no end line; check the file'
  for (const [, body] of blocks) {
    let derivation: KeyDerivation
    try {
      derivation = keyDerivationOf(Buffer.from(body.replaceAll(/\s/g, ''), 'base64'))
    } catch (error) {
      return `its encryption parameters cannot be read (${(error as Error).message}: not DER-encoded PKCS#8); re-encrypt it with "openssl pkcs8 -topk8 -v2 aes-256-cbc"`
    }

    const problem = costProblem(derivation)
    if (problem) return problem
  }

  return undefined
}

function costProblem(derivation: KeyDerivation): string | undefined {
  const reEncrypt = 're-encrypt it with "openssl pkcs8 -topk8 -v2 aes-256-cbc -iter 100000", or store it unencrypted with mode 0600'
  switch (derivation.kind) {
    case 'unknown': {
      return `it is encrypted with a scheme whose cost this server does not read (${derivation.oid}); ${reEncrypt}`
    }

    case 'iterations': {
      if (derivation.iterations <= BigInt(MAX_KEY_ITERATIONS)) return undefined
      return `it is encrypted with ${derivation.iterations} ${derivation.scheme} iterations, over the ${MAX_KEY_ITERATIONS.toLocaleString('en')} this server accepts (decrypting it would hold the server for as long); ${reEncrypt}`
    }

    case 'scrypt': {
      const {n, p, r} = derivation
      if (n * r * p <= BigInt(MAX_KEY_SCRYPT_COST)) return undefined
      return `it is encrypted with scrypt N=${n}, r=${r}, p=${p}, over the cost of N×r×p = ${MAX_KEY_SCRYPT_COST.toLocaleString('en')} this server accepts; ${reEncrypt}`
    }
  }
}
