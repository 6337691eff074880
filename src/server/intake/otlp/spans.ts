/**
 * An OTLP span as an intake v2 transaction or span, as apm-data maps it (input/otlp traces.go): a root
 * span, or one of kind server or consumer, is a transaction; any other is a span. Ids, name, start
 * time, duration and outcome (from the span status, else the HTTP status code) are the span's; its
 * attributes give the HTTP, database, messaging and RPC context, the type and subtype, the
 * destination and service target, and what is left becomes labels (`context.tags`). Span events are
 * ./span-events.ts's.
 */
import {number, quote} from './json-text.js'
import {type AnyValue, kindOf, type KeyValue, labelValue, Labels, putLabel, truncate} from './values.js'

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

/** A span's id, trace id and parent id as hex ('' when absent). */
export interface SpanIds {
  id: string
  traceId: string
  parentId: string
}

/** A span's id, trace id and parent id as hex; '' for an absent or all-zero id. Undefined when one has the wrong length. */
export function spanIds(span: OtlpSpan): SpanIds | undefined {
  const id = hexId(span.spanId, 8)
  const traceId = hexId(span.traceId, 16)
  const parentId = hexId(span.parentSpanId, 8)
  if (id === undefined || traceId === undefined || parentId === undefined) return undefined
  return {id, parentId, traceId}
}

/** Two hex digits of each byte value: an id is written without a Buffer made for it. */
const HEX_BYTES = Array.from({length: 256}, (_unused, byte) => byte.toString(16).padStart(2, '0'))

/** An id as hex: '' when absent or all zeros (pcommon's IsEmpty), undefined when not `length` bytes. */
export function hexId(bytes: Uint8Array | null | undefined, length: number): string | undefined {
  if (!bytes || bytes.length === 0) return ''
  if (bytes.length !== length) return undefined
  let hex = ''
  let any = 0
  for (let i = 0; i < length; i++) {
    any |= bytes[i]
    hex += HEX_BYTES[bytes[i]]
  }

  return any === 0 ? '' : hex
}

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

/** What a transaction's or a span's attributes say, collected in one pass (one flat object of one shape: cheap to make). */
class Collected {
  labels: Labels | undefined = undefined
  httpMethod: string | undefined = undefined
  httpStatusCode: number | undefined = undefined
  httpUrl: string | undefined = undefined
  httpPath: string | undefined = undefined
  httpQuery: string | undefined = undefined
  httpHost: string | undefined = undefined
  httpScheme: string | undefined = undefined
  httpVersion: string | undefined = undefined
  httpUserAgent: string | undefined = undefined
  netPeerName: string | undefined = undefined
  netPeerIp: string | undefined = undefined
  netPeerPort: number | undefined = undefined
  netHostName: string | undefined = undefined
  netHostPort: number | undefined = undefined
  netPeerAddress: string | undefined = undefined
  dbType: string | undefined = undefined
  dbStatement: string | undefined = undefined
  dbInstance: string | undefined = undefined
  dbUser: string | undefined = undefined
  messagingSystem: string | undefined = undefined
  messagingOperation: string | undefined = undefined
  messagingQueue: string | undefined = undefined
  messagingTemporary: boolean | undefined = undefined
  rpcSystem: string | undefined = undefined
  rpcService: string | undefined = undefined
  rpcGrpcStatus: number | undefined = undefined
  isHttp = false
  isDb = false
  isMessaging = false
  isRpc = false
  isGenai = false
  genaiSystem: string | undefined = undefined
  peerService: string | undefined = undefined
  type: string | undefined = undefined
  sessionId: string | undefined = undefined
  serviceVersion: string | undefined = undefined
}

type Reader = (c: Collected, text: string, value: number | undefined) => void

