/**
 * The trace decoder (src/server/intake/otlp/trace-decoder.ts) against protobufjs's own decoding of the
 * same bytes (test/helpers/otlp-reference): hostile bodies (malformed varints, truncated messages,
 * wrong wire types, nesting past the bound, huge declared lengths, invalid UTF-8, groups) are refused
 * exactly when protobufjs refuses them, always as the client's error (BadMessage: 400,
 * INVALID_ARGUMENT), never another exception; a body both take gives the same event lines. Every
 * prefix of a request and seeded mutations of the corpus are held to the same rule.
 */
import assert from 'node:assert/strict'

import {ingestOtlp} from '../../src/server/intake/otlp/ingest.js'
import {BadMessage, decodeProtobuf, MessageTooComplex} from '../../src/server/intake/otlp/wire.js'
import type {EventSink} from '../../src/server/outputs/output.js'
import {random, tracesCorpusRequest} from '../helpers/otlp-corpus.js'
import {referenceDecode, referenceLines} from '../helpers/otlp-reference/convert.js'
import {encode, tracesRequest} from '../helpers/otlp.js'

const ERROR_ID = /"id":"[\da-f]{32}"/g
const normalise = (line: string) => line.replaceAll(ERROR_ID, '"id":"<error id>"')

function varint(value: number): Buffer {
  const bytes: number[] = []
  let rest = value
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80)
    rest = Math.floor(rest / 0x80)
  }

  bytes.push(rest)
  return Buffer.from(bytes)
}

/** A length-delimited field. */
const field = (number: number, value: Buffer) => Buffer.concat([varint((number << 3) | 2), varint(value.length), value])
/** Any tag and raw bytes after it. */
const raw = (number: number, wireType: number, bytes: number[] | Buffer) => Buffer.concat([varint((number << 3) | wireType), Buffer.from(bytes)])
/** A span in its scope, resource and request. */
const inRequest = (span: Buffer) => field(1, field(2, field(2, span)))
const ids = Buffer.concat([field(1, Buffer.alloc(16, 1)), field(2, Buffer.alloc(8, 2))])

async function lines(request: unknown): Promise<{lines: string[]; rejected: number}> {
  const written: string[] = []
  const sink: EventSink = {
    congested: false,
    failures: 0,
    flush: async () => {},
    write: (line) => written.push(typeof line === 'string' ? line : Buffer.concat(line).toString('utf8')),
  }
  const result = await ingestOtlp('traces', request, 1 << 30, {output: sink})
  return {lines: written.map((line) => normalise(line)), rejected: result.rejected}
}

/** The decoder's outcome for `bytes` is protobufjs's: both refuse (ours as a BadMessage), or both take it and the lines are the same. */
async function assertAsProtobufjs(bytes: Buffer, label: string): Promise<'refused' | 'taken'> {
  let expected: unknown
  let expectedError: unknown
  try {
    expected = referenceDecode('traces', bytes)
  } catch (error) {
    expectedError = error
  }

  let actual: unknown
  try {
    actual = decodeProtobuf('traces', bytes)
  } catch (error) {
    assert.ok(error instanceof BadMessage, `${label}: ${String(error)} is not a BadMessage`)
    assert.ok(expectedError !== undefined, `${label}: refused (${(error as Error).message}), protobufjs took it`)
    return 'refused'
  }

  assert.equal(expectedError, undefined, `${label}: taken, protobufjs refused it (${String(expectedError)})`)
  const reference = referenceLines('traces', expected)
  assert.deepEqual(await lines(actual), {lines: reference.lines.map((line) => normalise(line)), rejected: reference.rejected}, label)
  return 'taken'
}

