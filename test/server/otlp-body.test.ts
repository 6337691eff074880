/**
 * An OTLP/HTTP body read whole (src/server/intake/otlp/body.ts): a small compressed body is decompressed
 * in one synchronous call, a larger one (or one whose bound cannot be reserved) as a stream; both ways
 * give the same bytes and the same answers (zlib's message, 413 past the bound), and what the memory
 * account holds afterwards is what the read holds: the body as sent and decompressed, nothing more.
 */
import assert from 'node:assert/strict'
import {Readable} from 'node:stream'
import {deflateSync, gzipSync} from 'node:zlib'

import {BodyResult, readBody, WHOLE_BODY_MAX_BYTES} from '../../src/server/intake/otlp/body.js'
import type {MemoryAccount} from '../../src/server/limits.js'

const MAX = 64 * 1024

/** A memory account that counts what is held; `refuseFrom` refuses any one reservation that large. */
function account(refuseFrom = Number.POSITIVE_INFINITY): MemoryAccount & {held: number} {
  const memory = {
    capacity: Number.POSITIVE_INFINITY,
    close() {
      memory.held = 0
    },
    held: 0,
    release(bytes: number) {
      memory.held -= bytes
    },
    reserve(bytes: number) {
      if (bytes >= refuseFrom) return false
      memory.held += bytes
      return true
    },
  }
  return memory
}

/** Reads `body` as a request of two chunks; `stream` makes it take the stream (its bound cannot be reserved). */
function read(body: Buffer, contentEncoding: string, stream: boolean): Promise<{result: BodyResult; held: number}> {
  const memory = account(stream ? MAX : Number.POSITIVE_INFINITY)
  const request = Readable.from([body.subarray(0, 3), body.subarray(3)], {objectMode: false})
  return readBody(request, {contentEncoding, maxBytes: MAX, memory}).then((result) => ({held: memory.held, result}))
}

const payload = Buffer.from('an export request, as it was sent '.repeat(100))
const gzip = gzipSync(payload)
const cases: Array<[string, Buffer, string]> = [
  ['gzip', gzip, 'gzip'],
  ['deflate', deflateSync(payload), 'deflate'],
  ['gzip sniffed', gzip, ''],
  ['truncated gzip', gzip.subarray(0, gzip.length - 9), 'gzip'],
  ['a bad gzip header', Buffer.from('1f8b0800000000000003ffffffff', 'hex'), 'gzip'],
  ['gzip then garbage', Buffer.concat([gzip, Buffer.from('xyz')]), 'gzip'],
  ['not gzip at all', payload, 'gzip'],
  ['empty, said gzip', Buffer.alloc(0), 'gzip'],
  ['exactly the bound', gzipSync(Buffer.alloc(MAX, 7)), 'gzip'],
  ['a byte past the bound', gzipSync(Buffer.alloc(MAX + 1, 7)), 'gzip'],
  ['a bomb', gzipSync(Buffer.alloc(64 * MAX)), 'gzip'],
]

/**
 * The account holds every byte kept, the body as sent and what it decoded to: the bytes arrive in
 * buffers that double as they grow (../../src/server/intake/held-bytes.ts), each reserved whole, so what
 * is charged is at most each buffer's double or its 16 KiB minimum, never less than what is kept.
 */
function assertCharged(held: number, sent: number, kept: number): void {
  assert.ok(held >= sent + kept, `${held} bytes charged for ${sent} sent and ${kept} kept`)
  const most = (bytes: number) => (bytes === 0 ? 0 : Math.max(2 * bytes, 16 * 1024))
  assert.ok(held <= most(sent) + most(kept), `${held} bytes charged for ${sent} sent and ${kept} kept`)
}

describe('OTLP body: whole or streamed, the same answers', () => {
  for (const [label, body, encoding] of cases) {
    it(`${label}: the same result both ways, and the account holds what the read holds`, async () => {
      assert.ok(body.length <= WHOLE_BODY_MAX_BYTES)
      const whole = await read(body, encoding, false)
      const streamed = await read(body, encoding, true)
      assert.deepEqual(whole.result, streamed.result)
      const kept = 'body' in whole.result ? whole.result.body.length : 0
      assertCharged(whole.held, body.length, kept)
    })
  }

  it('answers as the stream did: the bytes, zlib messages, 413 at the bound', async () => {
    assert.deepEqual((await read(gzip, 'gzip', false)).result, {body: payload})
    assert.deepEqual((await read(Buffer.from('1f8b0800000000000003ffffffff', 'hex'), 'gzip', false)).result, {message: 'data decoding error: gzip: invalid block type', status: 400})
    assert.deepEqual((await read(gzipSync(Buffer.alloc(MAX, 7)), 'gzip', false)).result, {body: Buffer.alloc(MAX, 7)})
    assert.deepEqual((await read(gzipSync(Buffer.alloc(64 * MAX)), 'gzip', false)).result, {message: `request body too large: more than ${MAX} bytes decompressed`, status: 413})
  })

  it('a body over the whole-body size streams, with the same answer', async () => {
    const large = gzipSync(Buffer.from(Array.from({length: 20_000}, (_unused, i) => `${i * 7919}`).join(',')))
    assert.ok(large.length > WHOLE_BODY_MAX_BYTES)
    const memory = account()
    const result = await readBody(Readable.from([large]), {contentEncoding: 'gzip', maxBytes: 1024 * 1024, memory})
    assert.ok('body' in result)
    assertCharged(memory.held, large.length, result.body.length)
  })
})