/** String (and, where noted, integer) attributes apm-data reads into fields rather than labels. */
const FIELDS: Record<string, Reader> = {
  'db.instance': (c, t) => ((c.dbInstance = t), (c.isDb = true)),
  'db.name': (c, t) => ((c.dbInstance = t), (c.isDb = true)),
  'db.namespace': (c, t) => ((c.dbInstance = t), (c.isDb = true)),
  'db.elasticsearch.cluster.name': (c, t) => ((c.dbInstance = t), (c.isDb = true)),
  'db.query.text': (c, t) => ((c.dbStatement = t), (c.isDb = true)),
  'db.statement': (c, t) => ((c.dbStatement = t), (c.isDb = true)),
  'db.system': (c, t) => ((c.dbType = t), (c.isDb = true)),
  'db.type': (c, t) => ((c.dbType = t), (c.isDb = true)),
  'db.user': (c, t) => ((c.dbUser = t), (c.isDb = true)),
  'gen_ai.system': (c, t) => ((c.genaiSystem = t), (c.isGenai = true)),
  'http.flavor': (c, t) => ((c.httpVersion = t), (c.isHttp = true)),
  'http.host': (c, t) => ((c.httpHost = t), (c.isHttp = true)),
  'http.method': (c, t) => ((c.httpMethod = t), (c.isHttp = true)),
  'http.path': (c, t) => ((c.httpUrl = t), (c.isHttp = true)),
  'http.request.method': (c, t) => ((c.httpMethod = t), (c.isHttp = true)),
  'http.response.status_code': (c, t, n) => statusCode(c, t, n),
  'http.scheme': (c, t) => ((c.httpScheme = t), (c.isHttp = true)),
  'http.status_code': (c, t, n) => statusCode(c, t, n),
  'http.target': (c, t) => ((c.httpPath = t), (c.isHttp = true)),
  'http.url': (c, t) => ((c.httpUrl = t), (c.isHttp = true)),
  'http.user_agent': (c, t) => (c.httpUserAgent = t),
  'message_bus.destination': (c, t) => ((c.messagingQueue = t), (c.isMessaging = true)),
  'messaging.destination': (c, t) => ((c.messagingQueue = t), (c.isMessaging = true)),
  'messaging.destination.name': (c, t) => ((c.messagingQueue = t), (c.isMessaging = true)),
  'messaging.operation': (c, t) => ((c.messagingOperation = t), (c.isMessaging = true)),
  'messaging.operation.type': (c, t) => ((c.messagingOperation = t), (c.isMessaging = true)),
  'messaging.system': (c, t) => ((c.messagingSystem = t), (c.isMessaging = true)),
  'net.host.name': (c, t) => (c.netHostName = t),
  'net.host.port': (c, _t, n) => (c.netHostPort = n),
  'net.peer.ip': (c, t) => (c.netPeerIp = t),
  'net.peer.name': (c, t) => (c.netPeerName = t),
  'net.peer.port': (c, _t, n) => (c.netPeerPort = n),
  'net.sock.peer.addr': (c, t) => (c.netPeerIp = t),
  'network.peer.address': (c, t) => (c.netPeerIp = t),
  'peer.address': (c, t) => (c.netPeerAddress = t),
  'peer.hostname': (c, t) => (c.netPeerName = t),
  'peer.port': (c, _t, n) => (c.netPeerPort = n),
  'peer.service': (c, t) => (c.peerService = t),
  'rpc.grpc.status_code': (c, _t, n) => ((c.rpcGrpcStatus = n), (c.rpcSystem ??= 'grpc'), (c.isRpc = true)),
  'rpc.method': () => {},
  'rpc.service': (c, t) => ((c.rpcService = t), (c.isRpc = true)),
  'rpc.system': (c, t) => ((c.rpcSystem = t), (c.isRpc = true)),
  'server.address': (c, t) => ((c.netHostName = t), (c.netPeerName = t)),
  'server.port': (c, _t, n) => ((c.netHostPort = n), (c.netPeerPort = n)),
  'session.id': (c, t) => (c.sessionId = t),
  'service.version': (c, t) => (c.serviceVersion = t),
  'span.kind': () => {},
  'sql.query': (c, t) => ((c.dbStatement = t), (c.dbType ??= 'sql'), (c.isDb = true)),
  type: (c, t) => (c.type = t),
  'url.full': (c, t) => ((c.httpUrl = t), (c.isHttp = true)),
  'url.path': (c, t) => ((c.httpPath = t), (c.isHttp = true)),
  'url.query': (c, t) => ((c.httpQuery = t), (c.isHttp = true)),
  'url.scheme': (c, t) => ((c.httpScheme = t), (c.isHttp = true)),
  'user_agent.original': (c, t) => (c.httpUserAgent = t),
}

const STATEMENTS = new Set(['db.query.text', 'db.statement', 'sql.query'])

/** Attributes read only when they hold an integer (ports, status codes); as strings they stay labels. */
const INTEGER_ONLY = new Set(['net.host.port', 'net.peer.port', 'peer.port', 'server.port', 'rpc.grpc.status_code'])

function statusCode(c: Collected, text: string, value: number | undefined): void {
  const code = value ?? (/^\d+$/.test(text) ? Number(text) : undefined)
  if (code === undefined) return
  c.httpStatusCode = code
  c.isHttp = true
}

