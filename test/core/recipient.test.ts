import assert from 'node:assert/strict'

import nacl from 'tweetnacl'

import {
  generateX25519KeyPair,
  isWeakX25519PublicKey,
  openSealedWithKeyPair,
  SEALED_OVERHEAD_BYTES,
  sealToPublicKey,
} from '../../src/core/crypto.js'
import {fingerprintOf, formatRecipient, parseRecipient, RECIPIENT_LENGTH} from '../../src/core/recipient.js'

const FIX = 'copy it again from "apm-server keystore recipient" on its host'

describe('core/recipient', () => {
  const pair = generateX25519KeyPair()
  const text = formatRecipient(pair.publicKey)

  it('is apm-recipient1, then 58 bech32m characters; parses back to the key, in either case', () => {
    assert.match(text, /^apm-recipient1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$/)
    assert.equal(text.length, RECIPIENT_LENGTH)
    assert.deepEqual(parseRecipient(text), pair.publicKey)
    assert.deepEqual(parseRecipient(text.toUpperCase()), pair.publicKey)
  })

  it('a fingerprint is 16 hex digits in four groups, the same for the same key', () => {
    assert.match(fingerprintOf(pair.publicKey), /^[0-9a-f]{4}(:[0-9a-f]{4}){3}$/)
    assert.equal(fingerprintOf(Uint8Array.from(pair.publicKey)), fingerprintOf(pair.publicKey))
    assert.notEqual(fingerprintOf(generateX25519KeyPair().publicKey), fingerprintOf(pair.publicKey))
  })

  it('catches every single-character typo, every lost and every doubled character', () => {
    const alphabet = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l'
    const start = 'apm-recipient1'.length
    let tried = 0
    for (let i = start; i < text.length; i++) {
      for (const replacement of alphabet) {
        if (replacement === text[i]) continue
        tried++
        assert.throws(() => parseRecipient(`${text.slice(0, i)}${replacement}${text.slice(i + 1)}`), {code: 'EBADRECIPIENT'}, `position ${i} -> ${replacement}`)
      }

      assert.throws(() => parseRecipient(`${text.slice(0, i)}${text.slice(i + 1)}`), {code: 'EBADRECIPIENT'}, `position ${i} lost`)
      assert.throws(() => parseRecipient(`${text.slice(0, i)}${text[i]}${text.slice(i)}`), {code: 'EBADRECIPIENT'}, `position ${i} doubled`)
    }

    assert.equal(tried, 58 * 31)
  })

  it('says what is wrong, escaped and cut, and how to fix it (table)', () => {
    const swapped = `${text.slice(0, 20)}${text[21]}${text[20]}${text.slice(22)}`
    const cases: Array<[string, string, string]> = [
      ['age1qqqq', '"age1qqqq" does not start with apm-recipient1', 'another prefix'],
      ['', '"" does not start with apm-recipient1', 'empty'],
      [`${text.slice(0, 30).toUpperCase()}${text.slice(30)}`, 'mixes upper and lower case', 'mixed case'],
      [`${text.slice(0, 40)}b${text.slice(41)}`, 'holds a character recipients never have (only a-z and 0-9, without 1, b, i and o)', 'a b'],
      [`${text} `, 'holds a character recipients never have (only a-z and 0-9, without 1, b, i and o)', 'a trailing space'],
      [text.slice(0, -1), `is ${RECIPIENT_LENGTH - 1} characters long, not ${RECIPIENT_LENGTH}`, 'one lost'],
      [`${text}\n${'q'.repeat(200)}`, 'holds a character recipients never have', 'a newline and a long tail'],
      [swapped === text ? `${text.slice(0, -1)}q` : swapped, 'has a checksum that does not match: a character was mistyped, lost or added', 'two swapped'],
    ]
    for (const [input, why, label] of cases) {
      assert.throws(
        () => parseRecipient(input),
        (error: Error & {code?: string}) => {
          assert.equal(error.code, 'EBADRECIPIENT', label)
          assert.ok(error.message.includes(why), `${label}: ${error.message}`)
          assert.ok(error.message.endsWith(FIX), label)
          assert.ok(!error.message.includes('\n') && error.message.length < 300, `${label}: one short line`)
          return true
        },
      )
    }
  })

  it('refuses the weak keys (points of small order) that would let anyone open a bundle', () => {
    // The order-1, order-2 and order-4/8 points, as X25519 encodes them.
    const weak = [
      Buffer.alloc(32),
      Buffer.concat([Buffer.from([1]), Buffer.alloc(31)]),
      Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex'),
      Buffer.from('5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', 'hex'),
      Buffer.from('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex'),
    ]
    for (const key of weak) {
      assert.equal(isWeakX25519PublicKey(key), true, key.toString('hex'))
      assert.throws(() => parseRecipient(formatRecipient(key)), {code: 'EBADRECIPIENT', message: /is a weak key/})
    }

    assert.equal(isWeakX25519PublicKey(pair.publicKey), false)
  })
})

describe('core/crypto sealed to a public key', () => {
  it('opens with the recipient key pair only, and every flipped bit is refused', () => {
    const recipient = generateX25519KeyPair()
    const message = nacl.randomBytes(32)
    const sealed = sealToPublicKey(message, recipient.publicKey)
    assert.equal(sealed.length, message.length + SEALED_OVERHEAD_BYTES)
    assert.deepEqual(openSealedWithKeyPair(sealed, recipient), message)
    assert.equal(openSealedWithKeyPair(sealed, generateX25519KeyPair()), undefined)
    for (let bit = 0; bit < 8 * sealed.length; bit++) {
      const flipped = Uint8Array.from(sealed)
      flipped[bit >> 3] ^= 1 << (bit & 7)
      assert.equal(openSealedWithKeyPair(flipped, recipient), undefined, `bit ${bit}`)
    }

    for (const length of [0, 31, 47]) assert.equal(openSealedWithKeyPair(sealed.subarray(0, length), recipient), undefined)
  })

  it('uses a fresh ephemeral key each time: the same message never seals the same way', () => {
    const recipient = generateX25519KeyPair()
    const message = Buffer.from('file key')
    assert.notDeepEqual(sealToPublicKey(message, recipient.publicKey), sealToPublicKey(message, recipient.publicKey))
  })
})
