import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {deriveBeatsKey, encryptAesGcm} from '../../src/core/crypto.js'
import {Entries, MAX_KEYS} from '../../src/core/entries.js'
import {DECRYPT_FAILED_MESSAGE} from '../../src/core/errors.js'
import {decodeBeatsV1, encodeBeatsV1, encodedBeatsV1Size, looksBeatsV1} from '../../src/core/format/beats-v1.js'
import {makeTempDir} from '../helpers/cli.js'
import {ALL_BYTES, BEATS_V1_PY, FIXTURES, python3, readBeatsV1WithPython, writeBeatsV1WithPython} from '../helpers/keystore.js'

function entriesOf(values: Record<string, Buffer>): Entries {
  return new Map(Object.entries(values).map(([name, value]) => [name, {created: 0, updated: 0, value}]))
}

function valuesOf(entries: Entries): Record<string, Buffer> {
  return Object.fromEntries([...entries].map(([name, entry]) => [name, entry.value]))
}

/** A Beats v1 file around any plaintext, sealed as Go does (empty password). */
function sealBeats(plaintext: string, salt = Buffer.alloc(64, 7), iv = Buffer.alloc(12, 9)): Buffer {
  const sealed = encryptAesGcm(Buffer.from(plaintext), deriveBeatsKey(Buffer.alloc(0), salt), iv)
  return Buffer.from(`v1${Buffer.concat([salt, iv, sealed]).toString('base64')}`, 'latin1')
}

/** Flips one bit of the raw (base64-decoded) body at `offset` and re-encodes it. */
function flipRaw(data: Buffer, offset: number): Buffer {
  const raw = Buffer.from(data.subarray(2).toString('latin1'), 'base64')
  raw[offset] ^= 0x01
  return Buffer.from(`v1${raw.toString('base64')}`, 'latin1')
}

const MALFORMED_PAYLOAD = 'Beats keystore payload is malformed; restore the file from a backup'
const SAMPLE = Object.fromEntries(
  Object.entries(JSON.parse(readFileSync(path.join(FIXTURES, 'beats-v1', 'sample.json'), 'utf8')) as Record<string, string>).map(([name, value]) => [
    name,
    Buffer.from(value, 'base64'),
  ]),
)

