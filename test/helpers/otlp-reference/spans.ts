/**
 * An OTLP span as an intake v2 transaction or span, as apm-data maps it (input/otlp traces.go): a root
 * span, or one of kind server or consumer, is a transaction; any other is a span. Ids, name, start
 * time, duration and outcome (from the span status, else the HTTP status code) are the span's; its
 * attributes give the HTTP, database, messaging and RPC context, the type and subtype, the
 * destination and service target, and what is left becomes labels (`context.tags`). Span events are
 * ./span-events.ts's.
 */
import {intMember, kindOf, Labels, setLabel, stringMember, truncate, type KeyValue} from './values.js'

export interface SpanStatus {
  code?: number
  message?: string
}

export interface OtlpSpan {
  traceId?: Uint8Array
  spanId?: Uint8Array
  parentSpanId?: Uint8Array
  traceState?: string
  name?: string
  kind?: number
  startTimeUnixNano?: number
  endTimeUnixNano?: number
  attributes?: KeyValue[]
  events?: Array<{timeUnixNano?: number; name?: string; attributes?: KeyValue[]}>
  links?: Array<{traceId?: Uint8Array; spanId?: Uint8Array}>
  status?: null | SpanStatus
}

export const SPAN_KIND = ['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'] as const
const KIND_SERVER = 2
const KIND_CONSUMER = 5
const KIND_INTERNAL = 1
const KIND_PRODUCER = 4
const STATUS_OK = 1
const STATUS_ERROR = 2

/** A span's id, trace id and parent id as hex; '' for an absent or all-zero id. Undefined when one has the wrong length. */
export function spanIds(span: OtlpSpan): {id: string; traceId: string; parentId: string} | undefined {
  const id = hexId(span.spanId, 8)
  const traceId = hexId(span.traceId, 16)
  const parentId = hexId(span.parentSpanId, 8)
  if (id === undefined || traceId === undefined || parentId === undefined) return undefined
  return {id, parentId, traceId}
}

/** An id as hex: '' when absent or all zeros (pcommon's IsEmpty), undefined when not `length` bytes. */
export function hexId(bytes: Uint8Array | null | undefined, length: number): string | undefined {
  if (!bytes || bytes.length === 0) return ''
  if (bytes.length !== length) return undefined
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex')
  return hex === ZERO_HEX[length] ? '' : hex
}

const ZERO_HEX: Record<number, string> = {16: '0'.repeat(32), 8: '0'.repeat(16)}

/**
 * Nanoseconds since the epoch as intake v2's microseconds. 64-bit integers are decoded as doubles (see
 * ./wire.ts), exact to 256 ns today: rounded, a time sent in whole microseconds comes out exact.
 */
export function micros(nanos: number | undefined): number {
  return Math.round(Number(nanos ?? 0) / 1000)
}

function statusOutcome(status: SpanStatus | null | undefined): 'failure' | 'success' | 'unknown' {
  if (status?.code === STATUS_OK) return 'success'
  if (status?.code === STATUS_ERROR) return 'failure'
  return 'unknown'
}

/** The representative count a `tracestate` `ot=p:N` value sets (2^N), as intake v2's sample_rate (its inverse); undefined for 1. */
function sampleRate(traceState: string | undefined): number | undefined {
  const ot = /(?:^|,)\s*ot=([^,]*)/.exec(traceState ?? '')?.[1]
  const p = ot ? /(?:^|;)\s*p:(\d+)/.exec(ot)?.[1] : undefined
  if (p === undefined) return undefined
  const exponent = Number(p)
  if (exponent > 62) return 0
  return exponent === 0 ? undefined : 1 / 2 ** exponent
}

/** What a transaction's or a span's attributes say, collected in one pass. */
interface Collected {
  labels: Labels
  http: {method?: string; statusCode?: number; url?: string; path?: string; query?: string; host?: string; scheme?: string; version?: string; userAgent?: string}
  net: {peerName?: string; peerIp?: string; peerPort?: number; hostName?: string; hostPort?: number; peerAddress?: string}
  db: {type?: string; statement?: string; instance?: string; user?: string}
  messaging: {system?: string; operation?: string; queue?: string; temporary?: boolean}
  rpc: {system?: string; service?: string; grpcStatus?: number}
  is: {http: boolean; db: boolean; messaging: boolean; rpc: boolean; genai: boolean}
  genaiSystem?: string
  peerService?: string
  type?: string
  sessionId?: string
  serviceVersion?: string
}

type Reader = (c: Collected, text: string, value: number | undefined) => void

