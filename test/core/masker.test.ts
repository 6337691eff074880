import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'

import {Masker, MASK, MaskTable} from '../../src/core/masker.js'
import {ALL_BYTES} from '../helpers/keystore.js'

/** The reference: every byte of every occurrence of every value covered, each run of covered bytes one mask. */
function concealWhole(text: Buffer, values: Buffer[], mask = MASK): Buffer {
  const covered = new Uint8Array(text.length)
  for (const value of values) {
    if (value.length === 0) continue
    for (let at = text.indexOf(value); at !== -1; at = text.indexOf(value, at + 1)) covered.fill(1, at, at + value.length)
  }

  const out: Buffer[] = []
  for (let i = 0; i < text.length; ) {
    if (covered[i]) {
      while (covered[i]) i++
      out.push(Buffer.from(mask))
    } else {
      const start = i
      while (i < text.length && !covered[i]) i++
      out.push(text.subarray(start, i))
    }
  }

  return Buffer.concat(out)
}

/** The masker fed `chunks` in order. */
function conceal(values: Buffer[], chunks: Buffer[]): Buffer {
  const masker = new Masker(new MaskTable(values))
  return Buffer.concat([...chunks.map((chunk) => masker.push(chunk)), masker.end()])
}

const splitAt = (text: Buffer, ...cuts: number[]) => [0, ...cuts, text.length].slice(1).map((end, i, ends) => text.subarray(i === 0 ? 0 : ends[i - 1], end))

describe('core/masker: concealing values in a stream', () => {
  it('conceals a value split at every byte boundary, and fed one byte at a time', () => {
    const value = Buffer.from('tok-Sup3r-s3cret')
    const text = Buffer.from(`before ${value} middle ${value}${value} after`)
    const expected = Buffer.from(`before ${MASK} middle ${MASK} after`)
    for (let cut = 0; cut <= text.length; cut++) assert.deepEqual(conceal([value], splitAt(text, cut)).toString(), expected.toString(), `cut at ${cut}`)
    for (let a = 0; a <= text.length; a++) for (let b = a; b <= text.length; b++) assert.equal(conceal([value], splitAt(text, a, b)).toString(), expected.toString(), `cuts at ${a}, ${b}`)
    assert.equal(conceal([value], [...text].map((byte) => Buffer.from([byte]))).toString(), expected.toString())
  })

  it('conceals values that span lines (a PEM key), and binary values of every byte', () => {
    const pem = Buffer.from('-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n')
    const text = Buffer.concat([Buffer.from('key:\n'), pem, Buffer.from('done\n'), ALL_BYTES, Buffer.from('\n')])
    for (let cut = 0; cut <= text.length; cut++) {
      assert.deepEqual(conceal([pem, ALL_BYTES], splitAt(text, cut)), Buffer.from(`key:\n${MASK}done\n${MASK}\n`), `cut at ${cut}`)
    }

    // Line by line, as a line-buffered reader would see it: still concealed.
    const lines = text.toString('latin1').split(/(?<=\n)/).map((line) => Buffer.from(line, 'latin1'))
    assert.deepEqual(conceal([pem, ALL_BYTES], lines), Buffer.from(`key:\n${MASK}done\n${MASK}\n`))
  })

  it('conceals overlapping, nested and touching values as one run: no byte of any value shows', () => {
    const cases: Array<[string[], string, string]> = [
      [['b', 'abc'], 'xabcx', `x${MASK}x`],
      [['abc', 'bcd'], 'abcd', MASK],
      [['abcd', 'bc'], 'abcbcd', `a${MASK}d`],
      [['aa'], 'aaaaa', MASK],
      [['ab'], 'abab-ab', `${MASK}-${MASK}`],
      [['secret', 'cret'], 'secre', 'secre'],
      [['secret'], 'secretsecre', `${MASK}secre`],
      [['x', 'xyz'], 'xy', `${MASK}y`],
    ]
    for (const [values, text, expected] of cases) {
      const buffers = values.map((value) => Buffer.from(value))
      for (let cut = 0; cut <= text.length; cut++) assert.equal(conceal(buffers, splitAt(Buffer.from(text), cut)).toString(), expected, `${values.join(',')} in ${text}, cut at ${cut}`)
    }
  })

  it('agrees with the whole-text reference on random values and texts, split at every byte boundary', () => {
    let seed = 7
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
      return seed / 2 ** 31
    }

    const pick = (alphabet: string, length: number) => Buffer.from(Array.from({length}, () => alphabet[Math.floor(random() * alphabet.length)]).join(''))
    for (let round = 0; round < 300; round++) {
      const alphabet = 'abc\n'.slice(0, 2 + Math.floor(random() * 3))
      const values = Array.from({length: 1 + Math.floor(random() * 4)}, () => pick(alphabet, 1 + Math.floor(random() * 5)))
      const text = pick(alphabet, Math.floor(random() * 30))
      const expected = concealWhole(text, values)
      const what = `round ${round}: ${JSON.stringify(values.map(String))} in ${JSON.stringify(String(text))}`
      for (let cut = 0; cut <= text.length; cut++) assert.deepEqual(conceal(values, splitAt(text, cut)), expected, `${what}, cut at ${cut}`)
      assert.deepEqual(conceal(values, [...text].map((byte) => Buffer.from([byte]))), expected, `${what}, a byte at a time`)
    }
  })

  it('holds back at most the longest value less one byte, and writes a prefix the stream ends on as it is', () => {
    const value = Buffer.from('abcdefgh')
    const masker = new Masker(new MaskTable([value]))
    assert.equal(masker.push(Buffer.from('xxabcdefg')).toString(), 'xx')
    assert.equal(masker.end().toString(), 'abcdefg')
    // Output that keeps overlapping a value for a long while is released as it comes, not buffered.
    const run = new Masker(new MaskTable([Buffer.from('aa')]))
    assert.equal(run.push(Buffer.from('aa')).toString(), MASK)
    for (let i = 0; i < 1000; i++) assert.equal(run.push(Buffer.alloc(1024, 'a')).length, 0)
    assert.equal(run.push(Buffer.from('b')).toString(), 'b')
    assert.equal(run.end().length, 0)
  })

  it('passes everything through without values; refuses values too large to build a table for', () => {
    const text = randomBytes(10_000)
    assert.deepEqual(conceal([], [text.subarray(0, 5000), text.subarray(5000)]), text)
    assert.throws(() => new MaskTable([randomBytes(200_000)]), /too many or too large to mask; choose fewer keys with --key, or pass --no-mask/)
  })
})
