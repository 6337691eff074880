/**
 * OTLP for tests: export requests built as objects and encoded with the server's own protobuf
 * definitions (the real SDK exporters are used end to end, test/e2e/otlp.test.ts), and one gRPC call
 * over a raw HTTP/2 connection, with full control of its framing, headers and timing.
 */
import http2 from 'node:http2'

import {SIGNALS, Signal} from '../../src/server/intake/otlp/wire.js'

export const TRACE_ID = Buffer.from('5b8efff798038103d269b633813fc60c', 'hex')
export const ROOT_ID = Buffer.from('eee19b7ec3c1b174', 'hex')
export const CHILD_ID = Buffer.from('0102030405060708', 'hex')
const START = 1_700_000_000_000_000_000

export const kv = (key: string, value: boolean | number | string) => ({
  key,
  value: typeof value === 'number' ? (Number.isInteger(value) ? {intValue: value} : {doubleValue: value}) : typeof value === 'boolean' ? {boolValue: value} : {stringValue: value},
})

export const RESOURCE = {
  attributes: [kv('service.name', 'otel-svc'), kv('service.version', '1.2.3'), kv('deployment.environment.name', 'test'), kv('telemetry.sdk.name', 'opentelemetry'), kv('telemetry.sdk.language', 'nodejs'), kv('telemetry.sdk.version', '2.12.0'), kv('team', 'core')],
}

/** A root server span with an exception event, and its client child span. */
export function tracesRequest(resource: object = RESOURCE): object {
  return {
    resourceSpans: [
      {
        resource,
        scopeSpans: [
          {
            scope: {name: 'test-scope', version: '0.1'},
            spans: [
              {
                attributes: [kv('http.request.method', 'GET'), kv('url.path', '/orders'), kv('http.response.status_code', 500), kv('server.address', 'shop.example'), kv('order.count', 3)],
                endTimeUnixNano: START + 25_000_000,
                events: [{attributes: [kv('exception.type', 'Error'), kv('exception.message', 'payment declined'), kv('exception.stacktrace', 'Error: payment declined\n    at pay')], name: 'exception', timeUnixNano: START + 20_000_000}],
                kind: 2,
                name: 'GET /orders',
                spanId: ROOT_ID,
                startTimeUnixNano: START,
                traceId: TRACE_ID,
              },
              {
                attributes: [kv('db.system', 'postgresql'), kv('db.query.text', 'SELECT * FROM orders'), kv('db.namespace', 'shop'), kv('server.address', 'db.example'), kv('server.port', 5432)],
                endTimeUnixNano: START + 9_000_000,
                kind: 3,
                name: 'SELECT orders',
                parentSpanId: ROOT_ID,
                spanId: CHILD_ID,
                startTimeUnixNano: START + 1_000_000,
                status: {code: 1},
                traceId: TRACE_ID,
              },
            ],
          },
        ],
      },
    ],
  }
}

export function logsRequest(): object {
  return {
    resourceLogs: [
      {
        resource: RESOURCE,
        scopeLogs: [{logRecords: [{attributes: [kv('user.id', 'u-1')], body: {stringValue: 'order placed'}, severityNumber: 9, severityText: 'INFO', spanId: ROOT_ID, timeUnixNano: START, traceId: TRACE_ID}], scope: {name: 'logger'}}],
      },
    ],
  }
}

export function metricsRequest(): object {
  return {
    resourceMetrics: [
      {
        resource: RESOURCE,
        scopeMetrics: [
          {
            metrics: [
              {name: 'orders.placed', sum: {aggregationTemporality: 2, dataPoints: [{asInt: 7, attributes: [kv('region', 'eu')], timeUnixNano: START}], isMonotonic: true}},
              {name: 'queue.depth', gauge: {dataPoints: [{asDouble: 1.5, attributes: [kv('region', 'eu')], timeUnixNano: START}]}},
              {name: 'latency', summary: {dataPoints: [{count: 1, sum: 2, timeUnixNano: START}]}},
            ],
            scope: {name: 'meter'},
          },
        ],
      },
    ],
  }
}

/** An export request of `signal`, as protobuf. */
export function encode(signal: Signal, request: object): Buffer {
  const type = SIGNALS[signal].request
  return Buffer.from(type.encode(type.fromObject(request)).finish())
}

/** OTLP/JSON of a request object: ids as hex, as the specification has them. */
export function toOtlpJson(request: object): Buffer {
  return Buffer.from(JSON.stringify(request, (_key, value: unknown) => (value && typeof value === 'object' && (value as {type?: string}).type === 'Buffer' ? Buffer.from((value as {data: number[]}).data).toString('hex') : value)))
}

/** A gRPC message frame: flag byte, length, message. */
export function grpcFrame(message: Buffer, compressed = false): Buffer {
  const frame = Buffer.alloc(5 + message.length)
  frame[0] = compressed ? 1 : 0
  frame.writeUInt32BE(message.length, 1)
  message.copy(frame, 5)
  return frame
}

export interface GrpcReply {
  /** the HTTP status */
  status: number
  grpcStatus?: number
  grpcMessage?: string
  /** the response message (frame removed) */
  message?: Buffer
  body: Buffer
}

export interface GrpcOptions {
  token?: string
  headers?: Record<string, string>
  ca?: Buffer
  /** the body as sent (default: one uncompressed frame of `message`) */
  body?: Buffer
  /** an open session to use (default: a new one, closed after) */
  session?: http2.ClientHttp2Session
}

/** One gRPC call of `path` (default: the trace Export) with `message`. */
export function grpcCall(url: string, message: Buffer, options: GrpcOptions = {}, path = SIGNALS.traces.grpcPath): Promise<GrpcReply> {
  const session = options.session ?? http2.connect(url, {ca: options.ca})
  return new Promise<GrpcReply>((resolve, reject) => {
    session.once('error', reject)
    const settle = () => session.off('error', reject)
    const headers: http2.OutgoingHttpHeaders = {':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...options.headers}
    if (options.token) headers.authorization = `Bearer ${options.token}`
    const stream = session.request(headers)
    const chunks: Buffer[] = []
    let status = 0
    let grpc: http2.IncomingHttpHeaders = {}
    stream.on('response', (responseHeaders) => {
      status = Number(responseHeaders[':status'])
      grpc = responseHeaders
    })
    stream.on('trailers', (trailers) => (grpc = {...grpc, ...trailers}))
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('error', reject)
    stream.on('close', () => {
      settle()
      const body = Buffer.concat(chunks)
      if (!options.session) session.close()
      resolve({
        body,
        grpcMessage: grpc['grpc-message'] === undefined ? undefined : decodeURIComponent(String(grpc['grpc-message'])),
        grpcStatus: grpc['grpc-status'] === undefined ? undefined : Number(grpc['grpc-status']),
        message: body.length >= 5 ? body.subarray(5) : undefined,
        status,
      })
    })
    stream.end(options.body ?? grpcFrame(message))
  })
}