function collect(attributes: KeyValue[] | undefined): Collected {
  const c = new Collected()
  if (!attributes) return c
  for (const {key = '', value} of attributes) {
    // Own keys only: an attribute named `constructor` or `__proto__` is a label, not Object.prototype's member.
    const reader = Object.hasOwn(FIELDS, key) ? FIELDS[key] : undefined
    const kind = kindOf(value)
    const integer = kind === 'int' ? Number(value!.intValue) : undefined
    const whole = kind === 'string' ? value!.stringValue! : undefined
    // A statement is kept whole, as apm-data keeps it; every other string is cut at the keyword length.
    const text = whole === undefined || STATEMENTS.has(key) ? whole : truncate(whole)
    if (reader && (integer !== undefined || (text !== undefined && !INTEGER_ONLY.has(key)))) reader(c, text ?? '', integer)
    else if ((key === 'messaging.destination.temporary' || key === 'messaging.temp_destination') && kind === 'bool') {
      c.messagingTemporary = value!.boolValue === true
      addLabel(c, key, value)
    } else if (key !== 'elastic.profiler_stack_trace_ids') addLabel(c, key, value)
  }

  return c
}

/** A label, in labels made on the first one (most spans have none). */
function addLabel(c: Collected, key: string, value: AnyValue | null | undefined): void {
  const kept = labelValue(value)
  if (kept !== undefined) putLabel((c.labels ??= {}), key, kept)
}

/** The common fields of a transaction or span, as JSON members. */
function baseMembers(span: OtlpSpan, ids: SpanIds): string {
  const start = Number(span.startTimeUnixNano ?? 0)
  const end = Number(span.endTimeUnixNano ?? 0)
  // Ids are hex: nothing to escape.
  let text = `"id":"${ids.id}","trace_id":"${ids.traceId}"`
  if (ids.parentId !== '') text += `,"parent_id":"${ids.parentId}"`
  // The duration in milliseconds, to the microsecond (the doubles of ./wire.ts are exact to 256 ns).
  text += `,"name":${quote(truncate(span.name ?? ''))},"timestamp":${number(micros(start))},"duration":${number(Math.round(Math.max(0, end - start) / 1000) / 1000)}`
  const rate = sampleRate(span.traceState)
  if (rate !== undefined) text += `,"sample_rate":${number(rate)}`
  return text
}

/** The `"links":[...]` member, with a leading comma; '' without links. */
function linksMember(span: OtlpSpan): string {
  if (!span.links || span.links.length === 0) return ''
  return `,"links":${JSON.stringify(span.links.map((link) => ({span_id: hexId(link.spanId, 8) ?? '', trace_id: hexId(link.traceId, 16) ?? ''})))}`
}

/** The trailing `"otel"` member. */
function otelMember(span: OtlpSpan): string {
  return `,"otel":{"span_kind":${quote(SPAN_KIND[span.kind ?? 0] ?? 'UNSPECIFIED')}}`
}

/** A root, server or consumer span: apm-data makes it a transaction. */
export function isTransaction(span: OtlpSpan, parentId: string): boolean {
  return parentId === '' || span.kind === KIND_SERVER || span.kind === KIND_CONSUMER
}

const GRPC_CODES = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated']

/** An intake v2 transaction for `span` (apm-data's TranslateTransaction), as JSON text, and its type. */
export function transactionJson(span: OtlpSpan, ids: SpanIds): {json: string; type: string} {
  const c = collect(span.attributes)
  const type = c.type ?? (c.isMessaging ? 'messaging' : c.isHttp || c.isRpc ? 'request' : 'unknown')
  let outcome = statusOutcome(span.status)
  let result = c.rpcGrpcStatus === undefined ? undefined : (GRPC_CODES[c.rpcGrpcStatus] ?? `Code(${c.rpcGrpcStatus})`)
  // Members are gathered as `,"key":value` texts: the object is `{` + all of them but the first comma + `}`.
  let context = ''
  if (c.isHttp) {
    const status = c.httpStatusCode
    if (status !== undefined && status > 0) {
      if (outcome === 'unknown') outcome = status >= 500 ? 'failure' : 'success'
      result ??= [1, 2, 3, 4, 5].includes(Math.floor(status / 100)) ? `HTTP ${Math.floor(status / 100)}xx` : `HTTP ${status}`
      context += `,"response":{"status_code":${number(status)}}`
    }

    context += `,"request":${requestJson(c)}`
  }

  if (c.isMessaging && c.messagingQueue) context += `,"message":{"queue":{"name":${quote(c.messagingQueue)}}}`
  if (c.serviceVersion) context += `,"service":{"version":${quote(c.serviceVersion)}}`
  if (c.labels) context += `,"tags":${JSON.stringify(c.labels)}`
  result ??= span.status?.code === STATUS_OK ? 'Success' : span.status?.code === STATUS_ERROR ? 'Error' : undefined
  if (outcome === 'unknown') {
    outcome = 'success'
    result ??= 'Success'
  }

  let json = `{${baseMembers(span, ids)},"type":${quote(type)},"outcome":"${outcome}"${result === undefined ? '' : `,"result":${quote(result)}`},"sampled":true,"span_count":{"started":0}`
  if (context !== '') json += `,"context":{${context.slice(1)}}`
  if (c.sessionId) json += `,"session":{"id":${quote(c.sessionId)}}`
  return {json: `${json}${linksMember(span)}${otelMember(span)}}`, type}
}

