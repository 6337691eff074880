/**
 * The WebAssembly Poly1305 against tweetnacl's (the reference it replaced) on random keys and messages of
 * every length around the block and chunk sizes, and against RFC 8439's test vector.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {randomBytes, randomInt} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import nacl from 'tweetnacl'

import {poly1305, poly1305Verify} from '../../src/core/poly1305.js'
import {POLY1305_WASM_BASE64} from '../../src/core/wasm/poly1305-module.js'
import {ROOT} from '../helpers/cli.js'

interface NaclLowLevel {
  crypto_onetimeauth(out: Uint8Array, outAt: number, m: Uint8Array, mAt: number, length: number, key: Uint8Array): number
}

const reference = (nacl as unknown as {lowlevel: NaclLowLevel}).lowlevel.crypto_onetimeauth

function referenceTag(m: Uint8Array, key: Uint8Array): Buffer {
  const out = new Uint8Array(16)
  reference(out, 0, m, 0, m.length, key)
  return Buffer.from(out)
}

function tag(m: Uint8Array, key: Uint8Array): Buffer {
  const out = Buffer.alloc(16)
  poly1305(out, 0, m, 0, m.length, key)
  return out
}

describe('core/poly1305', () => {
  it("RFC 8439 section 2.5.2's test vector", () => {
    const key = Buffer.from('85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b', 'hex')
    const message = Buffer.from('Cryptographic Forum Research Group')
    assert.equal(tag(message, key).toString('hex'), 'a8061dc1305136c6c22b8baf0c0127a9')
  })

  it("tweetnacl's tag for every length 0-300, random keys and bytes", () => {
    for (let length = 0; length <= 300; length++) {
      const key = randomBytes(32)
      const message = randomBytes(length)
      assert.deepEqual(tag(message, key), referenceTag(message, key), `length ${length}`)
    }
  })

  it("tweetnacl's tag across the 64 KiB chunks, and for keys and messages of extreme bytes", () => {
    const lengths = [65_535, 65_536, 65_537, 65_552, 131_072 + 15, 300_001]
    for (const length of lengths) {
      const key = randomBytes(32)
      const message = randomBytes(length)
      assert.deepEqual(tag(message, key), referenceTag(message, key), `length ${length}`)
    }

    // All-ones keys and messages drive every limb to its largest value: the carries and the final reduction.
    for (const fill of [0x00, 0xff]) {
      for (const length of [0, 15, 16, 17, 64, 1000]) {
        const key = Buffer.alloc(32, 0xff)
        const message = Buffer.alloc(length, fill)
        assert.deepEqual(tag(message, key), referenceTag(message, key), `fill ${fill}, length ${length}`)
      }
    }
  })

  it("tweetnacl's tag on RFC 8439 appendix A.3's edge cases (h at and past 2^130 - 5, carries in the last reduction)", () => {
    const hex = (text: string) => Buffer.from(text.replaceAll(' ', ''), 'hex')
    const r = (first: string) => hex(first.padEnd(32, '0'))
    const ff = 'ff'.repeat(16)
    const cases: Array<[Buffer, Buffer]> = [
      [Buffer.concat([r('02'), Buffer.alloc(16)]), hex(ff)],
      [Buffer.concat([r('02'), Buffer.alloc(16, 0xff)]), hex('02'.padEnd(32, '0'))],
      [Buffer.concat([r('01'), Buffer.alloc(16)]), hex(ff + 'f0' + 'ff'.repeat(15) + '11'.padEnd(32, '0'))],
      [Buffer.concat([r('01'), Buffer.alloc(16)]), hex(ff + 'fb' + 'fe'.repeat(15) + '01'.repeat(16))],
      [Buffer.concat([r('02'), Buffer.alloc(16)]), hex('fd' + 'ff'.repeat(15))],
      [Buffer.concat([hex('01000000000000000400000000000000'), Buffer.alloc(16)]), hex('e33594d7505e43b900000000000000003394d7505e4379cd01000000000000000000000000000000000000000000000001000000000000000000000000000000')],
      [Buffer.concat([hex('01000000000000000400000000000000'), Buffer.alloc(16)]), hex('e33594d7505e43b900000000000000003394d7505e4379cd010000000000000000000000000000000000000000000000')],
    ]
    for (const [key, message] of cases) assert.deepEqual(tag(message, key), referenceTag(message, key), message.toString('hex'))
    // Two of them by their published tags, not only by agreement with tweetnacl.
    assert.equal(tag(cases[0][1], cases[0][0]).toString('hex'), '03'.padEnd(32, '0'))
    assert.equal(tag(cases[3][1], cases[3][0]).toString('hex'), '00'.repeat(16))
  })

  it('200 random cases at random offsets, the tag written over its own key as secretbox does', () => {
    for (let i = 0; i < 200; i++) {
      const length = randomInt(0, 5000)
      const buffer = randomBytes(32 + length)
      const expected = new Uint8Array(16)
      reference(expected, 0, buffer, 32, length, buffer.subarray(0, 32))
      // The key is buffer[0, 32) and the tag goes to buffer[16, 32), as sealSecretbox lays out its box.
      poly1305(buffer, 16, buffer, 32, length, buffer)
      assert.deepEqual(buffer.subarray(16, 32), Buffer.from(expected))
    }
  })

  it('verifies a right tag and refuses one with any single bit changed', () => {
    const key = randomBytes(32)
    const message = randomBytes(1000)
    const right = tag(message, key)
    assert.equal(poly1305Verify(right, 0, message, 0, message.length, key), true)
    for (let bit = 0; bit < 128; bit++) {
      const wrong = Buffer.from(right)
      wrong[bit >> 3] ^= 1 << (bit & 7)
      assert.equal(poly1305Verify(wrong, 0, message, 0, message.length, key), false, `bit ${bit}`)
    }

    const changed = Buffer.from(message)
    changed[999] ^= 1
    assert.equal(poly1305Verify(right, 0, changed, 0, changed.length, key), false)
  })

  it('the committed module is what src/core/wasm/poly1305.wat assembles to (where wabt is installed)', function () {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'apm-poly1305-'))
    try {
      const wasm = path.join(dir, 'poly1305.wasm')
      const result = spawnSync('wat2wasm', [path.join(ROOT, 'src', 'core', 'wasm', 'poly1305.wat'), '-o', wasm])
      if (result.error) {
        // CI installs wabt (.ci/run): there the check must run, not pass by skipping.
        if (process.env.CI) assert.fail(`wat2wasm did not run (${result.error.message}); install wabt`)
        this.skip()
      }

      assert.equal(result.status, 0, result.stderr.toString())
      assert.equal(readFileSync(wasm).toString('base64'), POLY1305_WASM_BASE64, 'run "node scripts/build-wasm.js"')
    } finally {
      rmSync(dir, {force: true, recursive: true})
    }
  })
})
