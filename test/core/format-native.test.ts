import assert from 'node:assert/strict'
import {createHash, randomBytes} from 'node:crypto'

import {ARGON2_LIMITS, bindKeyToHeader, deriveObfuscationKey, openSecretbox} from '../../src/core/crypto.js'
import {Entries, MAX_KEYS} from '../../src/core/entries.js'
import {DECRYPT_FAILED_MESSAGE, KeystoreError} from '../../src/core/errors.js'
import {checkArgon2Limits, decodeNative, encodeNative, looksNative, NATIVE_MAGIC, NativeKdf, openNative, readNativeHeader} from '../../src/core/format/native.js'
import {ALL_BYTES, assertKeystoreError, CHEAP_KDF, noPasswordExpected, passwordOf} from '../helpers/keystore.js'
import {forgeCalibrated, forgeNative, validValues} from '../torture/forge.js'

const NONE: NativeKdf = {type: 'none'}
const ARGON: NativeKdf = {params: {...CHEAP_KDF}, type: 'argon2id'}
const PASSWORD = Buffer.from('correct horse')

function entriesOf(values: Record<string, Buffer>): Entries {
  return new Map(Object.entries(values).map(([name, value]) => [name, {created: 1_700_000_000_000, updated: 1_700_000_000_001, value}]))
}

/** A copy of `data` with the argon2 fields of the header replaced. */
function withKdfParams(data: Buffer, memoryKiB: number, iterations: number, parallelism: number): Buffer {
  const copy = Buffer.from(data)
  copy[9] = 1
  copy.writeUInt32BE(memoryKiB, 10)
  copy.writeUInt32BE(iterations, 14)
  copy[18] = parallelism
  return copy
}

const LIMITS_MESSAGE = (m: number, t: number, p: number) =>
  `keystore asks for argon2id memory=${m}KiB iterations=${t} parallelism=${p}, outside the allowed range (memory 8KiB per lane to 1048576KiB, ` +
  'iterations 1-10, parallelism 1-16); the file is damaged or crafted, restore it from a backup'

