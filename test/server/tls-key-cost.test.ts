/**
 * The cost of decrypting a TLS key, judged from its file before OpenSSL runs the derivation (fix-net
 * finding 5: a key of 100 million PBKDF2 iterations held the event loop 35 s at a reload).
 */
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'

import {keyCostProblem, keyDerivationOf, MAX_KEY_ITERATIONS, MAX_KEY_SCRYPT_COST} from '../../src/server/tls-key-cost.js'
import {encrypted, octets, oid, pbkdf2Key, pem, pkcs12Key, scryptKey, sequence, tlv} from '../helpers/der.js'

const AES = sequence(oid('2.16.840.1.101.3.4.1.42'), octets(randomBytes(16)))
const pbkdf2 = pbkdf2Key
const scrypt = scryptKey
const pkcs12 = pkcs12Key

describe('server/tls-key-cost', () => {
  it('reads the derivation and its cost from PBES2 (PBKDF2, scrypt) and PKCS#12 keys', () => {
    assert.deepEqual(keyDerivationOf(pbkdf2(2048n)), {iterations: 2048n, kind: 'iterations', scheme: 'PBKDF2'})
    assert.deepEqual(keyDerivationOf(scrypt(16_384n, 8n, 1n)), {kind: 'scrypt', n: 16_384n, p: 1n, r: 8n})
    assert.deepEqual(keyDerivationOf(pkcs12(2048n)), {iterations: 2048n, kind: 'iterations', scheme: 'PKCS#12'})
  })

  const accepted: Array<[string, Buffer]> = [
    ['OpenSSL\'s default, 2,048 PBKDF2 iterations', pem(pbkdf2(2048n))],
    [`${MAX_KEY_ITERATIONS.toLocaleString('en')} PBKDF2 iterations`, pem(pbkdf2(BigInt(MAX_KEY_ITERATIONS)))],
    ['scrypt N=16384 r=8 p=1 (OpenSSL\'s -scrypt)', pem(scrypt(16_384n, 8n, 1n))],
    ['PKCS#12 3DES, 2,048 iterations', pem(pkcs12(2048n))],
    ['a key that is not encrypted', pem(randomBytes(100), 'PRIVATE KEY')],
    ['a traditional OpenSSL key (one MD5 round)', Buffer.from('-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n')],
  ]
  for (const [what, key] of accepted) it(`accepts ${what}`, () => assert.equal(keyCostProblem(key), undefined))

  const refused: Array<[string, Buffer, RegExp]> = [
    [`${(MAX_KEY_ITERATIONS + 1).toLocaleString('en')} PBKDF2 iterations`, pem(pbkdf2(BigInt(MAX_KEY_ITERATIONS) + 1n)), /1000001 PBKDF2 iterations, over the 1,000,000/],
    ['100 million PBKDF2 iterations (the review\'s key)', pem(pbkdf2(100_000_000n)), /100000000 PBKDF2 iterations/],
    ['2^64 PBKDF2 iterations', pem(pbkdf2(2n ** 64n)), /18446744073709551616 PBKDF2 iterations/],
    ['scrypt N=2^20 r=8 p=1', pem(scrypt(2n ** 20n, 8n, 1n)), new RegExp(`scrypt N=1048576, r=8, p=1, over the cost of N×r×p = ${MAX_KEY_SCRYPT_COST.toLocaleString('en')}`)],
    ['scrypt N=2^14 r=8 p=2^20', pem(scrypt(16_384n, 8n, 2n ** 20n)), /scrypt N=16384, r=8, p=1048576/],
    ['PKCS#12 with 10 million iterations', pem(pkcs12(10_000_000n)), /10000000 PKCS#12 iterations/],
    ['an unknown scheme', pem(encrypted(sequence(oid('1.2.3.4'), sequence()))), /scheme whose cost this server does not read \(1\.2\.3\.4\)/],
    ['PBES2 with an unknown derivation', pem(encrypted(sequence(oid('1.2.840.113549.1.5.13'), sequence(sequence(oid('1.2.3.5'), sequence(octets(randomBytes(8)))), AES)))), /1\.2\.840\.113549\.1\.5\.13 with 1\.2\.3\.5/],
    ['an indefinite length (BER, which OpenSSL reads)', pem(Buffer.concat([Buffer.from([0x30, 0x80]), pbkdf2(100_000_000n).subarray(2), Buffer.from([0, 0])])), /cannot be read \(not a DER length/],
    ['a truncated key', pem(pbkdf2(100_000_000n).subarray(0, 30)), /cannot be read \(truncated/],
    ['a second key that costs too much after a cheap one', Buffer.concat([pem(pbkdf2(2048n)), pem(pbkdf2(100_000_000n))]), /100000000 PBKDF2 iterations/],
    ['a key without its end line', pem(pbkdf2(2048n)).subarray(0, -30), /no end line/],
  ]
  for (const [what, key, message] of refused) {
    it(`refuses ${what}, saying how to re-encrypt it`, () => {
      const problem = keyCostProblem(key)
      assert.match(problem ?? '', message)
      assert.match(problem ?? '', /openssl pkcs8 -topk8 -v2 aes-256-cbc|check the file/)
    })
  }
})
