import assert from 'node:assert/strict'
import {EventEmitter} from 'node:events'
import {PassThrough} from 'node:stream'
import v8 from 'node:v8'
import {runInNewContext} from 'node:vm'
import {setImmediate as nextTurn, setTimeout as sleep} from 'node:timers/promises'
import {createGzip, gzipSync} from 'node:zlib'

import {readFramed} from '../../src/server/api/grpc-call.js'
import {eventMembers, scanJsonValue} from '../../src/server/intake/json-scan.js'
import {readBody} from '../../src/server/intake/otlp/body.js'
import {OTLP_HTTP_MAX_BYTES} from '../../src/server/intake/otlp/limits.js'
import type {IntakeResult} from '../../src/server/intake/model.js'
import {DECODER_BYTES, ingest, IntakeOptions, INTERNAL_ERROR, WHOLE_BODY_DECODED_MAX_BYTES} from '../../src/server/intake/v2.js'
import {
  ANONYMOUS_DECODED_RATE_EXCEEDED,
  ANONYMOUS_METADATA_MAX_BYTES,
  ANONYMOUS_METADATA_TOO_LARGE,
  ANONYMOUS_OUTPUT_RATE_EXCEEDED,
  clip,
  CLIENT_TEXT_MAX,
  DOCUMENT_MAX,
  documentOf,
  LINE_TOO_COMPLEX,
  MAX_LINE_CONTAINERS,
  MAX_LINE_DEPTH,
  MAX_REJECTED_LINES,
  MemoryAccount,
  MemoryBudget,
  OUTPUT_LIMIT_EXCEEDED,
  QUEUE_FULL,
  REQUEST_DECODED_MAX_BYTES,
  REQUEST_DECODED_TOO_LARGE,
  TOO_MANY_REJECTED_LINES,
} from '../../src/server/limits.js'
import type {EventSink} from '../../src/server/outputs/output.js'
import {TokenBucket} from '../../src/server/anonymous.js'

const METADATA = JSON.stringify({metadata: {service: {agent: {name: 'rum-js', version: '5.16.0'}, name: 'limits-test'}}})
const SPAN = JSON.stringify({span: {id: 'sp1', name: 'SELECT', type: 'db'}})

class MemorySink implements EventSink {
  lines: string[] = []
  congested = false
  failures = 0
  lastFailure?: Error
  write(line: string | readonly Buffer[]): void {
    this.lines.push(typeof line === 'string' ? line : Buffer.concat(line).toString('utf8'))
  }

  async flush(): Promise<void> {
    this.congested = false
  }
}

const ndjson = (...lines: string[]) => lines.map((line) => `${line}\n`).join('')
const anonymousClient = (output?: TokenBucket) => ({allowAgent: [], allowService: [], limiter: new TokenBucket(1e9, 1e9, Date.now), output})

/** ingest() of `body` (given whole with its length when `whole`), in pieces of `piece` bytes. */
async function run(body: Buffer | string, options: Partial<IntakeOptions> & {encoding?: string; whole?: boolean; piece?: number} = {}) {
  const sink = (options.output as MemorySink | undefined) ?? new MemorySink()
  const data = Buffer.from(body)
  const stream = new PassThrough()
  const done = ingest(stream, options.encoding, {maxEventSize: 307_200, ...options, contentLength: options.whole ? data.length : undefined, output: sink})
  const piece = options.piece ?? data.length
  for (let at = 0; at < data.length; at += piece) stream.write(data.subarray(at, at + piece))
  stream.end()
  return {result: await done, sink}
}

function nested(depth: number): string {
  return `${'['.repeat(depth)}${']'.repeat(depth)}`
}