describe('core/format/beats-v1', () => {
  it('round-trips all 256 byte values', () => {
    const data = encodeBeatsV1(entriesOf({ALL_BYTES, REVERSED: Buffer.from(ALL_BYTES).reverse()}))
    assert.ok(looksBeatsV1(data))
    assert.deepEqual(valuesOf(decodeBeatsV1(data)), {ALL_BYTES, REVERSED: Buffer.from(ALL_BYTES).reverse()})
  })

  it('writes "v1" + base64(salt 64 | iv 12 | ciphertext | tag 16) of a {"KEY":{"value":base64}} payload', () => {
    const data = encodeBeatsV1(entriesOf({A: Buffer.from('xyz')}))
    assert.equal(data.subarray(0, 2).toString('latin1'), 'v1')
    const text = data.subarray(2).toString('latin1')
    assert.match(text, /^[A-Za-z0-9+/]+={0,2}$/)
    const raw = Buffer.from(text, 'base64')
    assert.equal(raw.length, 64 + 12 + JSON.stringify({A: {value: 'eHl6'}}).length + 16)
  })

  it('reads a Go-style payload: trailing newline from json.Encoder, null value, base64 wrapped with CRLF', () => {
    assert.deepEqual(valuesOf(decodeBeatsV1(sealBeats('{"A":{"value":"eHl6"},"NIL":{"value":null}}\n'))), {A: Buffer.from('xyz'), NIL: Buffer.alloc(0)})
    const text = sealBeats('{"A":{"value":"eHl6"}}\n').subarray(2).toString('latin1')
    const wrapped = Buffer.from(`v1${text.slice(0, 40)}\r\n${text.slice(40)}\n`, 'latin1')
    assert.deepEqual(valuesOf(decodeBeatsV1(wrapped)), {A: Buffer.from('xyz')})
  })

  it('predicts its file size exactly, and refuses a file over the limit (or over MAX_KEYS keys) before building it', () => {
    const table: Entries[] = [
      new Map(),
      new Map([['A', {created: 0, updated: 0, value: Buffer.from('x')}]]),
      new Map([
        ['A', {created: 0, updated: 0, value: ALL_BYTES}],
        ['B.longer-name_1', {created: 0, updated: 0, value: Buffer.alloc(1001, 7)}],
        ['C', {created: 0, updated: 0, value: Buffer.alloc(2)}],
      ]),
    ]
    for (const entries of table) {
      const size = encodeBeatsV1(entries).length
      assert.equal(encodedBeatsV1Size(entries), size)
      assert.equal(encodeBeatsV1(entries, size).length, size)
      assert.throws(() => encodeBeatsV1(entries, size - 1), {code: 'ELIMITS', message: `would be ${size} bytes, over the ${size - 1}-byte limit`})
    }

    const many: Entries = new Map()
    for (let i = 0; i <= MAX_KEYS; i++) many.set(`K${i}`, {created: 0, updated: 0, value: Buffer.from('v')})
    assert.throws(() => encodeBeatsV1(many), {code: 'ELIMITS', message: `would hold ${MAX_KEYS + 1} keys, over the limit of ${MAX_KEYS}`})
  })

  describe('distinct errors', () => {
    const good = sealBeats('{"A":{"value":"eHl6"}}\n')

    it('bad version prefix: EFORMAT', () => {
      for (const data of [Buffer.from('v2AAAA'), Buffer.from('V1AAAA'), Buffer.alloc(0), Buffer.from('v')]) {
        assert.throws(() => decodeBeatsV1(data), {code: 'EFORMAT', message: 'not a Beats keystore (bad version prefix)'})
      }
    })

    it('invalid base64: EFORMAT', () => {
      for (const body of ['!!!!', 'AAA', 'AA=A', 'AAAA====', 'AA AA']) {
        assert.throws(() => decodeBeatsV1(Buffer.from(`v1${body}`)), {code: 'EFORMAT', message: 'Beats keystore is malformed (invalid base64)'}, body)
      }
    })

    it('truncated: EFORMAT', () => {
      const raw = Buffer.from(good.subarray(2).toString('latin1'), 'base64')
      for (const length of [0, 3, 64, 64 + 12, 64 + 12 + 15]) {
        const cut = Buffer.from(`v1${raw.subarray(0, length).toString('base64')}`)
        assert.throws(() => decodeBeatsV1(cut), {code: 'EFORMAT', message: 'Beats keystore is truncated'}, String(length))
      }
    })

    it('one flipped bit in salt, iv, ciphertext or tag: EDECRYPT with the one message', () => {
      const raw = Buffer.from(good.subarray(2).toString('latin1'), 'base64')
      for (const offset of [0, 63, 64, 75, 76, raw.length - 17, raw.length - 16, raw.length - 1]) {
        assert.throws(() => decodeBeatsV1(flipRaw(good, offset)), {code: 'EDECRYPT', message: DECRYPT_FAILED_MESSAGE}, String(offset))
      }
    })

    it('a shorter ciphertext (tag cut off): EDECRYPT', () => {
      const raw = Buffer.from(good.subarray(2).toString('latin1'), 'base64')
      const cut = Buffer.from(`v1${raw.subarray(0, raw.length - 1).toString('base64')}`)
      assert.throws(() => decodeBeatsV1(cut), {code: 'EDECRYPT', message: DECRYPT_FAILED_MESSAGE})
    })

    it('table of malformed payloads under a valid seal: EFORMAT', () => {
      for (const payload of [
        'not json',
        '[]',
        'null',
        '"text"',
        '{"bad key":{"value":"eHl6"}}',
        '{"":{"value":"eHl6"}}',
        '{"A":{"value":5}}',
        '{"A":{"value":"not base64!"}}',
        '{"A":"eHl6"}',
      ]) {
        assert.throws(() => decodeBeatsV1(sealBeats(payload)), {code: 'EFORMAT', message: MALFORMED_PAYLOAD}, payload)
      }
    })
  })

  describe('against the independent Python implementation (test/fixtures/beats_v1.py)', () => {
    let tmp: ReturnType<typeof makeTempDir>
    before(function () {
      if (!python3()) this.skip() // no python3 on this machine: the cross-checks cannot run
    })
    beforeEach(() => {
      tmp = makeTempDir()
    })
    afterEach(() => tmp?.cleanup())

    it('passes its self-test (FIPS-197 AES-256, McGrew-Viega GCM cases 13-16, PBKDF2-SHA512)', () => {
      const result = spawnSync(python3() as string, [BEATS_V1_PY, 'selftest'], {encoding: 'utf8'})
      assert.equal(result.stderr, '')
      assert.equal(result.stdout, 'ok\n')
      assert.equal(result.status, 0)
    })

    it('reads what the Python writer wrote, byte for byte', () => {
      const file = path.join(tmp.dir, 'py.keystore')
      const values = {ALL_BYTES, 'dotted.name-1': Buffer.from('v'), NEWLINE: Buffer.from('\n'), REVERSED: Buffer.from(ALL_BYTES).reverse()}
      writeBeatsV1WithPython(file, values)
      assert.deepEqual(valuesOf(decodeBeatsV1(readFileSync(file))), values)
    })

    it('writes what the Python reader reads, byte for byte', () => {
      const file = path.join(tmp.dir, 'ts.keystore')
      const values = {ALL_BYTES, B: Buffer.from('b'), REVERSED: Buffer.from(ALL_BYTES).reverse()}
      writeFileSync(file, encodeBeatsV1(entriesOf(values)))
      assert.deepEqual(readBeatsV1WithPython(file), values)
    })

    it('the Python reader refuses a flipped bit too (it is a real check, not an echo)', () => {
      const file = path.join(tmp.dir, 'flipped.keystore')
      writeFileSync(file, flipRaw(encodeBeatsV1(entriesOf({A: Buffer.from('a')})), 80))
      const result = spawnSync(python3() as string, [BEATS_V1_PY, 'read', file], {encoding: 'utf8'})
      assert.equal(result.status, 1)
      assert.match(result.stderr, /authentication failed/)
    })

    it('reads the committed fixture made by the Python writer', () => {
      assert.deepEqual(valuesOf(decodeBeatsV1(readFileSync(path.join(FIXTURES, 'beats-v1', 'sample.keystore')))), SAMPLE)
    })
  })
})