describe('OTLP trace decoder: as protobufjs decodes, hostile bodies refused as the client\'s error', function () {
  this.timeout(120_000)

  const table: Array<[string, Buffer, 'refused' | 'taken']> = [
    ['an empty body', Buffer.alloc(0), 'taken'],
    ['a tag varint of 6 bytes', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]), 'refused'],
    ['a tag varint cut short', Buffer.from([0x8a]), 'refused'],
    ['a length varint of 10 bytes', Buffer.concat([Buffer.from([0x0a]), Buffer.alloc(9, 0xff), Buffer.from([0x01])]), 'refused'],
    ['a length of 2 GiB declared, 3 bytes sent', Buffer.concat([Buffer.from([0x0a]), varint(0x7f_ff_ff_ff), Buffer.from('abc')]), 'refused'],
    ['a length past the end', Buffer.concat([Buffer.from([0x0a, 0x10]), Buffer.alloc(4)]), 'refused'],
    ['a nested length past its message', field(1, Buffer.concat([Buffer.from([0x12, 0x20]), Buffer.alloc(4)])), 'refused'],
    ['field number 0', Buffer.from([0x02, 0x00]), 'refused'],
    ['wire type 6', Buffer.from([0x0e, 0x00]), 'refused'],
    ['wire type 7', Buffer.from([0x0f]), 'refused'],
    ['an end group without its start', Buffer.from([0x0c]), 'refused'],
    ['a group, skipped', Buffer.concat([raw(9, 3, [0x08, 0x01]), raw(9, 4, [])]), 'taken'],
    ['a group that never ends', raw(9, 3, [0x08, 0x01]), 'refused'],
    ['a group ended by another field', Buffer.concat([raw(9, 3, []), raw(8, 4, [])]), 'refused'],
    ['resource spans as a varint (wrong wire type: skipped)', raw(1, 0, [0x05]), 'taken'],
    ['a span name as a varint, kind as bytes, start time as a varint', inRequest(Buffer.concat([ids, raw(5, 0, [0x01]), field(6, Buffer.from('x')), raw(7, 0, [0x07])])), 'taken'],
    ['a string value as fixed32, then a real one', inRequest(Buffer.concat([ids, field(9, Buffer.concat([field(1, Buffer.from('k')), field(2, Buffer.concat([raw(1, 5, [1, 2, 3, 4]), field(1, Buffer.from('v'))]))]))])), 'taken'],
    ['a fixed64 cut short', inRequest(Buffer.concat([ids, raw(7, 1, [1, 2, 3])])), 'refused'],
    ['invalid UTF-8 in a span name', inRequest(Buffer.concat([ids, field(5, Buffer.from([0x61, 0xc3, 0x28]))])), 'refused'],
    ['a lone surrogate in an attribute key', inRequest(Buffer.concat([ids, field(9, field(1, Buffer.from([0xed, 0xa0, 0x80])))])), 'refused'],
    ['U+FFFD sent as such', inRequest(Buffer.concat([ids, field(5, Buffer.from('a\uFFFDb'))])), 'taken'],
    ['a singular field twice: status and resource merged, the last name kept', field(1, Buffer.concat([field(1, field(1, Buffer.concat([field(1, Buffer.from('service.name')), field(2, field(1, Buffer.from('a')))]))), field(1, Buffer.from([])), field(2, field(2, Buffer.concat([ids, field(5, Buffer.from('one')), field(15, raw(3, 0, [2])), field(15, field(2, Buffer.from('m'))), field(5, Buffer.from('two'))])))])), 'taken'],
    ['an array value twice, merged; then a string, then an array again', inRequest(Buffer.concat([ids, field(9, Buffer.concat([field(1, Buffer.from('k')), field(2, Buffer.concat([field(5, field(1, field(1, Buffer.from('a')))), field(5, field(1, field(1, Buffer.from('b'))))]))])), field(9, Buffer.concat([field(1, Buffer.from('j')), field(2, Buffer.concat([field(5, field(1, field(1, Buffer.from('a')))), field(1, Buffer.from('s')), field(5, field(1, field(1, Buffer.from('c'))))]))]))])), 'taken'],
    ['a value given in two KeyValue.value fields, merged', inRequest(Buffer.concat([ids, field(9, Buffer.concat([field(1, Buffer.from('k')), field(2, field(1, Buffer.from('a'))), field(2, Buffer.alloc(0))]))])), 'taken'],
  ]

  for (const [label, bytes, outcome] of table) {
    it(`${label}: ${outcome === 'refused' ? '400, as protobufjs refuses it' : 'taken, the same lines'}`, async () => {
      assert.equal(await assertAsProtobufjs(bytes, label), outcome)
    })
  }

  it('attribute values nested past the bound: the nesting answer; at the bound: taken', async () => {
    const nested = (levels: number) => {
      let value = field(1, Buffer.from('leaf'))
      for (let i = 0; i < levels; i++) value = field(6, field(1, Buffer.concat([field(1, Buffer.from('k')), field(2, value)])))
      return inRequest(Buffer.concat([ids, field(9, Buffer.concat([field(1, Buffer.from('deep')), field(2, value)]))]))
    }

    // request 0, resource spans 1, scope spans 2, span 3, key value 4, any value 5, then 3 a level (list, pair, value): 5 + 3 x 19 = 62
    assert.equal(await assertAsProtobufjs(nested(19), 'at the bound'), 'taken')
    assert.equal(await assertAsProtobufjs(nested(20), 'past the bound'), 'refused')
    for (const levels of [20, 100, 10_000]) {
      assert.throws(() => decodeProtobuf('traces', nested(levels)), (error: Error) => error instanceof MessageTooComplex && error.message === 'the message is nested deeper than 64 levels')
    }
  })

  it('every prefix of a request: refused or taken exactly as protobufjs does', async () => {
    const bytes = encode('traces', tracesRequest())
    let refused = 0
    for (let end = 0; end <= bytes.length; end++) if ((await assertAsProtobufjs(bytes.subarray(0, end), `prefix of ${end} bytes`)) === 'refused') refused++ // eslint-disable-line no-await-in-loop -- one at a time
    assert.ok(refused > bytes.length / 2, `${refused} refused`)
  })

  it('3,000 seeded mutations of the corpus (bytes changed, cut, repeated): as protobufjs', async () => {
    const outcomes = {refused: 0, taken: 0}
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = random(seed)
      const bytes = Buffer.from(encode('traces', tracesCorpusRequest((seed % 200) + 1)))
      const mutated = mutate(bytes, rand)
      outcomes[await assertAsProtobufjs(mutated, `mutation ${seed}`)]++ // eslint-disable-line no-await-in-loop -- one at a time
    }

    // Both outcomes are exercised, not one by accident.
    assert.ok(outcomes.refused > 300 && outcomes.taken > 300, JSON.stringify(outcomes))
  })
})

function mutate(bytes: Buffer, rand: () => number): Buffer {
  const at = Math.floor(rand() * bytes.length)
  const roll = rand()
  if (roll < 0.5) {
    for (let i = 0; i < 1 + Math.floor(rand() * 3); i++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256)
    return bytes
  }

  if (roll < 0.7) return bytes.subarray(0, at)
  if (roll < 0.85) return Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.max(0, at - 8), at), bytes.subarray(at)])
  return Buffer.concat([bytes.subarray(0, at), Buffer.from([Math.floor(rand() * 256)]), bytes.subarray(at)])
}
