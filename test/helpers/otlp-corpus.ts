/**
 * A corpus of OTLP export requests for the conversion tests (test/server/otlp-conversion.test.ts): made
 * by a seeded generator from a vocabulary of every attribute apm-data reads (and keys and values meant
 * to trip a converter: __proto__, array-index keys, keys that collide once their dots are underscores,
 * duplicates, strings past the keyword length with astral characters at the cut, quotes, control
 * characters, URLs of every shape, non-finite numbers, several members of one AnyValue, ids of the
 * wrong length), as objects for protobufjs's fromObject.
 */

/** mulberry32: a small seeded PRNG, so that a failing request can be made again from its seed. */
export function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d_2b_79_f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

type Rand = () => number
const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)]
const count = (rand: Rand, max: number): number => Math.floor(rand() * (max + 1))

const SPAN_KEYS = [
  'db.instance', 'db.name', 'db.namespace', 'db.elasticsearch.cluster.name', 'db.query.text', 'db.statement', 'db.system', 'db.type', 'db.user', 'gen_ai.system',
  'http.flavor', 'http.host', 'http.method', 'http.path', 'http.request.method', 'http.response.status_code', 'http.scheme', 'http.status_code', 'http.target', 'http.url',
  'http.user_agent', 'message_bus.destination', 'messaging.destination', 'messaging.destination.name', 'messaging.operation', 'messaging.operation.type', 'messaging.system',
  'messaging.destination.temporary', 'messaging.temp_destination', 'net.host.name', 'net.host.port', 'net.peer.ip', 'net.peer.name', 'net.peer.port', 'net.sock.peer.addr',
  'network.peer.address', 'peer.address', 'peer.hostname', 'peer.port', 'peer.service', 'rpc.grpc.status_code', 'rpc.method', 'rpc.service', 'rpc.system', 'server.address',
  'server.port', 'session.id', 'service.version', 'span.kind', 'sql.query', 'type', 'url.full', 'url.path', 'url.query', 'url.scheme', 'user_agent.original',
  'elastic.profiler_stack_trace_ids', 'exception.message', 'exception.type', 'exception.stacktrace', 'exception.escaped',
]
const RESOURCE_KEYS = [
  'cloud.account.id', 'cloud.availability_zone', 'cloud.platform', 'cloud.provider', 'cloud.region', 'container.id', 'deployment.environment', 'deployment.environment.name',
  'host.arch', 'host.name', 'k8s.namespace.name', 'k8s.node.name', 'k8s.pod.name', 'k8s.pod.uid', 'os.type', 'process.owner', 'process.runtime.name', 'process.runtime.version',
  'service.instance.id', 'service.name', 'service.version', 'telemetry.sdk.language', 'telemetry.sdk.version', 'telemetry.distro.name', 'telemetry.distro.version',
  'telemetry.sdk.elastic_export_timestamp', 'telemetry.sdk.name', 'process.pid', 'container.name', 'host.id',
]
const ODD_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '0', '1', '10', '2', '4294967294', '4294967295', '01', '-1', '1.5', 'a.b', 'a_b', 'a.b.c', '', 'ключ', 'k"q', 'k\\b', 'k\n', '😀.x', 'team', 'order.count', 'region']

const LONG = 'x'.repeat(1020) + '😀😀😀😀😀😀'
const URLS = [
  'http://bench/items/1', 'https://shop.example:8443/a/b?q=1&r=2', 'HTTP://Example.COM/a/../b/./c', 'http://[::1]:80/x', 'http://user:pw@host/p#frag', 'https://h/p%20q?x=%zz',
  '/relative/path?x=1', 'relative', 'not a url', '', 'http://ex ample/', 'ftp://files/x', 'http://münchen.example/straße', 'http://h:0/', 'http://h:65535', 'http://h:99999/',
  'https://h/?', 'http://h/a?b?c', '//h/p', 'http://h\\p', 'http://1.2.3.4:8080/api',
]
const STRINGS = [
  'GET', 'POST', 'postgresql', 'redis', 'kafka', 'grpc', 'HTTP/1.1', '2.0', '200', '404', '503', 'abc', ' 200', '', 'shop.example', 'db.example', '10.0.0.1', '::1',
  'fe80::1%eth0', '1.2.3.4:80', 'h:1', 'queue-1', 'SELECT * FROM t WHERE a = "b"', 'line\nbreak\ttab', 'quote"back\\slash', '\u0000\u001f\u007f\u2028\u2029', 'é', '日本',
  '😀', 'a'.repeat(1025), LONG, 'x'.repeat(2000), 'ot=p:3', 'Linux', 'WINDOWS', 'send', 'process', 'nodejs', 'java', 'opentelemetry', 'elastic', 'Error', 'boom',
  'service name/with:bad*chars', 'true', 'openai', 'request', 'custom-type', ...URLS,
]