/** String (and, where noted, integer) attributes apm-data reads into fields rather than labels. */
const FIELDS: Record<string, Reader> = {
  'db.instance': (c, t) => ((c.db.instance = t), (c.is.db = true)),
  'db.name': (c, t) => ((c.db.instance = t), (c.is.db = true)),
  'db.namespace': (c, t) => ((c.db.instance = t), (c.is.db = true)),
  'db.elasticsearch.cluster.name': (c, t) => ((c.db.instance = t), (c.is.db = true)),
  'db.query.text': (c, t) => ((c.db.statement = t), (c.is.db = true)),
  'db.statement': (c, t) => ((c.db.statement = t), (c.is.db = true)),
  'db.system': (c, t) => ((c.db.type = t), (c.is.db = true)),
  'db.type': (c, t) => ((c.db.type = t), (c.is.db = true)),
  'db.user': (c, t) => ((c.db.user = t), (c.is.db = true)),
  'gen_ai.system': (c, t) => ((c.genaiSystem = t), (c.is.genai = true)),
  'http.flavor': (c, t) => ((c.http.version = t), (c.is.http = true)),
  'http.host': (c, t) => ((c.http.host = t), (c.is.http = true)),
  'http.method': (c, t) => ((c.http.method = t), (c.is.http = true)),
  'http.path': (c, t) => ((c.http.url = t), (c.is.http = true)),
  'http.request.method': (c, t) => ((c.http.method = t), (c.is.http = true)),
  'http.response.status_code': (c, t, n) => statusCode(c, t, n),
  'http.scheme': (c, t) => ((c.http.scheme = t), (c.is.http = true)),
  'http.status_code': (c, t, n) => statusCode(c, t, n),
  'http.target': (c, t) => ((c.http.path = t), (c.is.http = true)),
  'http.url': (c, t) => ((c.http.url = t), (c.is.http = true)),
  'http.user_agent': (c, t) => (c.http.userAgent = t),
  'message_bus.destination': (c, t) => ((c.messaging.queue = t), (c.is.messaging = true)),
  'messaging.destination': (c, t) => ((c.messaging.queue = t), (c.is.messaging = true)),
  'messaging.destination.name': (c, t) => ((c.messaging.queue = t), (c.is.messaging = true)),
  'messaging.operation': (c, t) => ((c.messaging.operation = t), (c.is.messaging = true)),
  'messaging.operation.type': (c, t) => ((c.messaging.operation = t), (c.is.messaging = true)),
  'messaging.system': (c, t) => ((c.messaging.system = t), (c.is.messaging = true)),
  'net.host.name': (c, t) => (c.net.hostName = t),
  'net.host.port': (c, _t, n) => (c.net.hostPort = n),
  'net.peer.ip': (c, t) => (c.net.peerIp = t),
  'net.peer.name': (c, t) => (c.net.peerName = t),
  'net.peer.port': (c, _t, n) => (c.net.peerPort = n),
  'net.sock.peer.addr': (c, t) => (c.net.peerIp = t),
  'network.peer.address': (c, t) => (c.net.peerIp = t),
  'peer.address': (c, t) => (c.net.peerAddress = t),
  'peer.hostname': (c, t) => (c.net.peerName = t),
  'peer.port': (c, _t, n) => (c.net.peerPort = n),
  'peer.service': (c, t) => (c.peerService = t),
  'rpc.grpc.status_code': (c, _t, n) => ((c.rpc.grpcStatus = n), (c.rpc.system ??= 'grpc'), (c.is.rpc = true)),
  'rpc.method': () => {},
  'rpc.service': (c, t) => ((c.rpc.service = t), (c.is.rpc = true)),
  'rpc.system': (c, t) => ((c.rpc.system = t), (c.is.rpc = true)),
  'server.address': (c, t) => ((c.net.hostName = t), (c.net.peerName = t)),
  'server.port': (c, _t, n) => ((c.net.hostPort = n), (c.net.peerPort = n)),
  'session.id': (c, t) => (c.sessionId = t),
  'service.version': (c, t) => (c.serviceVersion = t),
  'span.kind': () => {},
  'sql.query': (c, t) => ((c.db.statement = t), (c.db.type ??= 'sql'), (c.is.db = true)),
  type: (c, t) => (c.type = t),
  'url.full': (c, t) => ((c.http.url = t), (c.is.http = true)),
  'url.path': (c, t) => ((c.http.path = t), (c.is.http = true)),
  'url.query': (c, t) => ((c.http.query = t), (c.is.http = true)),
  'url.scheme': (c, t) => ((c.http.scheme = t), (c.is.http = true)),
  'user_agent.original': (c, t) => (c.http.userAgent = t),
}

