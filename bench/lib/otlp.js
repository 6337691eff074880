/**
 * OTLP export requests for the benchmarks, encoded by protobufjs from the server's vendored OTLP
 * definitions (proto/): the same information as the intake benchmark's body (bench/lib/servers.js
 * intakeBody), as spans: half server spans (transactions: HTTP method, URL, status code, user agent),
 * half database client spans (statement, system, peer).
 */
import path from 'node:path'

import protobuf from 'protobufjs'

import {ROOT} from './proc.js'

let requestType

function traceRequestType() {
  if (!requestType) {
    const root = new protobuf.Root()
    root.resolvePath = (_origin, target) => path.join(ROOT, 'proto', target)
    root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto')
    requestType = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest')
  }

  return requestType
}

/**
 * CPU time of protobufjs decoding `body` (an ExportTraceServiceRequest) alone, in µs per decode, over
 * about `ms` of decoding in this process: the floor under any OTLP/HTTP protobuf server built on the
 * library issue 14 asks for (its reflection decoders are generated code, the same as pbjs's static
 * module), before a byte of conversion, output, HTTP or auth.
 */
export function protobufDecodeMicros(body, ms = 1000) {
  const type = traceRequestType()
  for (let i = 0; i < 200; i++) type.decode(body)
  let decodes = 0
  const started = process.cpuUsage()
  let spent = 0
  while (spent < ms * 1000) {
    for (let i = 0; i < 50; i++) type.decode(body)
    decodes += 50
    const {system, user} = process.cpuUsage(started)
    spent = user + system
  }

  return spent / decodes
}

const kv = (key, value) => ({key, value: typeof value === 'number' ? {intValue: value} : {stringValue: value}})

function id(bytes, seed) {
  return Buffer.from((seed.toString(16).padStart(bytes * 2, '0') + 'a1b2c3d4e5f60718293a4b5c6d7e8f90').slice(0, bytes * 2), 'hex')
}

/** An ExportTraceServiceRequest of `count` spans from one service, as protobuf; `nowMs` dates them (tests fix it). */
export function otlpTracesBody(count, nowMs = Date.now()) {
  const now = BigInt(nowMs) * 1_000_000n
  const spans = []
  for (let i = 0; i < count; i++) {
    const start = now + BigInt(i) * 1000n
    if (i % 2 === 0) {
      spans.push({
        attributes: [kv('http.request.method', 'GET'), kv('url.full', `http://bench/items/${i}`), kv('url.path', `/items/${i}`), kv('http.response.status_code', 200), kv('user_agent.original', 'bench')],
        endTimeUnixNano: String(start + 12_500_000n),
        kind: 2,
        name: 'GET /items/:id',
        spanId: id(8, i + 1),
        startTimeUnixNano: String(start),
        status: {code: 1},
        traceId: id(16, i + 1),
      })
    } else {
      spans.push({
        attributes: [kv('db.system', 'postgresql'), kv('db.query.text', 'SELECT * FROM items WHERE id = $1'), kv('db.operation.name', 'query'), kv('server.address', 'db')],
        endTimeUnixNano: String(start + 3_200_000n),
        kind: 3,
        name: 'SELECT FROM items',
        parentSpanId: id(8, i),
        spanId: id(8, i + 1000),
        startTimeUnixNano: String(start),
        status: {code: 1},
        traceId: id(16, i),
      })
    }
  }

  const resource = {
    attributes: [
      kv('service.name', 'bench-service'), kv('service.version', '1.0.0'), kv('deployment.environment.name', 'bench'), kv('telemetry.sdk.name', 'opentelemetry'),
      kv('telemetry.sdk.language', 'nodejs'), kv('telemetry.sdk.version', '2.12.0'), kv('host.name', 'bench-host'), kv('host.arch', 'amd64'), kv('os.type', 'linux'),
      kv('process.pid', 4242), kv('process.runtime.name', 'nodejs'), kv('process.runtime.version', '20.20.2'),
    ],
  }
  const type = traceRequestType()
  const message = type.fromObject({resourceSpans: [{resource, scopeSpans: [{scope: {name: '@opentelemetry/instrumentation-http', version: '0.200.0'}, spans}]}]})
  return Buffer.from(type.encode(message).finish())
}