/** A transaction's request: method, URL (from url.full, or path, query, host and scheme), HTTP version, user agent. */
function requestJson(c: Collected): string {
  let members = ''
  if (c.httpMethod) members += `,"method":${quote(c.httpMethod)}`
  const host = c.httpHost || (c.netHostName && c.netHostPort ? `${c.netHostName}:${c.netHostPort}` : c.netHostName)
  const relative = c.httpUrl ?? (c.httpPath === undefined ? undefined : c.httpQuery ? `${c.httpPath}?${c.httpQuery}` : c.httpPath)
  if (relative !== undefined) members += `,"url":${urlJson(relative, host, c.httpScheme)}`
  if (c.httpVersion) members += `,"http_version":${quote(c.httpVersion.replace(/^HTTP\//, ''))}`
  if (c.httpUserAgent) members += `,"headers":{"User-Agent":${quote(c.httpUserAgent)}}`
  if (c.netPeerIp) members += `,"socket":{"remote_address":${quote(c.netPeerIp)}}`
  return `{${members.slice(1)}}`
}

/** An intake v2 URL object: absolute when the URL, or host and scheme, say so; else its path and query. */
function urlJson(original: string, host: string | undefined, scheme: string | undefined): string {
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
    return `{"original":${quote(original)},"pathname":${quote(pathname)}${search ? `,"search":${quote(search)}` : ''}}`
  }

  let text = `{"full":${quote(truncate(url.href))},"hostname":${quote(url.hostname)},"original":${quote(original)},"pathname":${quote(url.pathname)},"protocol":${quote(url.protocol.replace(/:$/, ''))}`
  if (url.port) text += `,"port":${number(Number(url.port))}`
  if (url.search) text += `,"search":${quote(url.search.slice(1))}`
  return `${text}}`
}

const DEFAULT_PORTS: Record<string, number> = {http: 80, https: 443}

