/**
 * The OTLP conversion held to its bytes: a corpus of export requests (test/helpers/otlp-corpus.ts,
 * seeded; the tests' own requests; the benchmark's) goes through the server's decoding and ingest into a
 * sink, and every line must be the one recorded in test/fixtures/otlp-conversion.json.gz, byte for byte
 * (an error's random id aside), and so must the count of items rejected. The recording was made by the
 * object-and-JSON.stringify conversion the server had before its event lines were assembled as text.
 * After a change to what the conversion writes, on purpose: `UPDATE_OTLP_GOLDEN=1 npx mocha
 * test/server/otlp-conversion.test.ts` records the new lines (and the diff of the fixture shows them).
 */
import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {gunzipSync, gzipSync} from 'node:zlib'

import {ingestOtlp} from '../../src/server/intake/otlp/ingest.js'
import {decodeJson, decodeProtobuf, Signal} from '../../src/server/intake/otlp/wire.js'
import type {EventSink} from '../../src/server/outputs/output.js'
import {ROOT} from '../helpers/cli.js'
import {logsCorpusRequest, metricsCorpusRequest, tracesCorpusRequest} from '../helpers/otlp-corpus.js'
import {encode, logsRequest, metricsRequest, toOtlpJson, tracesRequest} from '../helpers/otlp.js'

const GOLDEN = path.join(ROOT, 'test', 'fixtures', 'otlp-conversion.json.gz')
const UPDATE = process.env.UPDATE_OTLP_GOLDEN === '1'

interface Converted {
  lines: string[]
  rejected: number
}

/** An error's id is random: a placeholder in the recording and in what is compared with it. */
const ERROR_ID = /"id":"[\da-f]{32}"/g
const normalise = (line: string) => line.replaceAll(ERROR_ID, '"id":"<error id>"')

const recorded: Record<string, Converted> = UPDATE ? {} : (JSON.parse(gunzipSync(readFileSync(GOLDEN)).toString('utf8')) as Record<string, Converted>)

async function serverLines(signal: Signal, request: unknown): Promise<Converted> {
  const lines: string[] = []
  const sink: EventSink = {
    congested: false,
    failures: 0,
    flush: async () => {},
    write(line) {
      lines.push(typeof line === 'string' ? line : Buffer.concat(line).toString('utf8'))
    },
  }
  const result = await ingestOtlp(signal, request, 1 << 30, {output: sink})
  assert.equal(result.status, 200)
  assert.equal(result.accepted, lines.length)
  return {lines: lines.map((line) => normalise(line)), rejected: result.rejected}
}

/** Converts one case and compares it with its recording (or records it); the number of lines. */
async function assertAsRecorded(label: string, signal: Signal, request: unknown): Promise<number> {
  const actual = await serverLines(signal, request)
  if (UPDATE) recorded[label] = actual
  else assert.deepEqual(actual, recorded[label], label)
  return actual.lines.length
}

const CORPUS: Record<Signal, (seed: number) => object> = {logs: logsCorpusRequest, metrics: metricsCorpusRequest, traces: tracesCorpusRequest}
const SEEDS: Record<Signal, number> = {logs: 400, metrics: 400, traces: 1000}

describe('OTLP conversion: the same bytes as recorded', function () {
  this.timeout(120_000)

  after(() => {
    if (UPDATE) writeFileSync(GOLDEN, gzipSync(JSON.stringify(recorded), {level: 9}))
  })

  for (const signal of ['traces', 'logs', 'metrics'] as const) {
    it(`${signal}: ${SEEDS[signal]} seeded requests of every attribute, odd keys and values, protobuf and JSON`, async () => {
      let lines = 0
      for (let seed = 1; seed <= SEEDS[signal]; seed++) {
        const request = CORPUS[signal](seed)
        lines += await assertAsRecorded(`${signal} seed ${seed}, protobuf`, signal, decodeProtobuf(signal, encode(signal, request))) // eslint-disable-line no-await-in-loop -- one request at a time
        if (seed % 5 === 0) await assertAsRecorded(`${signal} seed ${seed}, JSON`, signal, decodeJson(signal, toOtlpJson(request))) // eslint-disable-line no-await-in-loop -- one request at a time
      }

      // The corpus is not empty by accident.
      assert.ok(lines > SEEDS[signal], `${lines} lines`)
    })
  }

  it("the tests' requests and the benchmark's", async () => {
    for (const [signal, request] of [['traces', tracesRequest()], ['logs', logsRequest()], ['metrics', metricsRequest()]] as const) {
      await assertAsRecorded(`${signal} test request, protobuf`, signal, decodeProtobuf(signal, encode(signal, request))) // eslint-disable-line no-await-in-loop -- one at a time
      await assertAsRecorded(`${signal} test request, JSON`, signal, decodeJson(signal, toOtlpJson(request))) // eslint-disable-line no-await-in-loop -- one at a time
    }

    // The benchmark's body (bench/lib/otlp.js is plain JavaScript: imported by a path TypeScript does not follow).
    const bench = '../../bench/lib/otlp.js'
    const {otlpTracesBody} = (await import(bench)) as {otlpTracesBody: (spans: number, nowMs: number) => Buffer}
    assert.equal(await assertAsRecorded('traces benchmark body, protobuf', 'traces', decodeProtobuf('traces', otlpTracesBody(100, 1_700_000_000_000))), 100)
  })
})