const STATEMENTS = new Set(['db.query.text', 'db.statement', 'sql.query'])

/** Attributes read only when they hold an integer (ports, status codes); as strings they stay labels. */
const INTEGER_ONLY = new Set(['net.host.port', 'net.peer.port', 'peer.port', 'server.port', 'rpc.grpc.status_code'])

function statusCode(c: Collected, text: string, value: number | undefined): void {
  const code = value ?? (/^\d+$/.test(text) ? Number(text) : undefined)
  if (code === undefined) return
  c.http.statusCode = code
  c.is.http = true
}

function collect(attributes: KeyValue[] | undefined): Collected {
  const c: Collected = {db: {}, http: {}, is: {db: false, genai: false, http: false, messaging: false, rpc: false}, labels: {} as Labels, messaging: {}, net: {}, rpc: {}}
  for (const {key = '', value} of attributes ?? []) {
    // Own keys only: an attribute named `constructor` or `__proto__` is a label, not Object.prototype's member.
    const reader = Object.hasOwn(FIELDS, key) ? FIELDS[key] : undefined
    const integer = intMember(value)
    const whole = stringMember(value)
    // A statement is kept whole, as apm-data keeps it; every other string is cut at the keyword length.
    const text = whole === undefined || STATEMENTS.has(key) ? whole : truncate(whole)
    if (reader && (integer !== undefined || (text !== undefined && !INTEGER_ONLY.has(key)))) reader(c, text ?? '', integer)
    else if ((key === 'messaging.destination.temporary' || key === 'messaging.temp_destination') && kindOf(value) === 'bool') {
      c.messaging.temporary = value!.boolValue === true
      setLabel(c.labels, key, value)
    } else if (key !== 'elastic.profiler_stack_trace_ids') setLabel(c.labels, key, value)
  }

  return c
}

/** The common fields of a transaction or span. */
function base(span: OtlpSpan, ids: {id: string; traceId: string; parentId: string}): Record<string, unknown> {
  const start = Number(span.startTimeUnixNano ?? 0)
  const end = Number(span.endTimeUnixNano ?? 0)
  const event: Record<string, unknown> = {id: ids.id, trace_id: ids.traceId}
  if (ids.parentId !== '') event.parent_id = ids.parentId
  event.name = truncate(span.name ?? '')
  event.timestamp = micros(start)
  // In milliseconds, to the microsecond (the doubles of ./wire.ts are exact to 256 ns).
  event.duration = Math.round(Math.max(0, end - start) / 1000) / 1000
  const rate = sampleRate(span.traceState)
  if (rate !== undefined) event.sample_rate = rate
  return event
}

function linksOf(span: OtlpSpan): Array<{span_id: string; trace_id: string}> | undefined {
  const links = (span.links ?? []).map((link) => ({span_id: hexId(link.spanId, 8) ?? '', trace_id: hexId(link.traceId, 16) ?? ''}))
  return links.length > 0 ? links : undefined
}

/** A root, server or consumer span: apm-data makes it a transaction. */
export function isTransaction(span: OtlpSpan, parentId: string): boolean {
  return parentId === '' || span.kind === KIND_SERVER || span.kind === KIND_CONSUMER
}

const GRPC_CODES = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated']

/** An intake v2 transaction for `span` (apm-data's TranslateTransaction). */
export function toTransaction(span: OtlpSpan, ids: {id: string; traceId: string; parentId: string}): Record<string, unknown> {
  const c = collect(span.attributes)
  const event = base(span, ids)
  const type = c.type ?? (c.is.messaging ? 'messaging' : c.is.http || c.is.rpc ? 'request' : 'unknown')
  let outcome = statusOutcome(span.status)
  let result = c.rpc.grpcStatus === undefined ? undefined : (GRPC_CODES[c.rpc.grpcStatus] ?? `Code(${c.rpc.grpcStatus})`)
  const context: Record<string, unknown> = {}
  if (c.is.http) {
    const status = c.http.statusCode
    if (status !== undefined && status > 0) {
      if (outcome === 'unknown') outcome = status >= 500 ? 'failure' : 'success'
      result ??= [1, 2, 3, 4, 5].includes(Math.floor(status / 100)) ? `HTTP ${Math.floor(status / 100)}xx` : `HTTP ${status}`
      context.response = {status_code: status}
    }

    context.request = requestContext(c)
  }

  if (c.is.messaging && c.messaging.queue) context.message = {queue: {name: c.messaging.queue}}
  if (c.serviceVersion) context.service = {version: c.serviceVersion}
  if (Object.keys(c.labels).length > 0) context.tags = c.labels
  result ??= span.status?.code === STATUS_OK ? 'Success' : span.status?.code === STATUS_ERROR ? 'Error' : undefined
  if (outcome === 'unknown') {
    outcome = 'success'
    result ??= 'Success'
  }

  Object.assign(event, {type, outcome, ...(result === undefined ? {} : {result}), sampled: true, span_count: {started: 0}})
  if (Object.keys(context).length > 0) event.context = context
  if (c.sessionId) event.session = {id: c.sessionId}
  const links = linksOf(span)
  if (links) event.links = links
  event.otel = {span_kind: SPAN_KIND[span.kind ?? 0] ?? 'UNSPECIFIED'}
  return event
}

