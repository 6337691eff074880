/**
 * DER by hand, for tests that need key files no tool writes: an encrypted PKCS#8 key with a chosen key
 * derivation and cost, and random ciphertext (OpenSSL runs the whole derivation before it can tell).
 */
import {randomBytes} from 'node:crypto'

export function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length
  if (n < 0x80) return Buffer.concat([Buffer.from([tag, n]), body])
  const hex = n.toString(16).padStart(Math.ceil(n.toString(16).length / 2) * 2, '0')
  return Buffer.concat([Buffer.from([tag, 0x80 | (hex.length / 2)]), Buffer.from(hex, 'hex'), body])
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items))
export const octets = (bytes: Buffer): Buffer => tlv(0x04, bytes)

export function integer(value: bigint): Buffer {
  let hex = value.toString(16)
  if (hex.length % 2) hex = `0${hex}`
  if (Number.parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`
  return tlv(0x02, Buffer.from(hex, 'hex'))
}

export function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number)
  const bytes = [40 * a + b]
  for (let value of rest) {
    const part = [value & 0x7f]
    while ((value = Math.floor(value / 128)) > 0) part.unshift(0x80 | (value & 0x7f))
    bytes.push(...part)
  }

  return tlv(0x06, Buffer.from(bytes))
}

/** EncryptedPrivateKeyInfo of `algorithm` and 64 random bytes of "ciphertext". */
export const encrypted = (algorithm: Buffer): Buffer => sequence(algorithm, octets(randomBytes(64)))
const AES = (): Buffer => sequence(oid('2.16.840.1.101.3.4.1.42'), octets(randomBytes(16)))
const PBES2 = '1.2.840.113549.1.5.13'

/** A PBES2 key of `iterations` PBKDF2-HMAC-SHA256 iterations. */
export const pbkdf2Key = (iterations: bigint): Buffer =>
  encrypted(sequence(oid(PBES2), sequence(sequence(oid('1.2.840.113549.1.5.12'), sequence(octets(randomBytes(16)), integer(iterations), sequence(oid('1.2.840.113549.2.9'), tlv(0x05, Buffer.alloc(0))))), AES())))

export const scryptKey = (n: bigint, r: bigint, p: bigint): Buffer =>
  encrypted(sequence(oid(PBES2), sequence(sequence(oid('1.3.6.1.4.1.11591.4.11'), sequence(octets(randomBytes(16)), integer(n), integer(r), integer(p))), AES())))

/** A PKCS#12 pbeWithSHAAnd3-KeyTripleDES-CBC key. */
export const pkcs12Key = (iterations: bigint): Buffer => encrypted(sequence(oid('1.2.840.113549.1.12.1.3'), sequence(octets(randomBytes(8)), integer(iterations))))

export function pem(der: Buffer, label = 'ENCRYPTED PRIVATE KEY'): Buffer {
  return Buffer.from(`-----BEGIN ${label}-----\n${der.toString('base64').replaceAll(/(.{64})/g, '$1\n')}\n-----END ${label}-----\n`)
}