describe('server/limits', () => {
  describe('MemoryBudget', () => {
    it('refuses a reservation that would pass the limit, taking nothing, and takes it again once released', () => {
      const budget = new MemoryBudget(100)
      const a = budget.account()
      const b = budget.account()
      assert.equal(a.reserve(60), true)
      assert.equal(b.reserve(50), false)
      assert.equal(budget.held, 60)
      a.release(20)
      assert.equal(b.reserve(50), true)
      assert.equal(budget.held, 90)
      a.close()
      b.close()
      assert.equal(budget.held, 0)
    })

    it('lets all anonymous clients together hold half of it, and one of them a sixteenth', () => {
      const budget = new MemoryBudget(1600)
      const first = budget.account('10.0.0.1')
      assert.equal(first.reserve(100), true)
      assert.equal(first.reserve(1), false, 'a sixteenth per address')
      const others = Array.from({length: 10}, (_, i) => budget.account(`10.0.1.${i}`))
      const taken = others.filter((account) => account.reserve(100)).length
      assert.equal(taken, 7, 'half in all: 800 bytes')
      assert.equal(budget.account().reserve(800), true, 'the other half stays for clients with the token')
    })

    it('never releases more than an account holds', () => {
      const budget = new MemoryBudget(100)
      const a = budget.account()
      const b = budget.account()
      a.reserve(10)
      b.reserve(10)
      a.release(50)
      assert.equal(budget.held, 10)
      a.close()
      assert.equal(budget.held, 10)
    })
  })

  describe('client text', () => {
    it('is cut to a fixed length, saying how much was cut', () => {
      assert.equal(clip('short'), 'short')
      assert.equal(clip('x'.repeat(CLIENT_TEXT_MAX + 10)), `${'x'.repeat(CLIENT_TEXT_MAX)}…(10 more)`)
      assert.equal(documentOf(Buffer.from('y'.repeat(DOCUMENT_MAX))), 'y'.repeat(DOCUMENT_MAX))
      assert.equal(documentOf(Buffer.from('y'.repeat(300_000))), `${'y'.repeat(DOCUMENT_MAX)}…(${300_000 - DOCUMENT_MAX} more bytes)`)
    })

    it('an unknown type named by 300,000 characters: its message and document stay short', async () => {
      const line = `{"${'A'.repeat(300_000)}":{}}`
      const {result} = await run(ndjson(METADATA, line, line))
      assert.equal(result.invalid, 2)
      for (const error of result.errors) {
        assert.ok(error.message.length < 200, error.message.slice(0, 300))
        assert.ok(error.document!.length < DOCUMENT_MAX + 50)
      }
    })
  })

  describe('nesting depth and containers, before any line is parsed', () => {
    const atDepth = (depth: number) => `{"span":{"x":${nested(depth - 2)}}}`
    const withContainers = (count: number) => `{"span":{"x":[${Array.from({length: count - 3}, () => '[]').join(',')}]}}`
    const cases: Array<[string, string, boolean]> = [
      [`a line ${MAX_LINE_DEPTH} levels deep`, atDepth(MAX_LINE_DEPTH), true],
      [`a line ${MAX_LINE_DEPTH + 1} levels deep`, atDepth(MAX_LINE_DEPTH + 1), false],
      [`a line of ${MAX_LINE_CONTAINERS} arrays and objects`, withContainers(MAX_LINE_CONTAINERS), true],
      [`a line of ${MAX_LINE_CONTAINERS + 1} arrays and objects`, withContainers(MAX_LINE_CONTAINERS + 1), false],
      ['a line 6,000 levels deep', atDepth(6000), false],
    ]
    for (const [name, line, fits] of cases) {
      it(`${name}: ${fits ? 'stored' : 'refused'} alike by the fast path, the slow path and an anonymous client`, async () => {
        assert.equal(eventMembers(Buffer.from(line)) !== undefined, fits, 'fast path')
        for (const client of [undefined, anonymousClient()]) {
          // A carriage return sends the line down the slow path even with the token.
          for (const ending of ['', '\r']) {
            // eslint-disable-next-line no-await-in-loop -- one at a time
            const {result, sink} = await run(ndjson(METADATA, `${line}${ending}`), {anonymous: client})
            assert.deepEqual([result.status, result.accepted, result.errors.map((error) => error.message)], fits ? [202, 1, []] : [400, 0, [LINE_TOO_COMPLEX]])
            if (fits) assert.deepEqual(JSON.parse(sink.lines[0]).span, JSON.parse(line).span)
          }
        }
      })
    }

    it('scanJsonValue counts like the slow path: the bounds passed are the last accepted', () => {
      const value = Buffer.from(nested(5))
      assert.equal(scanJsonValue(value, 0, value.length, 5, 5), value.length)
      assert.equal(scanJsonValue(value, 0, value.length, 4, 5), -1)
      assert.equal(scanJsonValue(value, 0, value.length, 5, 4), -1)
      const flat = Buffer.from('[[],{},[]]')
      assert.equal(scanJsonValue(flat, 0, flat.length, 2, 4), flat.length)
      assert.equal(scanJsonValue(flat, 0, flat.length, 2, 3), -1)
    })

    for (const whole of [false, true]) {
      it(`a metadata line 6,000 levels deep (119 bytes gzipped), read ${whole ? 'whole' : 'streamed'}: 400, never an exception`, async () => {
        const metadata = METADATA.replace('}}}', `},"x":${nested(6000)}}}`)
        const {result} = await run(gzipSync(ndjson(metadata, SPAN)), {whole})
        assert.deepEqual([result.status, result.errors[0].message], [400, LINE_TOO_COMPLEX])
      })
    }
  })

  describe('output against the request size', () => {
    const bigMetadata = JSON.stringify({metadata: {labels: {pad: 'x'.repeat(100_000)}, service: {agent: {name: 'nodejs', version: '4.0.0'}, name: 'big'}}})

    it('ends a request whose events would write more than the multiple of what it sent, listing what was accepted', async () => {
      const body = ndjson(bigMetadata, ...Array.from({length: 900}, () => '{"span":{}}'))
      const {result, sink} = await run(gzipSync(body), {outputMultiple: 8})
      const written = sink.lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0)
      assert.deepEqual([result.status, result.errors.map((error) => error.message)], [400, [OUTPUT_LIMIT_EXCEEDED]])
      assert.equal(result.accepted, sink.lines.length)
      assert.ok(result.accepted >= 7 && written <= 8 * Buffer.byteLength(body), `${result.accepted} accepted, ${written} bytes written`)
    })

    it('leaves an agent request alone: events larger than a sixty-fourth of the metadata', async () => {
      const spans = Array.from({length: 500}, (_, i) => JSON.stringify({span: {id: `s${i}`, name: `SELECT ${i}`, pad: 'p'.repeat(2000)}}))
      const {result} = await run(ndjson(bigMetadata, ...spans), {outputMultiple: 64})
      assert.deepEqual([result.status, result.accepted], [202, 500])
    })

    it('an anonymous metadata line is at most 8 KiB', async () => {
      const labels = (size: number) => JSON.stringify({metadata: {labels: {pad: 'x'.repeat(size)}, service: {agent: {name: 'rum-js', version: '5'}, name: 'web'}}})
      const fits = labels(ANONYMOUS_METADATA_MAX_BYTES - 200)
      const over = labels(ANONYMOUS_METADATA_MAX_BYTES)
      assert.deepEqual((await run(ndjson(fits, SPAN), {anonymous: anonymousClient()})).result.status, 202)
      const {result} = await run(ndjson(over, SPAN), {anonymous: anonymousClient()})
      assert.deepEqual([result.status, result.accepted, result.errors[0].message], [400, 0, ANONYMOUS_METADATA_TOO_LARGE])
      assert.equal((await run(ndjson(over, SPAN))).result.status, 202, 'with the token it is bounded by max_event_size only')
    })

    it("an anonymous client's events are charged to its address's output allowance, which refills with time", async () => {
      let now = 0
      const allowance = new TokenBucket(10_000, 30_000, () => now)
      const spans = Array.from({length: 100}, (_, i) => JSON.stringify({span: {id: `s${i}`, name: 'n'.repeat(1000)}}))
      const first = await run(ndjson(METADATA, ...spans), {anonymous: anonymousClient(allowance)})
      assert.deepEqual([first.result.status, first.result.errors.map((error) => error.message)], [429, [ANONYMOUS_OUTPUT_RATE_EXCEEDED]])
      const bytes = first.sink.lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0)
      assert.ok(bytes <= 30_000 && first.result.accepted > 20, `${first.result.accepted} accepted, ${bytes} bytes`)
      assert.equal((await run(ndjson(METADATA, spans[0]), {anonymous: anonymousClient(allowance)})).result.status, 429)
      now += 1000
      assert.equal((await run(ndjson(METADATA, spans[0]), {anonymous: anonymousClient(allowance)})).result.status, 202)
    })
  })

  describe('decoded bytes and rejected lines (fix-net finding 7)', () => {
    const NODE_METADATA = METADATA.replace('rum-js', 'nodejs')
    /** A gzip body of the metadata, then `mib` MiB of `unit` repeated, then `tail`. */
    const bomb = (mib: number, unit: string, tail = '') => {
      const gzip = createGzip({level: 9})
      const parts: Buffer[] = []
      gzip.on('data', (chunk: Buffer) => parts.push(chunk))
      gzip.write(`${NODE_METADATA}\n`)
      const block = Buffer.alloc(1024 * 1024, unit)
      for (let i = 0; i < mib; i++) gzip.write(block)
      gzip.end(tail)
      return new Promise<Buffer>((resolve) => {
        gzip.on('end', () => resolve(Buffer.concat(parts)))
      })
    }

    it(`ends a request that decodes to more than ${REQUEST_DECODED_MAX_BYTES / 2 ** 20} MiB (a gzip of newlines), listing what was accepted`, async () => {
      const body = await bomb(REQUEST_DECODED_MAX_BYTES / 2 ** 20 + 1, '\n', `${SPAN}\n`)
      const {result} = await run(body, {piece: 64 * 1024})
      assert.deepEqual([result.status, result.accepted, result.errors.map((error) => error.message)], [400, 0, [REQUEST_DECODED_TOO_LARGE]])
    })

    it(`ends a request after ${MAX_REJECTED_LINES} invalid or oversized lines, listing the first ones`, async () => {
      const lines = [...Array.from({length: 500}, () => 'x'), ...Array.from({length: 600}, () => '{}'), SPAN]
      const {result} = await run(ndjson(NODE_METADATA, SPAN, ...lines))
      assert.deepEqual([result.status, result.accepted, result.invalid], [400, 1, MAX_REJECTED_LINES + 1])
      assert.deepEqual([result.errors.length, result.errors.at(-1)?.message], [6, TOO_MANY_REJECTED_LINES])
      assert.equal((await run(ndjson(NODE_METADATA, ...lines.slice(0, MAX_REJECTED_LINES), SPAN))).result.accepted, 1, 'up to the bound the rest is read')
    })

    it('an anonymous client is charged for the bytes it sends decoded, valid or not, and its allowance refills with time', async () => {
      let now = 0
      const decoded = new TokenBucket(1024 * 1024, 3 * 1024 * 1024, () => now)
      const client = () => ({...anonymousClient(), decoded})
      const body = await bomb(8, '\n')
      const first = await run(body, {anonymous: client(), piece: 64 * 1024})
      assert.deepEqual([first.result.status, first.result.errors.map((error) => error.message)], [429, [ANONYMOUS_DECODED_RATE_EXCEEDED]])
      assert.equal((await run(ndjson(METADATA, SPAN), {anonymous: client()})).result.status, 429)
      now += 1000
      assert.equal((await run(ndjson(METADATA, SPAN), {anonymous: client()})).result.status, 202)
    })

    it('empty and invalid lines earn no output: only the metadata and the accepted events count toward the multiple', async () => {
      const bigMetadata = JSON.stringify({metadata: {labels: {pad: 'x'.repeat(100_000)}, service: {agent: {name: 'nodejs', version: '4.0.0'}, name: 'big'}}})
      const padding = `${'\n'.repeat(4 * 1024 * 1024)}${'x\n'.repeat(MAX_REJECTED_LINES)}`
      const body = `${bigMetadata}\n${padding}${ndjson(...Array.from({length: 200}, () => '{"span":{}}'))}`
      const {result, sink} = await run(gzipSync(body), {outputMultiple: 64})
      const written = sink.lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0)
      assert.equal(result.status, 400)
      assert.equal(result.errors.at(-1)?.message, OUTPUT_LIMIT_EXCEEDED)
      assert.ok(written <= 64 * (bigMetadata.length + 1 + 12 * result.accepted), `${result.accepted} accepted, ${written} bytes written`)
    })
  })

  describe('memory held, against the budget', () => {
    const events = Array.from({length: 200}, (_, i) => JSON.stringify({span: {id: `s${i}`, name: 'n'.repeat(200)}}))
    const body = gzipSync(ndjson(METADATA.replace('rum-js', 'nodejs'), ...events))

    it('reads a whole body within the budget, holding at most its decoded size after decoding, and releases it all', async () => {
      const budget = new MemoryBudget(64 * 1024 * 1024)
      const account = budget.account()
      let most = 0
      const sink = new MemorySink()
      sink.write = function (line) {
        most = Math.max(most, budget.held)
        this.lines.push(typeof line === 'string' ? line : Buffer.concat(line).toString('utf8'))
      }

      const {result} = await run(body, {memory: account, output: sink, whole: true})
      assert.deepEqual([result.status, result.accepted], [202, 200])
      assert.ok(most > 0 && most < WHOLE_BODY_DECODED_MAX_BYTES, `held ${most} bytes`)
      account.close()
      assert.equal(budget.held, 0)
    })

    it('reads a whole body that does not fit as a stream instead, with the same result', async () => {
      const budget = new MemoryBudget(WHOLE_BODY_DECODED_MAX_BYTES - 1)
      const {result, sink} = await run(body, {memory: budget.account(), whole: true})
      assert.deepEqual([result.status, result.accepted, sink.lines.length], [202, 200, 200])
    })

    // The metadata is held as `{"metadata":{...},`: as many bytes as its line.
    const head = Buffer.byteLength(METADATA)
    const plain = Buffer.from(ndjson(METADATA.replace('rum-js', 'nodejs'), ...events))
    const refusals: Array<[string, number, Buffer, number | undefined, number]> = [
      ['a zlib stream', DECODER_BYTES - 1, body, undefined, 0],
      ['the metadata', head - 1, plain, undefined, 0],
      ['the start of a line held across chunks (after the events before it)', head + 10, plain, 1000, 3],
    ]
    for (const [what, limit, data, piece, acceptedBefore] of refusals) {
      it(`answers 503 "${QUEUE_FULL}" when ${what} does not fit`, async () => {
        const {result} = await run(data, {memory: new MemoryBudget(limit).account(), piece})
        assert.deepEqual([result.status, result.accepted, result.errors.at(-1)?.message], [503, acceptedBefore, QUEUE_FULL])
      })
    }
  })

  describe('memory held is what is charged, however small the pieces (fix-net finding 1)', () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    /** Heap bytes in use after a full collection. */
    const heapInUse = () => {
      gc()
      return process.memoryUsage().heapUsed
    }

    /** Starts `count` requests of `body`, each written in 1-byte pieces but not ended; returns what ends them. */
    async function holdInPieces(count: number, body: Buffer, whole: boolean) {
      const budget = new MemoryBudget(1024 * 1024 * 1024)
      const streams = Array.from({length: count}, () => new PassThrough({highWaterMark: 1}))
      const done = streams.map((stream) =>
        ingest(stream, undefined, {contentLength: whole ? body.length + 1 : undefined, maxEventSize: 307_200, memory: budget.account(), output: new MemorySink()}),
      )
      for (const stream of streams) for (let at = 0; at < body.length; at++) stream.write(body.subarray(at, at + 1))
      await nextTurn()
      return {
        budget,
        end: () => {
          for (const stream of streams) stream.end('\n')
          return Promise.all(done)
        },
      }
    }

    const cases: Array<[string, Buffer, boolean]> = [
      ['a line that never ends, streamed', Buffer.from(`${METADATA}\n{"span":{"name":"${'a'.repeat(250_000)}`), false],
      ['a whole body (Content-Length, at most 64 KiB)', Buffer.from(`${METADATA}\n{"span":{"name":"${'a'.repeat(60_000)}`), true],
    ]
    for (const [what, body, whole] of cases) {
      it(`${what}, sent in 1-byte pieces by 8 requests: the heap grows by little more than the budget holds`, async () => {
        const before = heapInUse()
        const held = await holdInPieces(8, body, whole)
        const grown = heapInUse() - before
        const charged = held.budget.held
        // A Buffer view per piece held cost ~100 bytes of heap each: 8 x 250,000 pieces, ~200 MB.
        assert.ok(charged >= 8 * (body.length - METADATA.length - 1), `charged ${charged} bytes`)
        assert.ok(grown < charged + 8 * 1024 * 1024, `heap grew ${(grown / 2 ** 20).toFixed(1)} MiB holding ${(charged / 2 ** 20).toFixed(1)} MiB charged`)
        const results = await held.end()
        assert.deepEqual(
          results.map((result) => result.status),
          Array.from({length: 8}, () => 400),
        )
      })
    }
  })

  describe('OTLP bodies and gRPC messages: memory held is what is charged, however small the pieces (fix-net finding 1)', () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const heapInUse = () => {
      gc()
      return process.memoryUsage().heapUsed
    }

    const SIZE = 250_000
    /** gRPC's flag byte (not compressed) and message length. */
    const frameHeader = (length: number) => {
      const header = Buffer.alloc(5)
      header.writeUInt32BE(length, 1)
      return header
    }

    const readers: Array<[string, (stream: PassThrough, memory: MemoryAccount) => Promise<number>, Buffer]> = [
      [
        'an OTLP/HTTP body (no Content-Length)',
        async (stream, memory) => {
          const read = await readBody(stream, {maxBytes: OTLP_HTTP_MAX_BYTES, memory})
          return 'body' in read ? read.body.length : -read.status
        },
        Buffer.alloc(0),
      ],
      [
        'a gRPC message (HTTP/2 DATA frames of one byte)',
        async (stream, memory) => {
          const read = await readFramed(stream, memory)
          return 'code' in read ? -read.code : read.message.length
        },
        frameHeader(SIZE),
      ],
    ]
    for (const [what, read, head] of readers) {
      it(`${what}, sent in 1-byte pieces by 8 requests: the heap grows by little more than the budget holds`, async () => {
        const before = heapInUse()
        const budget = new MemoryBudget(1024 * 1024 * 1024)
        const streams = Array.from({length: 8}, () => new PassThrough({highWaterMark: 1}))
        const done = streams.map((stream) => read(stream, budget.account()))
        const body = Buffer.concat([head, Buffer.alloc(SIZE, 0x61)])
        for (const stream of streams) for (let at = 0; at < body.length; at++) stream.write(body.subarray(at, at + 1))
        await nextTurn()
        const grown = heapInUse() - before
        const charged = budget.held
        // A Buffer kept per piece cost ~100 bytes of heap each: 8 x 250,000 pieces, ~200 MB.
        assert.ok(charged >= 8 * SIZE, `charged ${charged} bytes`)
        assert.ok(grown < charged + 8 * 1024 * 1024, `heap grew ${(grown / 2 ** 20).toFixed(1)} MiB holding ${(charged / 2 ** 20).toFixed(1)} MiB charged`)
        for (const stream of streams) stream.end()
        assert.deepEqual(
          await Promise.all(done),
          Array.from({length: 8}, () => SIZE),
        )
      })
    }
  })

  describe('the end of a request', () => {
    it('ends at once when the connection goes after the whole body arrived (a decompressor would go on for seconds)', async () => {
      const bomb = gzipSync(Buffer.concat([Buffer.from(`${METADATA}\n`), Buffer.alloc(64 * 1024 * 1024, 0x0a)]))
      const stream = new PassThrough()
      const connection = new EventEmitter()
      const sink = new MemorySink()
      const done = ingest(stream, 'gzip', {connection, maxEventSize: 307_200, output: sink})
      stream.end(bomb)
      await sleep(20)
      connection.emit('close')
      const aborted = await Promise.race([done, nextTurn().then(() => nextTurn()).then(() => 'still reading')])
      assert.notEqual(aborted, 'still reading')
      assert.deepEqual((aborted as IntakeResult).errors.at(-1), {message: 'the client closed the request before its end'})
    })

    for (const whole of [false, true]) {
      it(`an error that is not the client's (a write that throws), read ${whole ? 'whole' : 'streamed'}: a 500, reported once, never thrown out of a listener`, async () => {
        const sink = new MemorySink()
        sink.write = () => {
          throw new RangeError('Maximum call stack size exceeded')
        }

        const reported: Error[] = []
        const {result} = await run(gzipSync(ndjson(METADATA, SPAN, SPAN)), {onUnexpectedError: (error) => reported.push(error), output: sink, whole})
        assert.deepEqual([result.status, result.errors.map((error) => error.message)], [500, [INTERNAL_ERROR]])
        assert.deepEqual(
          reported.map((error) => error.message),
          ['Maximum call stack size exceeded'],
        )
      })
    }
  })
})
