import assert from 'node:assert/strict'
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {PassThrough} from 'node:stream'
import {setImmediate as nextTurn, setTimeout as sleep} from 'node:timers/promises'
import {deflateSync, gzipSync} from 'node:zlib'

import {eventMembers, scanJsonValue} from '../../src/server/intake/json-scan.js'
import {FAIR_SHARE_BYTES} from '../../src/server/intake/line-feed.js'
import {EVENT_TOO_LARGE, intakeResponseBody, IntakeResult} from '../../src/server/intake/model.js'
import {checkIntakeRequest, ingest, IntakeOptions, WHOLE_BODY_DECODED_MAX_BYTES, WHOLE_BODY_MAX_BYTES} from '../../src/server/intake/v2.js'
import {FileOutput, TICK_BUDGET_BYTES} from '../../src/server/outputs/file.js'
import type {EventSink} from '../../src/server/outputs/output.js'
import {TokenBucket} from '../../src/server/anonymous.js'
import {makeTempDir} from '../helpers/cli.js'

const METADATA_OBJECT = {service: {agent: {name: 'nodejs', version: '4.18.0'}, name: 'intake-test'}}
const METADATA = JSON.stringify({metadata: METADATA_OBJECT})
const TRANSACTION = JSON.stringify({transaction: {duration: 1.5, id: 'tx1', name: 'GET /', trace_id: 't1', type: 'request'}})
const SPAN = JSON.stringify({span: {duration: 0.2, id: 'sp1', name: 'SELECT', type: 'db'}})
const ERROR = JSON.stringify({error: {exception: {message: 'boom'}, id: 'er1'}})
const METRICSET = JSON.stringify({metricset: {samples: {'system.cpu.total.norm.pct': {value: 0.1}}, timestamp: 1}})
const LOG = JSON.stringify({log: {message: 'hello'}})
const GOOD = [TRANSACTION, SPAN, ERROR, METRICSET, LOG]

/** What the output holds for an event line, given as the event line. */
function stored(eventLine: string, metadata = METADATA_OBJECT): string {
  const event = JSON.parse(eventLine) as Record<string, unknown>
  const [type] = Object.keys(event)
  return JSON.stringify({metadata, [type]: event[type]})
}

class MemorySink implements EventSink {
  lines: string[] = []
  flushes = 0
  congested = false
  failures = 0
  lastFailure?: Error
  write(line: string | readonly Buffer[]): void {
    this.lines.push(typeof line === 'string' ? line : Buffer.concat(line).toString('utf8'))
  }

  async flush(): Promise<void> {
    this.flushes++
    this.congested = false
  }
}

/** How run() declares the body: `streamed` as chunked requests (no length), `whole` with its Content-Length. */
type ReadMode = 'streamed' | 'whole'
let readMode: ReadMode = 'streamed'

/** Runs the tests `define` makes in both read modes: the results must not depend on how the body is read. */
function inBothReadModes(define: () => void): void {
  for (const mode of ['streamed', 'whole'] as const) {
    describe(`read ${mode}`, () => {
      before(() => {
        readMode = mode
      })
      after(() => {
        readMode = 'streamed'
      })
      define()
    })
  }
}

/** Feeds `pieces` to ingest() through a stream, optionally waiting between pieces, as a network would. */
async function run(pieces: Buffer[] | Buffer | string, options: {encoding?: string; delayMs?: number; sink?: EventSink} & Partial<IntakeOptions> = {}) {
  const sink = options.sink ?? new MemorySink()
  const body = new PassThrough()
  const list = Array.isArray(pieces) ? pieces : [Buffer.from(pieces)]
  const contentLength = options.contentLength ?? (readMode === 'whole' ? list.reduce((sum, piece) => sum + piece.length, 0) : undefined)
  const result = ingest(body, options.encoding, {anonymous: options.anonymous, contentLength, maxEventSize: options.maxEventSize ?? 307_200, output: sink})
  for (const piece of list) {
    if (options.delayMs) await sleep(options.delayMs) // eslint-disable-line no-await-in-loop -- a slow network
    body.write(piece)
  }

  body.end()
  return {result: await result, sink: sink as MemorySink}
}

function ndjson(...lines: string[]): string {
  return lines.map((line) => `${line}\n`).join('')
}

function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size))
  return out
}

function accepted(count: number): Omit<IntakeResult, 'stopped'> & {stopped: boolean} {
  return {accepted: count, errors: [], invalid: 0, status: 202, stopped: false, tooLarge: 0}
}

