import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'

import nacl from 'tweetnacl'

import {decryptAuthenticatedSecretbox, openSecretbox, sealSecretbox} from '../../src/core/crypto.js'
import {DECRYPT_FAILED_MESSAGE} from '../../src/core/errors.js'

const EDECRYPT = {code: 'EDECRYPT', message: DECRYPT_FAILED_MESSAGE}
// Around the 16-byte Poly1305 block and the 64-byte Salsa20 block, and a few larger sizes.
const LENGTHS = [0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 127, 128, 129, 1000, 65_537]

describe('core/crypto secretbox', () => {
  it('seals exactly as nacl.secretbox, and opens what nacl.secretbox sealed', () => {
    for (const length of LENGTHS) {
      for (let round = 0; round < 5; round++) {
        const [plaintext, nonce, key] = [randomBytes(length), randomBytes(24), randomBytes(32)]
        const reference = nacl.secretbox(plaintext, nonce, key)
        assert.deepEqual(Buffer.from(sealSecretbox(plaintext, nonce, key)), Buffer.from(reference), `length ${length}`)
        assert.deepEqual(Buffer.from(openSecretbox(reference, nonce, key)), plaintext, `length ${length}`)
        assert.deepEqual(Buffer.from(decryptAuthenticatedSecretbox(reference, nonce, key)), plaintext, `length ${length}`)
      }
    }
  })

  it('open refuses every flipped bit, another key or nonce, and a box shorter than its tag: EDECRYPT', () => {
    const [nonce, key] = [randomBytes(24), randomBytes(32)]
    const box = Buffer.from(sealSecretbox(Buffer.from('a secret of some length'), nonce, key))
    for (let bit = 0; bit < 8 * box.length; bit++) {
      const flipped = Buffer.from(box)
      flipped[bit >> 3] ^= 1 << (bit & 7)
      assert.throws(() => openSecretbox(flipped, nonce, key), EDECRYPT, `bit ${bit}`)
    }

    assert.throws(() => openSecretbox(box, randomBytes(24), key), EDECRYPT)
    assert.throws(() => openSecretbox(box, nonce, randomBytes(32)), EDECRYPT)
    for (const length of [0, 1, 15]) assert.throws(() => openSecretbox(box.subarray(0, length), nonce, key), EDECRYPT)
    assert.deepEqual(Buffer.from(openSecretbox(box, nonce, key)), Buffer.from('a secret of some length'))
  })

  it('decryptAuthenticatedSecretbox does not check the tag: only for boxes authenticated otherwise', () => {
    const [nonce, key] = [randomBytes(24), randomBytes(32)]
    const box = Buffer.from(sealSecretbox(Buffer.from('payload'), nonce, key))
    box[0] ^= 1
    assert.deepEqual(Buffer.from(decryptAuthenticatedSecretbox(box, nonce, key)), Buffer.from('payload'))
    assert.throws(() => decryptAuthenticatedSecretbox(box.subarray(0, 15), nonce, key), EDECRYPT)
  })

  it('leaves no key stream before the box it returns', () => {
    const sealed = sealSecretbox(randomBytes(100), randomBytes(24), randomBytes(32))
    assert.deepEqual(Buffer.from(sealed.buffer, 0, sealed.byteOffset), Buffer.alloc(sealed.byteOffset))
  })
})