describe('core/format/native', () => {
  let plain: Buffer
  let protectedData: Buffer
  before(async () => {
    plain = await encodeNative(entriesOf({ALL_BYTES, B: Buffer.from('b')}), NONE, undefined)
    protectedData = await encodeNative(entriesOf({ALL_BYTES, B: Buffer.from('b')}), ARGON, PASSWORD)
  })

  describe('round trip', () => {
    for (const [label, kdf, password] of [
      ['without a password', NONE, undefined],
      ['with a password', ARGON, PASSWORD],
    ] as const) {
      it(`keeps all 256 byte values, and the times, ${label}`, async () => {
        const data = await encodeNative(entriesOf({ALL_BYTES, REVERSED: Buffer.from(ALL_BYTES).reverse()}), kdf, password)
        assert.ok(looksNative(data))
        const entries = await decodeNative(data, password ? passwordOf('correct horse') : noPasswordExpected())
        assert.deepEqual([...entries.keys()].sort(), ['ALL_BYTES', 'REVERSED'])
        assert.deepEqual(entries.get('ALL_BYTES'), {created: 1_700_000_000_000, updated: 1_700_000_000_001, value: ALL_BYTES})
        assert.deepEqual(entries.get('REVERSED')?.value, Buffer.from(ALL_BYTES).reverse())
      })
    }

    it('writes an empty keystore that reads back empty', async () => {
      const entries = await decodeNative(await encodeNative(new Map(), NONE, undefined), noPasswordExpected())
      assert.equal(entries.size, 0)
    })

    it('uses a fresh salt and nonce on every write', async () => {
      const again = await encodeNative(entriesOf({ALL_BYTES, B: Buffer.from('b')}), NONE, undefined)
      assert.notDeepEqual(again.subarray(20), plain.subarray(20))
    })

    it('does not store the values in the clear', async () => {
      const data = await encodeNative(entriesOf({TOKEN: Buffer.from('findable-secret-value')}), NONE, undefined)
      assert.equal(data.includes('findable-secret-value'), false)
      assert.equal(data.includes(Buffer.from('findable-secret-value').toString('base64')), false)
    })

    it('lays out the header as documented', () => {
      assert.deepEqual(plain.subarray(0, 8), Buffer.from('APMKEYS\0', 'latin1'))
      assert.deepEqual(NATIVE_MAGIC, Buffer.from('APMKEYS\0', 'latin1'))
      assert.equal(plain[8], 2)
      assert.deepEqual([plain[9], plain.readUInt32BE(10), plain.readUInt32BE(14), plain[18], plain[19]], [0, 0, 0, 0, 32])
      assert.deepEqual([protectedData[9], protectedData.readUInt32BE(10), protectedData.readUInt32BE(14), protectedData[18]], [1, 1024, 1, 1])
      const header = readNativeHeader(protectedData)
      assert.deepEqual(header.kdf, {params: {iterations: 1, memoryKiB: 1024, parallelism: 1}, type: 'argon2id'})
      assert.deepEqual(header.salt, protectedData.subarray(20, 52))
      assert.deepEqual(header.nonce, protectedData.subarray(52, 76))
      assert.deepEqual(header.bytes, protectedData.subarray(0, header.bytes.length))
      assert.ok(header.bytes.length >= 76)
    })
  })

  describe('distinct errors', () => {
    it('wrong password: EDECRYPT with the one message', async () => {
      await assertKeystoreError(decodeNative(protectedData, passwordOf('wrong')), 'EDECRYPT', DECRYPT_FAILED_MESSAGE)
    })

    it('an empty password is just a wrong one: EDECRYPT', async () => {
      await assertKeystoreError(decodeNative(protectedData, async () => Buffer.alloc(0)), 'EDECRYPT', DECRYPT_FAILED_MESSAGE)
    })

    it('bit-flipped ciphertext: EDECRYPT with the same message as a wrong password', async () => {
      for (const data of [plain, protectedData]) {
        const flipped = Buffer.from(data)
        flipped[flipped.length - 5] ^= 0x01
        // eslint-disable-next-line no-await-in-loop -- two cases
        await assertKeystoreError(decodeNative(flipped, passwordOf('correct horse')), 'EDECRYPT', DECRYPT_FAILED_MESSAGE)
      }
    })

    it('bad magic: EFORMAT, before asking for a password', async () => {
      const bad = Buffer.from(protectedData)
      bad[0] = 0x61
      await assertKeystoreError(decodeNative(bad, noPasswordExpected()), 'EFORMAT', 'not an apm-server keystore (bad magic)')
      await assertKeystoreError(decodeNative(Buffer.alloc(0), noPasswordExpected()), 'EFORMAT', 'not an apm-server keystore (bad magic)')
    })

    it('unknown version: EVERSION, before asking for a password', async () => {
      for (const version of [0, 3, 255]) {
        const bad = Buffer.from(protectedData)
        bad[8] = version
        // eslint-disable-next-line no-await-in-loop -- a small table
        await assertKeystoreError(
          decodeNative(bad, noPasswordExpected()),
          'EVERSION',
          `unsupported keystore format version ${version}; this build reads versions up to 2, upgrade apm-server`,
        )
      }
    })

    it('truncated file: refused at every length, EFORMAT naming the truncation inside the header, else EDECRYPT', async () => {
      const headerLength = readNativeHeader(protectedData).bytes.length
      for (let length = 8; length < protectedData.length; length++) {
        let error: unknown
        try {
          // eslint-disable-next-line no-await-in-loop -- a table of lengths
          await decodeNative(protectedData.subarray(0, length), passwordOf('correct horse'))
        } catch (caught) {
          error = caught
        }

        const where = `cut at ${length} of ${protectedData.length}`
        assert.ok(error instanceof KeystoreError, `${where}: decoded`)
        if (length < 20) assert.deepEqual([error.code, error.message], ['EFORMAT', 'keystore file is truncated (header incomplete)'], where)
        else if (length <= headerLength) assert.deepEqual([error.code, /^keystore file is truncated/.test(error.message)], ['EFORMAT', true], `${where}: ${error.message}`)
        else if (error.code === 'EFORMAT') assert.match(error.message, /^keystore file is truncated/, where)
        else assert.deepEqual([error.code, error.message], ['EDECRYPT', DECRYPT_FAILED_MESSAGE], where)
      }
    })

    it('one byte cut off the end: EDECRYPT (after the header checks, one message)', async () => {
      await assertKeystoreError(decodeNative(plain.subarray(0, plain.length - 1), noPasswordExpected()), 'EDECRYPT', DECRYPT_FAILED_MESSAGE)
    })

    it('table of malformed headers: EFORMAT', async () => {
      const cases: Array<[string, (data: Buffer) => void, string]> = [
        ['unknown KDF', (d) => (d[9] = 2), 'malformed keystore header (unknown KDF 2)'],
        ['memory without a KDF', (d) => d.writeUInt32BE(1024, 10), 'malformed keystore header (KDF parameters set without a KDF)'],
        ['iterations without a KDF', (d) => d.writeUInt32BE(1, 14), 'malformed keystore header (KDF parameters set without a KDF)'],
        ['parallelism without a KDF', (d) => (d[18] = 1), 'malformed keystore header (KDF parameters set without a KDF)'],
        ['salt too short', (d) => (d[19] = 15), 'malformed keystore header (salt length 15)'],
        ['salt too long', (d) => (d[19] = 65), 'malformed keystore header (salt length 65)'],
        ['salt length zero', (d) => (d[19] = 0), 'malformed keystore header (salt length 0)'],
      ]
      for (const [label, mutate, message] of cases) {
        const bad = Buffer.from(plain)
        mutate(bad)
        // eslint-disable-next-line no-await-in-loop -- a table
        await assertKeystoreError(decodeNative(bad, noPasswordExpected()), 'EFORMAT', message).catch((error: Error) => {
          throw new Error(`${label}: ${error.message}`)
        })
      }
    })
  })

  it('an index declared over 32 MiB: ELIMITS from the header, before any decryption', async () => {
    const headerLength = 20 + plain[19] + 24 + 4
    const indexLength = 32 * 1024 * 1024 + 16 + 1
    const crafted = Buffer.concat([plain.subarray(0, headerLength), Buffer.alloc(indexLength + 16)])
    crafted.writeUInt32BE(indexLength, headerLength - 4)
    const message = `keystore index is ${indexLength} bytes, over the 33554432-byte limit; the file is damaged or crafted, restore it from a backup`
    await assertKeystoreError(decodeNative(crafted, noPasswordExpected()), 'ELIMITS', message)
    // One byte less is within the cap and reaches decryption.
    crafted.writeUInt32BE(indexLength - 1, headerLength - 4)
    await assertKeystoreError(decodeNative(crafted, noPasswordExpected()), 'EDECRYPT', DECRYPT_FAILED_MESSAGE)
  })

  describe('limits the readers enforce, checked before encoding (a keystore nobody could open is never made)', () => {
    it('the size is predicted exactly: a file of exactly the limit is made, one byte less is refused', async () => {
      for (const entries of [entriesOf({}), entriesOf({A: Buffer.from('x')}), entriesOf({A: ALL_BYTES, B_LONGER_NAME: Buffer.alloc(1000, 7)})]) {
        // eslint-disable-next-line no-await-in-loop -- a table
        const size: number = (await encodeNative(entries, NONE, undefined)).length
        // eslint-disable-next-line no-await-in-loop -- a table
        assert.equal((await encodeNative(entries, NONE, undefined, undefined, size)).length, size)
        // eslint-disable-next-line no-await-in-loop -- a table
        await assertKeystoreError(encodeNative(entries, NONE, undefined, undefined, size - 1), 'ELIMITS', `would be ${size} bytes, over the ${size - 1}-byte limit`)
      }
    })

    it('more than MAX_KEYS keys are refused', async () => {
      const entries: Entries = new Map()
      for (let i = 0; i <= MAX_KEYS; i++) entries.set(`K${i}`, {created: 0, updated: 0, value: Buffer.from('v')})
      await assertKeystoreError(encodeNative(entries, NONE, undefined), 'ELIMITS', `would hold ${MAX_KEYS + 1} keys, over the limit of ${MAX_KEYS}`)
    })
  })

  describe('capped KDF parameters (ELIMITS before any work)', () => {
    // Each of these would take minutes or exhaust memory if honoured; refusal must come from the header alone.
    const cases: Array<[string, number, number, number]> = [
      ['4 GiB of memory', 4 * 1024 * 1024, 1, 1],
      ['the largest u32 memory', 0xff_ff_ff_ff, 1, 1],
      ['just over the memory cap', ARGON2_LIMITS.maxMemoryKiB + 1, 1, 1],
      ['zero memory', 0, 1, 1],
      ['less than 8 KiB per lane', 8 * 4 - 1, 1, 4],
      ['huge iterations', 1024, 0xff_ff_ff_ff, 1],
      ['just over the iteration cap', 1024, ARGON2_LIMITS.maxIterations + 1, 1],
      ['zero iterations', 1024, 0, 1],
      ['zero parallelism', 1024, 1, 0],
      ['huge parallelism', 1024 * 1024, 1, 255],
      ['just over the parallelism cap', 1024 * 1024, 1, ARGON2_LIMITS.maxParallelism + 1],
      ['everything at once', 0xff_ff_ff_ff, 0xff_ff_ff_ff, 255],
    ]
    for (const [label, m, t, p] of cases) {
      it(`refuses ${label} (m=${m} t=${t} p=${p}) without asking for the password`, async () => {
        const crafted = withKdfParams(protectedData, m, t, p)
        await assertKeystoreError(decodeNative(crafted, noPasswordExpected()), 'ELIMITS', LIMITS_MESSAGE(m, t, p))
        assert.throws(() => readNativeHeader(crafted), {code: 'ELIMITS'})
      })
    }

    it('accepts the limits themselves', () => {
      checkArgon2Limits({iterations: ARGON2_LIMITS.maxIterations, memoryKiB: ARGON2_LIMITS.maxMemoryKiB, parallelism: ARGON2_LIMITS.maxParallelism})
      checkArgon2Limits({iterations: 1, memoryKiB: 8, parallelism: 1})
      checkArgon2Limits({iterations: 1, memoryKiB: 8 * 16, parallelism: 16})
    })

    it('refuses non-integer parameters of our own choice', () => {
      assert.throws(() => checkArgon2Limits({iterations: 1.5, memoryKiB: 1024, parallelism: 1}), {code: 'ELIMITS'})
      assert.throws(() => checkArgon2Limits({iterations: 1, memoryKiB: Number.NaN, parallelism: 1}), {code: 'ELIMITS'})
    })

    it('will not write a header beyond the caps', async () => {
      await assertKeystoreError(encodeNative(new Map(), {params: {iterations: 1, memoryKiB: 4 * 1024 * 1024, parallelism: 1}, type: 'argon2id'}, PASSWORD), 'ELIMITS')
    })
  })
  // The index is written row by row rather than by JSON.stringify (see encodeNative): files must stay
  // byte for byte what the format documents, and what earlier versions wrote.
  function indexOf(data: Buffer): {index: string; digest: string} {
    const header = readNativeHeader(data)
    const key = bindKeyToHeader(deriveObfuscationKey(header.salt), Buffer.concat([Buffer.from('index'), header.bytes]))
    const index = Buffer.from(openSecretbox(header.indexBox, header.nonce, key)).toString('utf8')
    return {digest: createHash('sha256').update(header.valuesBox).digest('base64'), index}
  }

  it('writes the index exactly as JSON.stringify({entries: [[name, length], ...], values: digest}) in version 1', async () => {
    const data = await encodeNative(entriesOf({A: Buffer.from('one'), 'b.c-D_9': Buffer.alloc(0), Z: ALL_BYTES}), NONE, undefined, undefined, undefined, {meta: {}, version: 1})
    assert.equal(data[8], 1)
    const {digest, index} = indexOf(data)
    assert.equal(index, JSON.stringify({entries: [['A', 3], ['b.c-D_9', 0], ['Z', 256]], values: digest}))
  })

  it('writes the index exactly as JSON.stringify({entries, meta, values}) in version 2', async () => {
    const hostKey = randomBytes(32)
    const data = await encodeNative(entriesOf({A: Buffer.from('one'), Z: ALL_BYTES}), NONE, undefined, undefined, undefined, {meta: {hostKey}, version: 2})
    assert.equal(data[8], 2)
    const {digest, index} = indexOf(data)
    assert.equal(index, JSON.stringify({entries: [['A', 3], ['Z', 256]], meta: {hostKey: hostKey.toString('base64')}, values: digest}))
    const empty = indexOf(await encodeNative(new Map(), NONE, undefined))
    assert.equal(empty.index, JSON.stringify({entries: [], meta: {}, values: empty.digest}))
  })

  describe('version 2 metadata', () => {
    it('keeps the host key, under the password, and never in the clear', async () => {
      const hostKey = randomBytes(32)
      const data = await encodeNative(entriesOf({A: Buffer.from('one')}), ARGON, PASSWORD, undefined, undefined, {meta: {hostKey}, version: 2})
      for (const form of [hostKey, Buffer.from(hostKey.toString('base64')), Buffer.from(hostKey.toString('hex'))]) assert.equal(data.includes(form), false)
      const opened = await openNative(data, passwordOf('correct horse'))
      assert.deepEqual([opened.version, opened.meta], [2, {hostKey}])
      await assertKeystoreError(openNative(data, passwordOf('wrong')), 'EDECRYPT', DECRYPT_FAILED_MESSAGE)
    })

    it('opens version 1 files with no metadata, and refuses metadata in them when writing', async () => {
      const data = await encodeNative(entriesOf({A: Buffer.from('one')}), NONE, undefined, undefined, undefined, {meta: {}, version: 1})
      const opened = await openNative(data, noPasswordExpected())
      assert.deepEqual([opened.version, opened.meta, [...opened.positions.keys()]], [1, {}, ['A']])
      await assert.rejects(encodeNative(new Map(), NONE, undefined, undefined, undefined, {meta: {hostKey: randomBytes(32)}, version: 1}), TypeError)
    })

    const index = (meta: unknown) => (digest: string) => Buffer.from(JSON.stringify({entries: [['A', 3]], meta, values: digest}))
    const values = validValues([Buffer.from('one')])
    it('refuses a field this build does not know (a newer writer): EVERSION naming it', async function () {
      if (await forgeCalibrated()) this.skip()
      const data = await forgeNative({index: index({hostKey: randomBytes(32).toString('base64'), rotation: {A: 1}}), values, version: 2}, Math.random)
      await assertKeystoreError(
        decodeNative(data, noPasswordExpected()),
        'EVERSION',
        'keystore holds metadata this build does not know ("rotation"), written by a newer apm-server; upgrade apm-server',
      )
    })

    const MALFORMED = 'keystore payload is malformed; restore the file from a backup'
    const key = randomBytes(32)
    const HEAD = 'ab'.repeat(32)
    const cases: Array<[string, unknown]> = [
      ['no meta in version 2', undefined],
      ['meta that is null', null],
      ['meta that is an array', []],
      ['meta that is a string', 'x'],
      ['a host key that is a number', {hostKey: 1}],
      ['a host key of 31 bytes', {hostKey: key.subarray(0, 31).toString('base64')}],
      ['a host key of 33 bytes', {hostKey: Buffer.concat([key, key]).subarray(0, 33).toString('base64')}],
      ['a host key in base64url', {hostKey: Buffer.from([0xfb, ...key.subarray(1)]).toString('base64url')}],
      ['a host key without padding', {hostKey: key.toString('base64').slice(0, -1)}],
      ['a host key with non-zero padding bits', {hostKey: `${key.toString('base64').slice(0, 42)}B=`}],
      ['expiries that are an array', {expires: [['A', 1]]}],
      ['no expiries in the object', {expires: {}}],
      ['an expiry for a name that is not an entry', {expires: {B: 1}}],
      ['an expiry of 0', {expires: {A: 0}}],
      ['a negative expiry', {expires: {A: -5}}],
      ['a fractional expiry', {expires: {A: 1.5}}],
      ['an expiry given as a string', {expires: {A: '1'}}],
      ['an audit anchor that is an array', {audit: [1, HEAD, 1]}],
      ['an audit anchor without its head', {audit: {bytes: 10, lines: 1}}],
      ['an audit anchor with another field', {audit: {bytes: 10, head: HEAD, lines: 1, start: 0}}],
      ['an audit anchor of 0 lines', {audit: {bytes: 10, head: HEAD, lines: 0}}],
      ['an audit anchor of 0 bytes', {audit: {bytes: 0, head: HEAD, lines: 1}}],
      ['an audit head in upper case', {audit: {bytes: 10, head: HEAD.toUpperCase(), lines: 1}}],
      ['an audit head of 63 digits', {audit: {bytes: 10, head: HEAD.slice(1), lines: 1}}],
      ['an audit line count given as a string', {audit: {bytes: 10, head: HEAD, lines: '1'}}],
    ]
    for (const [label, meta] of cases) {
      it(`refuses ${label}: EFORMAT`, async function () {
        if (await forgeCalibrated()) this.skip()
        const data = await forgeNative({index: index(meta), values, version: 2}, Math.random)
        await assertKeystoreError(decodeNative(data, noPasswordExpected()), 'EFORMAT', MALFORMED)
      })
    }

    it('writes and reads expiries and the audit anchor, exactly as JSON.stringify would, fields in order', async () => {
      const meta = {audit: {bytes: 321, head: HEAD, lines: 4}, expires: new Map([['A', 1_800_000_000_000]]), hostKey: key}
      const data = await encodeNative(entriesOf({A: Buffer.from('one'), Z: ALL_BYTES}), NONE, undefined, undefined, undefined, {meta, version: 2})
      const {digest, index} = indexOf(data)
      assert.equal(index, JSON.stringify({entries: [['A', 3], ['Z', 256]], meta: {audit: meta.audit, expires: {A: 1_800_000_000_000}, hostKey: key.toString('base64')}, values: digest}))
      assert.deepEqual((await openNative(data, noPasswordExpected())).meta, meta)
      await assert.rejects(encodeNative(entriesOf({Z: ALL_BYTES}), NONE, undefined, undefined, undefined, {meta: {expires: new Map([['A', 1]])}, version: 2}), TypeError)
    })

    it('opens a well-formed forged version 2 file, with and without a host key', async function () {
      if (await forgeCalibrated()) this.skip()
      for (const meta of [{}, {hostKey: key.toString('base64')}]) {
        // eslint-disable-next-line no-await-in-loop -- two cases
        const opened = await openNative(await forgeNative({index: index(meta), values, version: 2}, Math.random), noPasswordExpected())
        assert.deepEqual(opened.meta, 'hostKey' in meta ? {hostKey: key} : {})
      }
    })
  })

  describe('index rows that only the key can write (a forged or buggy file): EFORMAT', () => {
    const MALFORMED = 'keystore payload is malformed; restore the file from a backup'
    // Two values of 3 bytes: every case's lengths add up to 6 unless the case is about the sum.
    const values = validValues([Buffer.from('one'), Buffer.from('two')])
    const cases: Array<[string, unknown]> = [
      ['a repeated name', [['A', 3], ['A', 3]]],
      ['a row of three', [['A', 3, 0], ['B', 3]]],
      ['a row of one', [['A'], ['B', 6]]],
      ['a row that is an object', [{0: 'A', 1: 3, length: 2}, ['B', 3]]],
      ['a name that is a number', [[1, 3], ['B', 3]]],
      ['an invalid name', [['A B', 3], ['B', 3]]],
      ['a negative length', [['A', -1], ['B', 7]]],
      ['fractional lengths', [['A', 2.5], ['B', 3.5]]],
      ['a length given as a string', [['A', '3'], ['B', 3]]],
      ['lengths that do not fill the values', [['A', 3], ['B', 4]]],
      ['entries that are not an array', {A: 3, B: 3}],
      ['a name nested in an array', [[['A'], 3], ['B', 3]]],
      ['a length nested in an array', [['A', [3]], ['B', 3]]],
    ]
    for (const [label, rows] of cases) {
      it(`refuses ${label}`, async function () {
        if (await forgeCalibrated()) this.skip()
        const data = await forgeNative({index: (digest) => Buffer.from(JSON.stringify({entries: rows, values: digest})), values}, Math.random)
        await assertKeystoreError(decodeNative(data, noPasswordExpected()), 'EFORMAT', MALFORMED)
      })
    }

    it('refuses an index of more arrays and objects than MAX_KEYS rows can hold, before it is parsed', async function () {
      if (await forgeCalibrated()) this.skip()
      // Well-formed rows, and a field of MAX_KEYS empty arrays: JSON.parse would make every one of them.
      const extra = `[${'[],'.repeat(MAX_KEYS)}[]]`
      const index = (digest: string) => Buffer.from(`{"entries":[["A",3],["B",3]],"values":"${digest}","x":${extra}}`)
      const data = await forgeNative({index, values, version: 1}, Math.random)
      await assertKeystoreError(decodeNative(data, noPasswordExpected()), 'EFORMAT', MALFORMED)
    })

    it('opens the same values under well-formed rows', async function () {
      if (await forgeCalibrated()) this.skip()
      const rows = [['A', 3], ['B', 3]]
      const data = await forgeNative({index: (digest) => Buffer.from(JSON.stringify({entries: rows, values: digest})), values}, Math.random)
      const entries = await decodeNative(data, noPasswordExpected())
      assert.deepEqual([...entries].map(([name, entry]) => [name, entry.value.toString()]), [['A', 'one'], ['B', 'two']])
    })
  })
})