function anyValue(rand: Rand, depth = 0): Record<string, unknown> {
  const roll = rand()
  if (roll < 0.45) return {stringValue: pick(rand, STRINGS)}
  if (roll < 0.6) return {intValue: pick(rand, [0, 1, 200, 404, 500, 503, 5432, 65_535, -1, 2 ** 53 + 2, 1e18, 16, 17])}
  if (roll < 0.68) return {boolValue: rand() < 0.5}
  if (roll < 0.76) return {doubleValue: pick(rand, [1.5, 0.1, -0, 1e21, 1e-7, Number.NaN, Number.POSITIVE_INFINITY, 200, 3.2])}
  if (roll < 0.84 && depth < 3) return {arrayValue: {values: Array.from({length: count(rand, 4)}, () => anyValue(rand, depth + 1))}}
  if (roll < 0.89 && depth < 3) return {kvlistValue: {values: Array.from({length: count(rand, 3)}, () => keyValue(rand, ODD_KEYS, depth + 1))}}
  if (roll < 0.92) return {bytesValue: Buffer.from([1, 2, 255, 0].slice(0, count(rand, 4)))}
  if (roll < 0.95) return {}
  // Several members of the oneof: the last on the wire counts.
  return {...anyValue(rand, depth + 1), ...anyValue(rand, depth + 1), ...anyValue(rand, depth + 1)}
}

function keyValue(rand: Rand, keys: readonly string[], depth = 0): Record<string, unknown> {
  const key = rand() < 0.8 ? pick(rand, keys) : pick(rand, ODD_KEYS)
  return rand() < 0.03 ? {key} : {key, value: anyValue(rand, depth)}
}

const attributes = (rand: Rand, keys: readonly string[], max: number) => Array.from({length: count(rand, max)}, () => keyValue(rand, keys))

function id(rand: Rand, bytes: number): Buffer | undefined {
  const roll = rand()
  if (roll < 0.04) return undefined
  if (roll < 0.07) return Buffer.alloc(bytes)
  if (roll < 0.09) return Buffer.alloc(bytes - 1, 7)
  return Buffer.from(Array.from({length: bytes}, () => Math.floor(rand() * 256)))
}

const TIME = 1_700_000_000_123_456_000

function time(rand: Rand): number | undefined {
  const roll = rand()
  if (roll < 0.05) return undefined
  if (roll < 0.08) return 1
  return TIME + Math.floor(rand() * 1e12) * 1000
}

const TRACE_STATES = [undefined, 'ot=p:3', 'ot=p:0', 'ot=p:63', 'ot=th:0;p:2', 'foo=bar,ot=p:8', 'ot=x', 'ot=p:', ' ot=p:1']

function span(rand: Rand): Record<string, unknown> {
  const start = time(rand)
  const parent = rand() < 0.5 ? undefined : id(rand, 8)
  return {
    attributes: attributes(rand, SPAN_KEYS, 12),
    endTimeUnixNano: start === undefined || rand() < 0.05 ? time(rand) : start + Math.floor(rand() * 5e9),
    events: Array.from({length: rand() < 0.6 ? 0 : count(rand, 3)}, () => spanEvent(rand)),
    kind: count(rand, 6),
    links: Array.from({length: rand() < 0.8 ? 0 : count(rand, 2)}, () => ({spanId: id(rand, 8), traceId: id(rand, 16)})),
    name: pick(rand, STRINGS),
    parentSpanId: parent,
    spanId: id(rand, 8),
    startTimeUnixNano: start,
    status: rand() < 0.3 ? undefined : {code: count(rand, 3), message: pick(rand, STRINGS)},
    traceId: id(rand, 16),
    traceState: pick(rand, TRACE_STATES),
  }
}

function spanEvent(rand: Rand): Record<string, unknown> {
  const exception = rand() < 0.6
  const attrs = attributes(rand, exception ? ['exception.message', 'exception.type', 'exception.stacktrace', 'exception.escaped', ...ODD_KEYS] : SPAN_KEYS, 6)
  return {attributes: attrs, name: exception ? 'exception' : pick(rand, STRINGS), timeUnixNano: time(rand)}
}

function scope(rand: Rand): Record<string, unknown> | undefined {
  const roll = rand()
  if (roll < 0.15) return undefined
  return {name: rand() < 0.9 ? pick(rand, ['@opentelemetry/instrumentation-http', 'test-scope', '', LONG, 'q"uote']) : undefined, version: rand() < 0.6 ? pick(rand, ['1.0', '', LONG]) : undefined}
}

