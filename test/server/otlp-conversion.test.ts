/**
 * The OTLP conversion held to the bytes it wrote before its event lines were assembled as strings: a
 * corpus of export requests (test/helpers/otlp-corpus.ts, seeded; the tests' own requests; the
 * benchmark's) goes through the server's decoding and ingest into a sink, and through the frozen
 * object-and-JSON.stringify conversion of test/helpers/otlp-reference/ with protobufjs's default
 * decoding; every line must be the same, byte for byte (an error's random id aside), and so must the
 * count of items rejected.
 */
import assert from 'node:assert/strict'

import {ingestOtlp} from '../../src/server/intake/otlp/ingest.js'
import {decodeJson, decodeProtobuf, Signal} from '../../src/server/intake/otlp/wire.js'
import type {EventSink} from '../../src/server/outputs/output.js'
import {logsCorpusRequest, metricsCorpusRequest, tracesCorpusRequest} from '../helpers/otlp-corpus.js'
import {referenceDecode, referenceLines} from '../helpers/otlp-reference/convert.js'
import {encode, logsRequest, metricsRequest, toOtlpJson, tracesRequest} from '../helpers/otlp.js'

/** An error's id is random: the same placeholder on both sides. */
const ERROR_ID = /"id":"[\da-f]{32}"/g
const normalise = (line: string) => line.replaceAll(ERROR_ID, '"id":"<error id>"')

async function serverLines(signal: Signal, request: unknown): Promise<{lines: string[]; rejected: number}> {
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

async function assertSameAsReference(signal: Signal, bytes: Buffer, label: string): Promise<number> {
  const expected = referenceLines(signal, referenceDecode(signal, bytes))
  const actual = await serverLines(signal, decodeProtobuf(signal, bytes))
  assert.deepEqual(actual, {lines: expected.lines.map((line) => normalise(line)), rejected: expected.rejected}, `${signal} ${label}, protobuf`)
  return expected.lines.length
}

async function assertJsonSameAsReference(signal: Signal, request: object, label: string): Promise<void> {
  const json = toOtlpJson(request)
  // The JSON decoding is unchanged: both sides convert what it gives.
  const expected = referenceLines(signal, decodeJson(signal, json))
  const actual = await serverLines(signal, decodeJson(signal, json))
  assert.deepEqual(actual, {lines: expected.lines.map((line) => normalise(line)), rejected: expected.rejected}, `${signal} ${label}, JSON`)
}

const CORPUS: Record<Signal, (seed: number) => object> = {logs: logsCorpusRequest, metrics: metricsCorpusRequest, traces: tracesCorpusRequest}
const SEEDS: Record<Signal, number> = {logs: 400, metrics: 400, traces: 1000}

describe('OTLP conversion: the same bytes as the object-built conversion', function () {
  this.timeout(120_000)

  for (const signal of ['traces', 'logs', 'metrics'] as const) {
    it(`${signal}: ${SEEDS[signal]} seeded requests of every attribute, odd keys and values, protobuf and JSON`, async () => {
      let lines = 0
      for (let seed = 1; seed <= SEEDS[signal]; seed++) {
        const request = CORPUS[signal](seed)
        lines += await assertSameAsReference(signal, encode(signal, request), `seed ${seed}`) // eslint-disable-line no-await-in-loop -- one request at a time
        if (seed % 5 === 0) await assertJsonSameAsReference(signal, request, `seed ${seed}`) // eslint-disable-line no-await-in-loop -- one request at a time
      }

      // The corpus is not empty by accident.
      assert.ok(lines > SEEDS[signal], `${lines} lines`)
    })
  }

  it("the tests' requests and the benchmark's", async () => {
    for (const [signal, request] of [['traces', tracesRequest()], ['logs', logsRequest()], ['metrics', metricsRequest()]] as const) {
      await assertSameAsReference(signal, encode(signal, request), 'test request') // eslint-disable-line no-await-in-loop -- one at a time
      await assertJsonSameAsReference(signal, request, 'test request') // eslint-disable-line no-await-in-loop -- one at a time
    }

    // The benchmark's body (bench/lib/otlp.js is plain JavaScript: imported by a path TypeScript does not follow).
    const bench = '../../bench/lib/otlp.js'
    const {otlpTracesBody} = (await import(bench)) as {otlpTracesBody: (spans: number) => Buffer}
    assert.equal(await assertSameAsReference('traces', otlpTracesBody(100), 'benchmark body'), 100)
  })
})