/** A transaction's request: method, URL (from url.full, or path, query, host and scheme), HTTP version, user agent. */
function requestContext(c: Collected): Record<string, unknown> {
  const request: Record<string, unknown> = {}
  if (c.http.method) request.method = c.http.method
  const host = c.http.host || (c.net.hostName && c.net.hostPort ? `${c.net.hostName}:${c.net.hostPort}` : c.net.hostName)
  const relative = c.http.url ?? (c.http.path === undefined ? undefined : c.http.query ? `${c.http.path}?${c.http.query}` : c.http.path)
  if (relative !== undefined) request.url = urlOf(relative, host, c.http.scheme)
  if (c.http.version) request.http_version = c.http.version.replace(/^HTTP\//, '')
  if (c.http.userAgent) request.headers = {'User-Agent': c.http.userAgent}
  if (c.net.peerIp) request.socket = {remote_address: c.net.peerIp}
  return request
}

/** An intake v2 URL object: absolute when the URL, or host and scheme, say so; else its path and query. */
function urlOf(original: string, host: string | undefined, scheme: string | undefined): Record<string, unknown> {
  let url: URL | undefined
  try {
    url = new URL(original)
  } catch {
    try {
      if (host) url = new URL(original, `${scheme || 'http'}://${host}`)
    } catch {}
  }

  if (!url) {
    const [pathname, search] = original.split('?', 2)
    return {original, pathname, ...(search ? {search} : {})}
  }

  return {
    full: truncate(url.href),
    hostname: url.hostname,
    original,
    pathname: url.pathname,
    protocol: url.protocol.replace(/:$/, ''),
    ...(url.port ? {port: Number(url.port)} : {}),
    ...(url.search ? {search: url.search.slice(1)} : {}),
  }
}

const DEFAULT_PORTS: Record<string, number> = {http: 80, https: 443}

/** An intake v2 span for `span` (apm-data's TranslateSpan). */
export function toSpan(span: OtlpSpan, ids: {id: string; traceId: string; parentId: string}): Record<string, unknown> {
  const c = collect(span.attributes)
  const event = base(span, ids)
  let outcome = statusOutcome(span.status)
  const context: Record<string, unknown> = {}
  const target = destinationOf(c)
  if (c.is.http) {
    const status = c.http.statusCode
    if (status !== undefined && status > 0 && outcome === 'unknown') outcome = status >= 400 ? 'failure' : 'success'
    context.http = {...(c.http.method ? {method: c.http.method} : {}), ...(status ? {status_code: status} : {}), ...(target.url ? {url: target.url} : {})}
  }

  const typed = spanType(span, c, target)
  if (c.is.db) context.db = {...(c.db.instance ? {instance: c.db.instance} : {}), ...(c.db.statement ? {statement: c.db.statement} : {}), ...(c.db.type ? {type: c.db.type} : {}), ...(c.db.user ? {user: c.db.user} : {})}
  if (c.is.messaging && c.messaging.queue) context.message = {queue: {name: c.messaging.queue}}
  if (target.address) context.destination = {address: target.address, ...(target.port ? {port: target.port} : {})}
  if (typed.destinationService) context.destination = {...(context.destination as object), service: typed.destinationService}
  if (typed.serviceTarget) context.service = {target: typed.serviceTarget}
  if (Object.keys(c.labels).length > 0) context.tags = c.labels
  Object.assign(event, {type: typed.type, ...(typed.subtype ? {subtype: typed.subtype} : {}), ...(typed.action ? {action: typed.action} : {})})
  event.outcome = outcome === 'unknown' ? 'success' : outcome
  if (Object.keys(context).length > 0) event.context = context
  const links = linksOf(span)
  if (links) event.links = links
  event.otel = {span_kind: SPAN_KIND[span.kind ?? 0] ?? 'UNSPECIFIED'}
  return event
}

interface Destination {
  address?: string
  port?: number
  url?: string
  /** host[:port] of an HTTP URL, as apm-data writes its resource */
  resource?: string
  origin?: string
}

/** Where a client span went: the peer name (or address, or IP) and port, or the host of its URL. */
function destinationOf(c: Collected): Destination {
  let peerName = c.net.peerName
  const address = c.net.peerAddress
  if (!peerName && address && (!address.includes(':') || /^[\d.]+$|:.*:/.test(address))) peerName = address
  const destination: Destination = {address: peerName || c.net.peerIp, port: c.net.peerPort}
  let url: URL | undefined
  try {
    if (c.http.url) url = new URL(c.http.url)
    else if (c.http.path !== undefined) {
      const target = c.http.query ? `${c.http.path}?${c.http.query}` : c.http.path
      const host = c.http.host || (destination.address ? (destination.port ? `${destination.address}:${destination.port}` : destination.address) : '')
      url = new URL(target, `${c.http.scheme || 'http'}://${host}`)
    }
  } catch {}

  if (c.http.url) destination.url = c.http.url
  if (url) {
    const scheme = url.protocol.replace(/:$/, '')
    destination.url ??= url.href
    destination.address = truncate(url.hostname)
    destination.port = url.port ? Number(url.port) : ((Object.hasOwn(DEFAULT_PORTS, scheme) ? DEFAULT_PORTS[scheme] : undefined) ?? destination.port)
    destination.resource = url.port ? url.host : `${url.host}:${destination.port}`
    destination.origin = `${scheme}://${url.host}`
  }

  return destination
}

interface SpanTyping {
  type: string
  subtype?: string
  action?: string
  destinationService?: {name: string; resource: string; type: string}
  serviceTarget?: {type: string; name?: string}
}

/** Type, subtype, action, destination service and service target, by what the attributes say the span did. */
function spanType(span: OtlpSpan, c: Collected, target: Destination): SpanTyping {
  const peer = c.peerService
  let service = peer ? {name: peer, resource: c.net.peerAddress || peer} : undefined
  let typing: SpanTyping
  if (c.is.db) {
    typing = {subtype: c.db.type, type: 'db'}
    if (!service && c.db.type) service = {name: c.db.type, resource: c.db.type}
    typing.serviceTarget = {type: c.db.type || 'db', ...(c.db.instance ? {name: c.db.instance} : peer ? {name: peer} : {})}
  } else if (c.is.messaging) {
    const action = c.messaging.operation || (span.kind === KIND_PRODUCER ? 'send' : undefined)
    typing = {action, subtype: c.messaging.system, type: 'messaging'}
    if (!service && c.messaging.system) service = {name: c.messaging.system, resource: c.messaging.system}
    if (service && c.messaging.queue) service = {...service, resource: `${service.resource}/${c.messaging.queue}`}
    const name = c.messaging.queue && !c.messaging.temporary ? c.messaging.queue : peer
    typing.serviceTarget = {type: c.messaging.system || 'messaging', ...(name ? {name} : {})}
  } else if (c.is.rpc) {
    typing = {subtype: c.rpc.system, type: 'external'}
    const hostPort = `${target.address ?? ''}:${target.port ?? 0}`
    if (!service) service = {name: hostPort, resource: hostPort}
    const name = c.rpc.service || peer
    typing.serviceTarget = {type: c.rpc.system || 'external', ...(name ? {name} : {})}
  } else if (c.is.http) {
    typing = {subtype: 'http', type: 'external'}
    if (target.resource) {
      if (!service) service = {name: target.origin!, resource: target.resource}
      typing.serviceTarget = {name: target.resource, type: 'http'}
    } else {
      typing.serviceTarget = {type: 'http', ...(peer ? {name: peer} : {})}
    }
  } else if (c.is.genai) {
    typing = {subtype: c.genaiSystem, type: 'genai', serviceTarget: {type: 'genai', ...(peer ? {name: peer} : {})}}
  } else {
    typing = span.kind === KIND_INTERNAL ? {subtype: 'internal', type: 'app'} : {type: 'unknown'}
    if (peer) typing.serviceTarget = {name: peer, type: ''}
  }

  if (service) typing.destinationService = {...service, type: typing.type}
  return typing
}