/** An intake v2 span for `span` (apm-data's TranslateSpan), as JSON text. */
export function spanJson(span: OtlpSpan, ids: SpanIds): string {
  const c = collect(span.attributes)
  let outcome = statusOutcome(span.status)
  // Members are gathered as `,"key":value` texts, as in transactionJson.
  let context = ''
  const target = destinationOf(c)
  if (c.isHttp) {
    const status = c.httpStatusCode
    if (status !== undefined && status > 0 && outcome === 'unknown') outcome = status >= 400 ? 'failure' : 'success'
    let http = ''
    if (c.httpMethod) http += `,"method":${quote(c.httpMethod)}`
    if (status) http += `,"status_code":${number(status)}`
    if (target.url) http += `,"url":${quote(target.url)}`
    context += `,"http":{${http.slice(1)}}`
  }

  const typed = spanType(span, c, target)
  if (c.isDb) {
    let db = ''
    if (c.dbInstance) db += `,"instance":${quote(c.dbInstance)}`
    if (c.dbStatement) db += `,"statement":${quote(c.dbStatement)}`
    if (c.dbType) db += `,"type":${quote(c.dbType)}`
    if (c.dbUser) db += `,"user":${quote(c.dbUser)}`
    context += `,"db":{${db.slice(1)}}`
  }

  if (c.isMessaging && c.messagingQueue) context += `,"message":{"queue":{"name":${quote(c.messagingQueue)}}}`
  let destination = ''
  if (target.address) destination += target.port ? `,"address":${quote(target.address)},"port":${number(target.port)}` : `,"address":${quote(target.address)}`
  const service = typed.destinationService
  if (service) destination += `,"service":{"name":${quote(service.name)},"resource":${quote(service.resource)},"type":${quote(service.type)}}`
  if (destination !== '') context += `,"destination":{${destination.slice(1)}}`
  if (typed.serviceTarget) context += `,"service":{"target":${typed.serviceTarget}}`
  if (c.labels) context += `,"tags":${JSON.stringify(c.labels)}`
  let json = `{${baseMembers(span, ids)},"type":${quote(typed.type)}`
  if (typed.subtype) json += `,"subtype":${quote(typed.subtype)}`
  if (typed.action) json += `,"action":${quote(typed.action)}`
  json += `,"outcome":"${outcome === 'unknown' ? 'success' : outcome}"`
  if (context !== '') json += `,"context":{${context.slice(1)}}`
  return `${json}${linksMember(span)}${otelMember(span)}}`
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
  let peerName = c.netPeerName
  const address = c.netPeerAddress
  if (!peerName && address && (!address.includes(':') || /^[\d.]+$|:.*:/.test(address))) peerName = address
  const destination: Destination = {address: peerName || c.netPeerIp, port: c.netPeerPort}
  let url: URL | undefined
  try {
    if (c.httpUrl) url = new URL(c.httpUrl)
    else if (c.httpPath !== undefined) {
      const target = c.httpQuery ? `${c.httpPath}?${c.httpQuery}` : c.httpPath
      const host = c.httpHost || (destination.address ? (destination.port ? `${destination.address}:${destination.port}` : destination.address) : '')
      url = new URL(target, `${c.httpScheme || 'http'}://${host}`)
    }
  } catch {}

  if (c.httpUrl) destination.url = c.httpUrl
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
  /** the service target as JSON: its key order differs between the kinds of span */
  serviceTarget?: string
}

/** A service target `{"type", "name"}` (or `{"name", "type"}` when `nameFirst`), without a name when there is none. */
function serviceTarget(type: string, name: string | undefined, nameFirst = false): string {
  if (!name) return `{"type":${quote(type)}}`
  return nameFirst ? `{"name":${quote(name)},"type":${quote(type)}}` : `{"type":${quote(type)},"name":${quote(name)}}`
}

/** Type, subtype, action, destination service and service target, by what the attributes say the span did. */
function spanType(span: OtlpSpan, c: Collected, target: Destination): SpanTyping {
  const peer = c.peerService
  let service = peer ? {name: peer, resource: c.netPeerAddress || peer} : undefined
  let typing: SpanTyping
  if (c.isDb) {
    typing = {subtype: c.dbType, type: 'db'}
    if (!service && c.dbType) service = {name: c.dbType, resource: c.dbType}
    typing.serviceTarget = serviceTarget(c.dbType || 'db', c.dbInstance || peer)
  } else if (c.isMessaging) {
    const action = c.messagingOperation || (span.kind === KIND_PRODUCER ? 'send' : undefined)
    typing = {action, subtype: c.messagingSystem, type: 'messaging'}
    if (!service && c.messagingSystem) service = {name: c.messagingSystem, resource: c.messagingSystem}
    if (service && c.messagingQueue) service = {...service, resource: `${service.resource}/${c.messagingQueue}`}
    const name = c.messagingQueue && !c.messagingTemporary ? c.messagingQueue : peer
    typing.serviceTarget = serviceTarget(c.messagingSystem || 'messaging', name)
  } else if (c.isRpc) {
    typing = {subtype: c.rpcSystem, type: 'external'}
    const hostPort = `${target.address ?? ''}:${target.port ?? 0}`
    if (!service) service = {name: hostPort, resource: hostPort}
    const name = c.rpcService || peer
    typing.serviceTarget = serviceTarget(c.rpcSystem || 'external', name)
  } else if (c.isHttp) {
    typing = {subtype: 'http', type: 'external'}
    if (target.resource) {
      if (!service) service = {name: target.origin!, resource: target.resource}
      typing.serviceTarget = serviceTarget('http', target.resource, true)
    } else {
      typing.serviceTarget = serviceTarget('http', peer)
    }
  } else if (c.isGenai) {
    typing = {subtype: c.genaiSystem, type: 'genai', serviceTarget: serviceTarget('genai', peer)}
  } else {
    typing = span.kind === KIND_INTERNAL ? {subtype: 'internal', type: 'app'} : {type: 'unknown'}
    if (peer) typing.serviceTarget = serviceTarget('', peer, true)
  }

  if (service) typing.destinationService = {...service, type: typing.type}
  return typing
}