const resource = (rand: Rand) => (rand() < 0.05 ? undefined : {attributes: attributes(rand, RESOURCE_KEYS, 16)})

/** An ExportTraceServiceRequest: 1-2 resources of 1-2 scopes of up to 8 spans. */
export function tracesCorpusRequest(seed: number): Record<string, unknown> {
  const rand = random(seed)
  const resourceSpans = Array.from({length: 1 + count(rand, 1)}, () => ({
    resource: resource(rand),
    scopeSpans: Array.from({length: 1 + count(rand, 1)}, () => ({scope: scope(rand), spans: Array.from({length: count(rand, 8)}, () => span(rand))})),
  }))
  return {resourceSpans}
}

function logRecord(rand: Rand): Record<string, unknown> {
  return {
    attributes: attributes(rand, rand() < 0.3 ? ['exception.message', 'exception.type', 'exception.stacktrace', 'exception.escaped', ...ODD_KEYS] : ODD_KEYS, 6),
    body: rand() < 0.1 ? undefined : anyValue(rand),
    observedTimeUnixNano: time(rand),
    severityNumber: count(rand, 24),
    severityText: rand() < 0.5 ? undefined : pick(rand, ['INFO', 'WARN', '', LONG]),
    spanId: id(rand, 8),
    timeUnixNano: rand() < 0.3 ? undefined : time(rand),
    traceId: id(rand, 16),
  }
}

/** An ExportLogsServiceRequest. */
export function logsCorpusRequest(seed: number): Record<string, unknown> {
  const rand = random(seed)
  return {
    resourceLogs: Array.from({length: 1 + count(rand, 1)}, () => ({
      resource: resource(rand),
      scopeLogs: Array.from({length: 1 + count(rand, 1)}, () => ({logRecords: Array.from({length: count(rand, 6)}, () => logRecord(rand)), scope: scope(rand)})),
    })),
  }
}

function numberPoint(rand: Rand, times: number[]): Record<string, unknown> {
  const value = rand() < 0.5 ? {asInt: pick(rand, [0, 7, -3, 2 ** 53 + 2])} : rand() < 0.9 ? {asDouble: pick(rand, [1.5, 0, Number.NaN, Number.POSITIVE_INFINITY, 1e21])} : {}
  return {...value, attributes: attributes(rand, ['region', 'host', ...ODD_KEYS], 3), timeUnixNano: pick(rand, times)}
}

function histogramPoint(rand: Rand, times: number[]): Record<string, unknown> {
  const bounds = pick(rand, [[], [0], [1, 5, 10], [-1, 0, 1], [0.5]])
  const buckets = rand() < 0.9 ? Array.from({length: bounds.length + 1}, () => count(rand, 3)) : [1]
  return {attributes: attributes(rand, ['region', ...ODD_KEYS], 2), bucketCounts: buckets, count: count(rand, 9), explicitBounds: bounds, sum: rand() < 0.8 ? 12.5 : undefined, timeUnixNano: pick(rand, times)}
}

function metric(rand: Rand, times: number[]): Record<string, unknown> {
  const name = pick(rand, ['orders.placed', 'queue.depth', 'latency', '__proto__', 'constructor', '1', LONG, ''])
  const points = (make: (r: Rand, t: number[]) => Record<string, unknown>) => ({dataPoints: Array.from({length: count(rand, 3)}, () => make(rand, times))})
  const roll = rand()
  if (roll < 0.35) return {gauge: points(numberPoint), name}
  if (roll < 0.7) return {name, sum: {...points(numberPoint), aggregationTemporality: 2, isMonotonic: true}}
  if (roll < 0.9) return {histogram: {...points(histogramPoint), aggregationTemporality: 2}, name}
  if (roll < 0.95) return {exponentialHistogram: {dataPoints: [{count: 1, timeUnixNano: TIME}]}, name}
  return {name, summary: {dataPoints: [{count: 1, sum: 2, timeUnixNano: TIME}]}}
}

/** An ExportMetricsServiceRequest. */
export function metricsCorpusRequest(seed: number): Record<string, unknown> {
  const rand = random(seed)
  const times = [TIME, TIME + 1000, TIME + 1_000_000]
  return {
    resourceMetrics: Array.from({length: 1 + count(rand, 1)}, () => ({
      resource: resource(rand),
      scopeMetrics: Array.from({length: 1 + count(rand, 1)}, () => ({metrics: Array.from({length: count(rand, 5)}, () => metric(rand, times)), scope: scope(rand)})),
    })),
  }
}