describe('server/intake', () => {
  inBothReadModes(() => {
    describe('bodies', () => {
      const body = ndjson(METADATA, ...GOOD)
      const cases: [string, Buffer | Buffer[], string | undefined][] = [
        ['plain', Buffer.from(body), undefined],
        ['plain with a Content-Encoding it does not name', Buffer.from(body), 'identity'],
        ['gzip, named', gzipSync(body), 'gzip'],
        ['gzip, sniffed', gzipSync(body), undefined],
        ['deflate, named', deflateSync(body), 'deflate'],
        ['deflate, sniffed', deflateSync(body), undefined],
        ['plain in 1-byte pieces', pieces(Buffer.from(body), 1), undefined],
        ['gzip in 3-byte pieces', pieces(gzipSync(body), 3), undefined],
        ['deflate in 5-byte pieces', pieces(deflateSync(body), 5), 'deflate'],
      ]
      for (const [name, data, encoding] of cases) {
        it(`reads ${name}: every event lands, with its metadata, in order`, async () => {
          const {result, sink} = await run(Array.isArray(data) ? data : [data], {encoding})
          assert.deepEqual(result, accepted(5))
          assert.deepEqual(sink.lines, GOOD.map((line) => stored(line)))
        })
      }

      it('reads a body streamed in pieces with pauses between them (an agent holding its request open)', async () => {
        const data = gzipSync(ndjson(METADATA, TRANSACTION, SPAN, ERROR))
        const {result, sink} = await run(pieces(data, Math.ceil(data.length / 6)), {delayMs: 30})
        assert.deepEqual(result, accepted(3))
        assert.equal(sink.lines.length, 3)
      })

      it('accepts CRLF line ends, empty lines between events, and a last line without a newline', async () => {
        const {result, sink} = await run(`${METADATA}\r\n\n${TRANSACTION}\r\n\n\n${SPAN}`)
        assert.deepEqual(result, accepted(2))
        assert.deepEqual(sink.lines, [stored(TRANSACTION), stored(SPAN)])
      })

      it('answers an empty body with 202 and nothing accepted, as the Go server does', async () => {
        assert.deepEqual((await run([])).result, accepted(0))
        assert.deepEqual((await run(ndjson(METADATA))).result, accepted(0))
      })

      it('keeps a value exactly as sent (no coercion, unicode intact)', async () => {
        const line = JSON.stringify({transaction: {id: '0x1F', labels: {on: 'on', n: '007'}, name: 'naïve ✓'}})
        const {sink} = await run(ndjson(METADATA, line))
        assert.deepEqual(sink.lines, [stored(line)])
      })
    })

    describe('bad input', () => {
      const table: [string, string, Partial<IntakeResult>][] = [
        [
          'invalid JSON',
          ndjson(METADATA, '{"transaction": {bad', TRANSACTION),
          {accepted: 1, errors: [{document: '{"transaction": {bad', message: "data read error: Expected property name or '}' in JSON at position 17"}], invalid: 1, status: 400},
        ],
        [
          'an unknown type',
          ndjson(METADATA, '{"tennis-court": {"name": "Centre Court, Wimbledon"}}'),
          {accepted: 0, errors: [{document: '{"tennis-court": {"name": "Centre Court, Wimbledon"}}', message: 'did not recognize object type: "tennis-court"'}], invalid: 1, status: 400},
        ],
        [
          'a line without a quoted key',
          ndjson(METADATA, '{ 42 }', TRANSACTION),
          {accepted: 1, errors: [{document: '{ 42 }', message: 'did not recognize object type: ""'}], invalid: 1, status: 400},
        ],
        [
          'an event that is not an object',
          ndjson(METADATA, '{"span": null}', '{"error": [1]}'),
          {
            accepted: 0,
            errors: [
              {document: '{"span": null}', message: "validation error: 'span' required"},
              {document: '{"error": [1]}', message: "validation error: 'error' required"},
            ],
            invalid: 2,
            status: 400,
          },
        ],
        [
          'a JSON array line',
          ndjson(METADATA, '["transaction"]'),
          {accepted: 0, errors: [{document: '["transaction"]', message: 'data read error: expected a JSON object, got an array'}], invalid: 1, status: 400},
        ],
      ]
      for (const [name, body, expected] of table) {
        it(`${name}: reported, and the rest of the body still read`, async () => {
          const {result} = await run(body)
          assert.deepEqual(result, {...accepted(0), tooLarge: 0, ...expected})
        })
      }

      const metadataTable: [string, string, string][] = [
        ['no metadata line', ndjson(TRANSACTION), '"metadata" or "m" required'],
        ['an empty first line', ndjson('', METADATA, TRANSACTION), '"metadata" or "m" required'],
        ['metadata that is not JSON', ndjson('{"metadata": {', TRANSACTION), "data read error: Expected property name or '}' in JSON at position 14"],
        ['a null metadata', ndjson('{"metadata": null}'), "validation error: 'metadata' required"],
        ['a metadata of nulls', ndjson('{"metadata": {"user": null}}'), "validation error: 'metadata' required"],
        ['no service', ndjson('{"metadata": {"user": {"id": "1"}}}'), "validation error: metadata: 'service' required"],
        ['no agent', ndjson('{"metadata": {"service": {"name": "a"}}}'), "validation error: metadata: service: 'agent' required"],
        ['no agent name', ndjson('{"metadata": {"service": {"name": "a", "agent": {"version": "1"}}}}'), "validation error: metadata: service: agent: 'name' required"],
        [
          'an empty agent name',
          ndjson('{"metadata": {"service": {"name": "a", "agent": {"name": "", "version": "1"}}}}'),
          "validation error: metadata: service: agent: 'name': validation rule 'minLength(1)' violated",
        ],
        ['no agent version', ndjson('{"metadata": {"service": {"name": "a", "agent": {"name": "go"}}}}'), "validation error: metadata: service: agent: 'version' required"],
        ['no service name', ndjson('{"metadata": {"service": {"agent": {"name": "go", "version": "1"}}}}'), "validation error: metadata: service: 'name' required"],
        [
          'a service name with a slash',
          ndjson('{"metadata": {"service": {"name": "a/b", "agent": {"name": "go", "version": "1"}}}}'),
          "validation error: metadata: service: 'name': validation rule 'pattern(patternAlphaNumericExt)' violated",
        ],
        ['a metadata line with no newline at the end of the body', METADATA, 'EOF while reading metadata'],
      ]
      for (const [name, body, message] of metadataTable) {
        it(`${name}: 400 "${message}", nothing read after it`, async () => {
          const {result, sink} = await run(body)
          const document = body.split('\n')[0]
          assert.deepEqual(result, {accepted: 0, errors: [{document, message}], invalid: 0, status: 400, stopped: true, tooLarge: 0})
          assert.deepEqual(sink.lines, [])
        })
      }

      it('lists at most 5 line errors but counts them all', async () => {
        const bad = Array.from({length: 8}, (_, i) => `{"bad${i}": {}}`)
        const {result} = await run(ndjson(METADATA, TRANSACTION, ...bad, SPAN))
        assert.equal(result.status, 400)
        assert.equal(result.accepted, 2)
        assert.equal(result.invalid, 8)
        assert.deepEqual(
          result.errors.map((error) => error.message),
          [0, 1, 2, 3, 4].map((i) => `did not recognize object type: "bad${i}"`),
        )
        assert.deepEqual(intakeResponseBody(result, false), {accepted: 2, errors: result.errors})
      })
    })

    describe('max_event_size', () => {
      const max = 200
      const long = JSON.stringify({transaction: {id: 'x'.repeat(500)}})

      it('skips a longer line whole, reports its first max_event_size bytes, and reads on', async () => {
        const {result, sink} = await run(ndjson(METADATA, TRANSACTION, long, SPAN), {maxEventSize: max})
        assert.deepEqual(result, {accepted: 2, errors: [{document: long.slice(0, max), message: EVENT_TOO_LARGE}], invalid: 0, status: 400, stopped: false, tooLarge: 1})
        assert.deepEqual(sink.lines, [stored(TRANSACTION), stored(SPAN)])
      })

      it('does the same when the long line arrives in many small pieces', async () => {
        const data = Buffer.from(ndjson(METADATA, long, long, TRANSACTION))
        const {result} = await run(pieces(data, 7), {maxEventSize: max})
        assert.equal(result.accepted, 1)
        assert.equal(result.tooLarge, 2)
        assert.deepEqual(
          result.errors.map((error) => [error.message, error.document]),
          [
            [EVENT_TOO_LARGE, long.slice(0, max)],
            [EVENT_TOO_LARGE, long.slice(0, max)],
          ],
        )
      })

      it('takes a line of exactly max_event_size bytes', async () => {
        const exact = JSON.stringify({span: {id: 'y'.repeat(max - 18)}})
        assert.equal(exact.length, max)
        const {result} = await run(ndjson(METADATA, exact), {maxEventSize: max})
        assert.deepEqual(result, accepted(1))
      })

      it('ends the request when the metadata line is too long', async () => {
        const {result} = await run(ndjson(METADATA, TRANSACTION), {maxEventSize: 20})
        assert.deepEqual(result, {accepted: 0, errors: [{document: METADATA.slice(0, 20), message: EVENT_TOO_LARGE}], invalid: 0, status: 400, stopped: true, tooLarge: 0})
      })
    })

    it('reads on after waiting for a congested output, to the last line, also when the body ended meanwhile', async () => {
      // Congested after every line: the reader waits each time it wrote its share, FAIR_SHARE_BYTES, that
      // is every 16 lines, while the decompressor goes on (and ends) without it.
      const metadata = {...METADATA_OBJECT, labels: {pad: 'x'.repeat(FAIR_SHARE_BYTES / 16)}}
      const head = `{"metadata":${JSON.stringify(metadata)},`
      const sink = new MemorySink()
      const events: string[] = []
      sink.write = function (line) {
        // The lines are long: keep what follows the metadata.
        const text = typeof line === 'string' ? line : Buffer.concat(line).toString('utf8')
        assert.ok(text.startsWith(head))
        this.lines.push(text.slice(head.length))
        this.congested = true
      }

      for (let i = 0; i < 2000; i++) events.push(JSON.stringify({span: {id: `s${i}`}}))
      const {result} = await run(gzipSync(ndjson(JSON.stringify({metadata}), ...events)), {sink})
      assert.deepEqual(result, accepted(events.length))
      assert.deepEqual(sink.lines, events.map((line) => stored(line, metadata).slice(head.length)))
      assert.ok(sink.flushes >= 100, `flushed ${sink.flushes} times`)
    })

    describe('compressed streams that break', () => {
      it('a gzip header on a body that is not gzip: 400 "gzip: invalid header"', async () => {
        const {result} = await run(Buffer.from(ndjson(METADATA)), {encoding: 'gzip'})
        assert.deepEqual(result, {accepted: 0, errors: [{message: 'data decoding error: gzip: invalid header'}], invalid: 0, status: 400, stopped: true, tooLarge: 0})
      })

      it('a deflate header on a body that is not deflate: 400 "zlib: invalid header"', async () => {
        const {result} = await run(Buffer.from(ndjson(METADATA)), {encoding: 'deflate'})
        assert.deepEqual(result.errors, [{message: 'data decoding error: zlib: invalid header'}])
        assert.equal(result.status, 400)
      })

      it('a truncated gzip stream: the events before the cut are accepted, then 400', async () => {
        const data = gzipSync(ndjson(METADATA, TRANSACTION, SPAN))
        const {result, sink} = await run(data.subarray(0, data.length - 12))
        assert.equal(result.status, 400)
        assert.deepEqual(result.errors, [{message: 'data decoding error: unexpected end of file'}])
        assert.equal(result.accepted, sink.lines.length)
      })
    })
  })

  describe('bodies declared with a length', () => {
    it(`reads one of at most ${WHOLE_BODY_MAX_BYTES} bytes whole, before any line is handled`, async () => {
      const sink = new MemorySink()
      const body = new PassThrough()
      const data = gzipSync(ndjson(METADATA, TRANSACTION, SPAN))
      const result = ingest(body, 'gzip', {contentLength: data.length, maxEventSize: 307_200, output: sink})
      body.write(data.subarray(0, 10))
      await sleep(20)
      assert.deepEqual(sink.lines, [], 'nothing decoded before the end of the body')
      body.end(data.subarray(10))
      assert.deepEqual(await result, accepted(2))
      assert.deepEqual(sink.lines, [stored(TRANSACTION), stored(SPAN)])
    })

    it('streams one that decompresses past the bound (a zip bomb, or just many events), with the same result', async () => {
      const padded = JSON.stringify({span: {duration: 0.2, id: 'sp1', name: 'x'.repeat(8000), type: 'db'}})
      const lines = Array.from({length: Math.ceil(WHOLE_BODY_DECODED_MAX_BYTES / padded.length) + 10}, () => padded)
      const data = gzipSync(ndjson(METADATA, ...lines))
      assert.ok(data.length <= WHOLE_BODY_MAX_BYTES, `the test body is ${data.length} bytes`)
      const {result, sink} = await run(data, {contentLength: data.length})
      assert.deepEqual(result, accepted(lines.length))
      assert.equal(sink.lines.length, lines.length)
    })

    it('decodes a gzip body into a buffer of its own size, as its trailer says, not a 64 KiB one', async () => {
      // Issue 17: V8 counts every buffer byte allocated since the last mark-compact as old-generation growth
      // until a scavenge frees it; 64 KiB a request sent the server into phases of back-to-back mark-compacts.
      const sink = new MemorySink()
      const buffers: ArrayBufferLike[] = []
      sink.write = (line) => {
        if (typeof line !== 'string') buffers.push(line[1].buffer)
        MemorySink.prototype.write.call(sink, line)
      }

      const text = ndjson(METADATA, ...Array.from({length: 300}, () => TRANSACTION))
      assert.ok(text.length > 16 * 1024 && text.length < WHOLE_BODY_MAX_BYTES, `the test body decodes to ${text.length} bytes`)
      const data = gzipSync(text)
      const {result} = await run(data, {contentLength: data.length, sink})
      assert.deepEqual(result, accepted(300))
      assert.equal(new Set(buffers).size, 1, 'one buffer holds the decoded body')
      assert.equal(buffers[0].byteLength, Buffer.byteLength(text) + 1)
    })

    const judgedAsStreamed = async (data: Buffer) => {
      const whole = await run(data, {contentLength: data.length})
      const streamed = await run(data)
      assert.deepEqual(whole.result, streamed.result)
      assert.deepEqual(whole.sink.lines, streamed.sink.lines)
      return whole
    }

    it('a gzip trailer that lies about the size decides nothing: the result is the streamed one', async () => {
      const data = gzipSync(ndjson(METADATA, ...Array.from({length: 300}, () => SPAN)))
      for (const claimed of [0, 1, 20_000, 0xff_ff_ff_ff]) {
        const forged = Buffer.from(data)
        forged.writeUInt32LE(claimed, forged.length - 4)
        // eslint-disable-next-line no-await-in-loop -- one body after another
        const {result} = await judgedAsStreamed(forged)
        assert.equal(result.status, 400, `a trailer of ${claimed}`)
      }
    })

    it('a body of two gzip members, the last one small, is read whole with every event', async () => {
      const data = Buffer.concat([gzipSync(ndjson(METADATA, ...Array.from({length: 300}, () => SPAN))), gzipSync(ndjson(TRANSACTION))])
      const {result, sink} = await judgedAsStreamed(data)
      assert.deepEqual(result, accepted(301))
      assert.equal(sink.lines.at(-1), stored(TRANSACTION))
    })

    it('streams one declared longer than the bound as it arrives', async () => {
      const sink = new MemorySink()
      const body = new PassThrough()
      const result = ingest(body, undefined, {contentLength: WHOLE_BODY_MAX_BYTES + 1, maxEventSize: 307_200, output: sink})
      body.write(ndjson(METADATA, TRANSACTION))
      await sleep(20)
      assert.deepEqual(sink.lines, [stored(TRANSACTION)])
      body.end()
      assert.deepEqual(await result, accepted(1))
    })
  })

  describe('request checks', () => {
    const table: [string | undefined, string | undefined, string | undefined][] = [
      ['POST', undefined, undefined],
      ['POST', 'application/x-ndjson', undefined],
      ['POST', 'application/x-ndjson; charset=utf-8', undefined],
      ['POST', 'application/json', "invalid content type: 'application/json'"],
      ['POST', 'text/plain', "invalid content type: 'text/plain'"],
      ['GET', 'application/x-ndjson', 'only POST requests are supported'],
      ['PUT', undefined, 'only POST requests are supported'],
    ]
    for (const [method, contentType, message] of table) {
      it(`${method} with content type ${contentType ?? '(none)'} -> ${message ?? 'fine'}`, () => {
        const result = checkIntakeRequest(method, contentType)
        if (message === undefined) assert.equal(result, undefined)
        else assert.deepEqual(intakeResponseBody(result!, false), {accepted: 0, errors: [{message}]})
      })
    }

    it('?verbose shows the count on success; otherwise a success has no body', () => {
      assert.deepEqual(intakeResponseBody(accepted(3), true), {accepted: 3})
      assert.equal(intakeResponseBody(accepted(3), false), undefined)
    })
  })

  describe('anonymous clients', () => {
    const limiter = () => new TokenBucket(1000, 1000, Date.now)

    it('may send data only for the allowed agents: 403 and nothing more read', async () => {
      const {result, sink} = await run(ndjson(METADATA, TRANSACTION, SPAN), {anonymous: {allowAgent: ['rum-js', 'js-base'], allowService: [], limiter: limiter()}})
      assert.deepEqual(result, {
        accepted: 0,
        errors: [{message: 'unauthorized: anonymous access not permitted for agent "nodejs"'}],
        invalid: 0,
        status: 403,
        stopped: true,
        tooLarge: 0,
      })
      assert.deepEqual(sink.lines, [])
    })

    it('cannot slip past allow_service by naming another service in an event', async () => {
      const sneaky = JSON.stringify({transaction: {context: {service: {name: 'other'}}, id: 't2'}})
      const anonymous = {allowAgent: [], allowService: ['intake-test'], limiter: limiter()}
      const {result} = await run(ndjson(METADATA, TRANSACTION, sneaky, SPAN), {anonymous})
      assert.equal(result.status, 403)
      assert.equal(result.accepted, 1)
      assert.deepEqual(result.errors, [{message: 'unauthorized: anonymous access not permitted for service "other"'}])
    })

    it('are stopped with 429 when their events run past the rate limit', async () => {
      let now = 0
      const bucket = new TokenBucket(1, 2, () => now)
      const {result} = await run(ndjson(METADATA, TRANSACTION, SPAN, ERROR, LOG), {anonymous: {allowAgent: [], allowService: [], limiter: bucket}})
      assert.deepEqual(result, {accepted: 2, errors: [{message: 'rate limit exceeded'}], invalid: 0, status: 429, stopped: true, tooLarge: 0})
      now += 1000
      assert.equal(bucket.allow(1), true, 'the bucket refills with time')
    })
  })

  it('waits for a congested output before reading on, once it wrote its share of the turn', async () => {
    const sink = new MemorySink()
    sink.congested = true
    const metadata = {...METADATA_OBJECT, labels: {pad: 'x'.repeat(FAIR_SHARE_BYTES / 2)}}
    const {result} = await run(pieces(Buffer.from(ndjson(JSON.stringify({metadata}), TRANSACTION, SPAN, ERROR)), 4096), {sink})
    assert.deepEqual(result, accepted(3))
    assert.ok(sink.flushes >= 2, `flushed ${sink.flushes} times`)
  })

  it("is not held back by a congested output while under its share: an agent's usual request is read in its turn", async () => {
    const sink = new MemorySink()
    sink.congested = true
    const {result} = await run(pieces(Buffer.from(ndjson(METADATA, TRANSACTION, SPAN)), 40), {sink})
    assert.deepEqual(result, accepted(2))
    assert.equal(sink.flushes, 1, 'only the final flush')
  })

  describe('a tiny body whose output is huge (every line repeats its metadata)', () => {
    // 80 KiB of metadata and 1,000 empty spans: a gzip body of about 200 bytes, 80 MiB of output.
    const metadata = {...METADATA_OBJECT, labels: {pad: 'x'.repeat(80 * 1024)}}
    const lineBytes = JSON.stringify({metadata, span: {}}).length + 1
    const count = 1000
    const data = gzipSync(ndjson(JSON.stringify({metadata}), ...Array.from({length: count}, () => '{"span":{}}')))

    /** A FileOutput that also keeps the most bytes written to it in one turn of the event loop. */
    class TurnMeter implements EventSink {
      most = 0
      total = 0
      private turn = 0
      private timer: NodeJS.Immediate | undefined
      constructor(readonly output: FileOutput) {
        this.sample()
      }

      get congested() {
        return this.output.congested
      }

      get failures() {
        return this.output.failures
      }

      /** bytes written so far */
      get written() {
        return this.total + this.turn
      }

      write(line: string | readonly Buffer[]): void {
        for (const part of line) this.turn += part.length
        this.turn++
        this.output.write(line)
      }

      flush() {
        return this.output.flush()
      }

      stop() {
        clearImmediate(this.timer)
        this.sample()
        clearImmediate(this.timer)
      }

      private sample = () => {
        this.most = Math.max(this.most, this.turn)
        this.total += this.turn
        this.turn = 0
        this.timer = setImmediate(this.sample)
      }
    }

    let tmp: ReturnType<typeof makeTempDir>
    beforeEach(() => {
      tmp = makeTempDir('apm-intake-test-')
    })
    afterEach(() => tmp.cleanup())

    for (const whole of [true, false]) {
      it(`does not hold the event loop, read ${whole ? 'whole' : 'streamed'}: a few MiB a turn, and a request started later is answered first`, async () => {
        assert.ok(data.length < 1024 && count * lineBytes > 5 * 2 * (TICK_BUDGET_BYTES + lineBytes), 'the body makes 5 times more output than 2 turns may write')
        const output = await FileOutput.open({filename: 'apm-server', numberOfFiles: 2, path: tmp.dir, rotateEveryKb: 1024 * 1024})
        const meter = new TurnMeter(output)
        const done: string[] = []
        try {
          const bigBody = new PassThrough()
          const big = ingest(bigBody, 'gzip', {contentLength: whole ? data.length : undefined, maxEventSize: 307_200, output: meter}).then((result) => {
            done.push('big')
            return result
          })
          bigBody.end(data)
          while (meter.written === 0) await nextTurn() // eslint-disable-line no-await-in-loop -- until the big request writes
          const tinyBody = new PassThrough()
          const tinyData = gzipSync(ndjson(METADATA, SPAN))
          const tiny = ingest(tinyBody, 'gzip', {contentLength: whole ? tinyData.length : undefined, maxEventSize: 307_200, output: meter}).then((result) => {
            done.push('tiny')
            return result
          })
          tinyBody.end(tinyData)
          assert.deepEqual(await big, accepted(count))
          assert.deepEqual(await tiny, accepted(1))
        } finally {
          meter.stop()
          await output.close()
        }

        assert.deepEqual(done, ['tiny', 'big'])
        assert.equal(meter.total, count * lineBytes + stored(SPAN).length + 1)
        // A turn may hold the end of one wait and the start of the next: two budgets, each passed by at most a line.
        assert.ok(meter.most <= 2 * (TICK_BUDGET_BYTES + lineBytes), `${meter.most} bytes written in one turn`)
        // Every event stored, the tiny request's among the big one's.
        const lines = (await fs.readFile(path.join(tmp.dir, 'apm-server'), 'utf8')).split('\n')
        assert.equal(lines.pop(), '')
        const bigLine = JSON.stringify({metadata, span: {}})
        const tinyAt = lines.indexOf(stored(SPAN))
        assert.ok(tinyAt > 0 && tinyAt < count, `the tiny request's event is line ${tinyAt}`)
        lines.splice(tinyAt, 1)
        assert.equal(lines.length, count)
        assert.ok(lines.every((line) => line === bigLine), 'the big request\'s events as sent')
      })
    }
  })

  it('answers 500 when a write failed while its lines were queued, even if its own flush succeeds', async () => {
    // Lines of concurrent requests share writes: another request's flush may have lost this one's lines.
    const sink = new MemorySink()
    const body = new PassThrough()
    const result = ingest(body, undefined, {maxEventSize: 307_200, output: sink})
    body.write(ndjson(METADATA, TRANSACTION))
    await sleep(10)
    sink.failures++
    sink.lastFailure = Object.assign(new Error('no space'), {code: 'ENOSPC'})
    body.end(ndjson(SPAN))
    assert.deepEqual(await result, {accepted: 2, errors: [{message: 'internal error: cannot write to the output: ENOSPC'}], invalid: 0, status: 500, stopped: true, tooLarge: 0})
  })

  it('is not blamed for a write that failed before it began', async () => {
    const sink = new MemorySink()
    sink.failures = 3
    assert.deepEqual((await run(ndjson(METADATA, TRANSACTION), {sink})).result, accepted(1))
  })

  it('reports an output that cannot write as 500, so the client does not believe it was stored', async () => {
    const sink = new MemorySink()
    sink.flush = () => Promise.reject(Object.assign(new Error('no space'), {code: 'ENOSPC'}))
    const {result} = await run(ndjson(METADATA, TRANSACTION), {sink})
    assert.equal(result.status, 500)
    assert.deepEqual(result.errors, [{message: 'internal error: cannot write to the output: ENOSPC'}])
  })

  it('lists an output error once when the flush it waited on failed and the last one succeeds', async () => {
    // Congested after every line, so the reader flushes while it reads: the first of those flushes fails.
    const metadata = {...METADATA_OBJECT, labels: {pad: 'x'.repeat(FAIR_SHARE_BYTES / 16)}}
    const sink = new MemorySink()
    sink.write = function (line) {
      this.lines.push(typeof line === 'string' ? line : Buffer.concat(line).toString('utf8'))
      this.congested = true
    }

    sink.flush = async function () {
      this.flushes++
      this.congested = false
      if (this.flushes > 1) return
      this.failures++
      this.lastFailure = Object.assign(new Error('no space'), {code: 'ENOSPC'})
      throw this.lastFailure
    }

    const events = Array.from({length: 100}, (_, i) => JSON.stringify({span: {id: `s${i}`}}))
    const {result} = await run(ndjson(JSON.stringify({metadata}), ...events), {sink})
    assert.ok(sink.flushes >= 2, `flushed ${sink.flushes} times`)
    assert.deepEqual(result, {accepted: 16, errors: [{message: 'internal error: cannot write to the output: ENOSPC'}], invalid: 0, status: 500, stopped: true, tooLarge: 0})
  })

  describe('fast path: lines stored as their own bytes', () => {
    /** JSON.parse's verdict on a whole text, for comparison with the scanner. */
    const parses = (text: string) => {
      try {
        JSON.parse(text)
        return true
      } catch {
        return false
      }
    }

    const scans = (text: string) => {
      const bytes = Buffer.from(text)
      const end = scanJsonValue(bytes, 0, bytes.length)
      return end !== -1 && bytes.subarray(end).every((byte) => byte === 0x20 || byte === 0x09)
    }

    // Blanks other than spaces and tabs are left to the slow path on purpose, so not in this table.
    const values = [
      '{}', '[]', '{"a":1}', '{"a":[1,2,{"b":null}]}', '[true,false,null]', '"x"', '""', '0', '-0', '1.5', '-1.5e10', '1E+2', '1e-2', '123',
      '"\\u00e9\\n\\t\\"\\\\\\/\\b\\f\\r"', '"é"', '"\\ud800"', '{ "a" : [ 1 , 2 ] }', '\t{"a":1}\t', '[[[[[[[[[[]]]]]]]]]]',
      '{"a":1,}', '[1,]', '{,}', '[,1]', '{"a"}', '{"a":}', '{a:1}', "{'a':1}", '01', '1.', '.5', '-', '+1', '1e', '1e+', '0x1F', 'NaN',
      'Infinity', 'tru', 'truex', 'nul', 'True', '"\\x"', '"\\u12"', '"\\u12g4"', '"a\u0001b"', '"\ttab"', '"open', '{"a":1', '[1', '{"a":1}}',
      '[1]]', '{"a" 1}', '{"a":1 "b":2}', '[1 2]', '', ' ', '{"a":-}', '{"a":1.e5}', '{"a":"\\"}',
    ]
    for (const text of values) {
      it(`agrees with JSON.parse on ${JSON.stringify(text)}`, () => {
        assert.equal(scans(text), parses(text))
      })
    }

    it('agrees with JSON.parse on every one-byte change of an event line', () => {
      const line = JSON.stringify({span: {a: [1, -2.5e3, true, false, null], s: 'x\\"\\u00e9y', o: {}}})
      const bytes = ['0', '1', '9', '-', '+', '.', 'e', 'E', '"', '\\', '/', 'u', 'a', 'f', ',', ':', '[', ']', '{', '}', ' ', '\t', '\u0001', 'n', 't']
      for (let i = 0; i < line.length; i++) {
        for (const replacement of ['', ...bytes]) {
          for (const text of [line.slice(0, i) + replacement + line.slice(i + 1), line.slice(0, i) + replacement + line.slice(i)]) {
            assert.equal(scans(text), parses(text), text)
          }
        }
      }
    })

    const slowPath: [string, string][] = [
      ['two members', '{"span":{"id":"a"},"metadata":{}}'],
      ['a duplicate type key', '{"span":{"id":"a"},"span":1}'],
      ['an escaped type key', '{"\\u0073pan":{"id":"a"}}'],
      ['an event that is not an object', '{"span":[1]}'],
      ['a carriage return', '{"span":{"id":"a"}}\r'],
      ['an unknown type', '{"spam":{"id":"a"}}'],
      ['invalid UTF-8', Buffer.from([...Buffer.from('{"span":{"id":"'), 0xff, ...Buffer.from('"}}')]).toString('latin1')],
    ]
    for (const [name, text] of slowPath) {
      it(`leaves ${name} to the slow path`, () => {
        assert.equal(eventMembers(Buffer.from(text, 'latin1')), undefined)
      })
    }

    it('stores a line with blanks as its own bytes after the metadata, as valid JSON', async () => {
      const line = ' { "span" : {"id": "a", "big": 12345678901234567890} } '
      const {result, sink} = await run(ndjson(METADATA, line))
      assert.deepEqual(result, accepted(1))
      assert.deepEqual(sink.lines, [`{"metadata":${JSON.stringify(METADATA_OBJECT)},"span" : {"id": "a", "big": 12345678901234567890} }`])
      assert.deepEqual(JSON.parse(sink.lines[0]), JSON.parse(stored(line)))
    })

    it('stores slow-path lines re-serialised, and invalid UTF-8 as U+FFFD', async () => {
      const crlf = `${SPAN}\r`
      const bad = Buffer.concat([Buffer.from('{"log":{"message":"'), Buffer.from([0xff]), Buffer.from('"}}\n')])
      const {result, sink} = await run([Buffer.from(ndjson(METADATA, crlf)), bad])
      assert.deepEqual(result, accepted(2))
      assert.deepEqual(sink.lines, [stored(SPAN), stored('{"log":{"message":"\ufffd"}}')])
    })
  })
})
