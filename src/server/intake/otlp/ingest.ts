/**
 * A decoded OTLP export request into the output, as intake v2 events (`{"metadata": {...}, "<type>":
 * {...}}`, one a line, the metadata from the resource and scope: ./resource.ts), with the same bounds
 * as the intake: anonymous clients held to their allowed agents and services, their event rate and
 * their output allowance; a request's output held to OUTPUT_MULTIPLE times its decoded size; the
 * output's back-pressure (a request writes its fair share of a turn, then waits for a flush and the
 * next turn); the result given only once the output holds every accepted event.
 *
 * Items that cannot be taken (an id of the wrong length, a metric point intake v2 cannot hold, events
 * past the output bound) are counted as rejected: the answer is OTLP's partial success.
 */
import {setImmediate as nextTurn} from 'node:timers/promises'

import {anonymousIngestDenied, RATE_LIMIT_EXCEEDED, type TokenBucket} from '../../anonymous.js'
import {ANONYMOUS_OUTPUT_RATE_EXCEEDED, OUTPUT_LIMIT_EXCEEDED} from '../../limits.js'
import type {EventSink} from '../../outputs/output.js'
import {FAIR_SHARE_BYTES} from '../line-feed.js'
import {Metric, Metricsets, logRecordAsEvent, LogRecord} from './records.js'
import {metadataHead, resourceMetadata, Resource, ResourceMetadata, Scope} from './resource.js'
import {spanEventAsEvent} from './span-events.js'
import {isTransaction, OtlpSpan, spanIds, spanJson, transactionJson} from './spans.js'
import type {Signal} from './wire.js'

export interface OtlpIngestOptions {
  output: EventSink
  /** set for anonymous clients: who they may send data for, their event rate limiter, the limiter of the bytes they may write */
  anonymous?: {allowAgent: readonly string[]; allowService: readonly string[]; limiter: TokenBucket; output?: TokenBucket}
  /** the request's output may be at most this many times its decoded size (see OUTPUT_MULTIPLE) */
  outputMultiple?: number
}

export interface OtlpResult {
  /** 200 (items may still be rejected: partial success), 403, 429, or 503 when the output failed */
  status: number
  accepted: number
  rejected: number
  /** the partial success message, '' when nothing was rejected */
  errorMessage: string
  /** the error of a request that failed (status 403, 429, 503) */
  message?: string
}

/** Stops writing: the request ends with this status and message. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** Writes event lines, keeping the counts, the bounds and the output's back-pressure. */
class Writer {
  accepted = 0
  rejected = 0
  errorMessage = ''
  private written = 0
  private turnStart = 0

  constructor(
    private readonly options: OtlpIngestOptions,
    private readonly decodedBytes: number,
  ) {}

  /** One event behind `head`; past the request's output bound it is rejected instead. */
  write(head: Buffer, type: string, event: Record<string, unknown>): void {
    this.writeJson(head, type, JSON.stringify(event))
  }

  /** One event, given as JSON text, behind `head`; as {@link write}. */
  writeJson(head: Buffer, type: string, json: string): void {
    const tail = Buffer.from(`"${type}":${json}}`)
    const bytes = head.length + tail.length + 1
    const {anonymous, output, outputMultiple} = this.options
    if (outputMultiple !== undefined && this.written + bytes > outputMultiple * this.decodedBytes) {
      this.reject(1, OUTPUT_LIMIT_EXCEEDED)
      return
    }

    if (anonymous?.output && !anonymous.output.allow(bytes)) throw new Refusal(429, ANONYMOUS_OUTPUT_RATE_EXCEEDED)
    this.written += bytes
    output.write([head, tail])
    this.accepted++
  }

  reject(count: number, message: string): void {
    this.rejected += count
    if (this.errorMessage === '') this.errorMessage = message
  }

  /** True once the request wrote its fair share of a turn: then {@link pace}. Checked first, so that an item costs no await. */
  get due(): boolean {
    return this.written - this.turnStart >= FAIR_SHARE_BYTES
  }

  /** After its fair share of a turn, while the output is congested: wait for a flush and the next turn. */
  async pace(): Promise<void> {
    if (!this.due) return
    if (this.options.output.congested) await this.options.output.flush()
    await nextTurn()
    this.turnStart = this.written
  }
}

/** A resource with its metadata and its scopes' items. */
interface Group<Item> {
  resource: ResourceMetadata
  scopes: Array<{head: Buffer; items: Item[]}>
}

function groupsOf<Item>(resources: Array<{resource?: Resource | null; scopes: Array<{scope?: Scope | null; items?: Item[]}>}>): Array<Group<Item>> {
  return resources.map(({resource, scopes}) => {
    const metadata = resourceMetadata(resource)
    return {resource: metadata, scopes: scopes.map(({items, scope}) => ({head: metadataHead(metadata, scope), items: items ?? []}))}
  })
}

/** Anonymous clients: every resource's agent and service allowed, and the rate limit covering every event, before anything is written. */
function checkAnonymous(groups: Array<Group<unknown>>, events: number, anonymous: OtlpIngestOptions['anonymous']): void {
  if (!anonymous) return
  for (const {resource} of groups) {
    const denied = anonymousIngestDenied(anonymous.allowAgent, anonymous.allowService, resource.agentName, resource.serviceName)
    if (denied) throw new Refusal(403, denied)
  }

  if (!anonymous.limiter.allow(events)) throw new Refusal(429, RATE_LIMIT_EXCEEDED)
}

interface TracesRequest {
  resourceSpans?: Array<{resource?: Resource | null; scopeSpans?: Array<{scope?: Scope | null; spans?: OtlpSpan[]}>}>
}

async function writeTraces(request: TracesRequest, writer: Writer, options: OtlpIngestOptions): Promise<void> {
  const groups = groupsOf((request.resourceSpans ?? []).map((rs) => ({resource: rs.resource, scopes: (rs.scopeSpans ?? []).map((ss) => ({items: ss.spans, scope: ss.scope}))})))
  const events = groups.reduce((sum, group) => sum + group.scopes.reduce((n, scope) => n + scope.items.reduce((m, span) => m + 1 + (span.events?.length ?? 0), 0), 0), 0)
  checkAnonymous(groups, events, options.anonymous)
  for (const {scopes} of groups) {
    for (const {head, items} of scopes) {
      for (const span of items) {
        const ids = spanIds(span)
        if (!ids) {
          writer.reject(1, 'a span id or trace id of the wrong length')
          continue
        }

        let transactionType: string | undefined
        if (isTransaction(span, ids.parentId)) {
          const {json, type} = transactionJson(span, ids)
          writer.writeJson(head, 'transaction', json)
          transactionType = type
        } else {
          writer.writeJson(head, 'span', spanJson(span, ids))
        }

        if (span.events && span.events.length > 0) {
          const parent = {id: ids.id, traceId: ids.traceId, ...(transactionType === undefined ? {} : {transaction: {type: transactionType}})}
          for (const spanEvent of span.events) writer.write(head, ...spanEventAsEvent(spanEvent, parent))
        }
        if (writer.due) await writer.pace() // eslint-disable-line no-await-in-loop -- one span at a time, with back-pressure
      }
    }
  }
}

interface LogsRequest {
  resourceLogs?: Array<{resource?: Resource | null; scopeLogs?: Array<{scope?: Scope | null; logRecords?: LogRecord[]}>}>
}

async function writeLogs(request: LogsRequest, writer: Writer, options: OtlpIngestOptions): Promise<void> {
  const groups = groupsOf((request.resourceLogs ?? []).map((rl) => ({resource: rl.resource, scopes: (rl.scopeLogs ?? []).map((sl) => ({items: sl.logRecords, scope: sl.scope}))})))
  checkAnonymous(groups, groups.reduce((sum, group) => sum + group.scopes.reduce((n, scope) => n + scope.items.length, 0), 0), options.anonymous)
  for (const {scopes} of groups) {
    for (const {head, items} of scopes) {
      for (const record of items) {
        const event = logRecordAsEvent(record)
        if (event) writer.write(head, ...event)
        else writer.reject(1, 'a span id or trace id of the wrong length')
        if (writer.due) await writer.pace() // eslint-disable-line no-await-in-loop -- one record at a time, with back-pressure
      }
    }
  }
}

interface MetricsRequest {
  resourceMetrics?: Array<{resource?: Resource | null; scopeMetrics?: Array<{scope?: Scope | null; metrics?: Metric[]}>}>
}

async function writeMetrics(request: MetricsRequest, writer: Writer, options: OtlpIngestOptions): Promise<void> {
  const groups = groupsOf((request.resourceMetrics ?? []).map((rm) => ({resource: rm.resource, scopes: (rm.scopeMetrics ?? []).map((sm) => ({items: sm.metrics, scope: sm.scope}))})))
  const scopes = groups.flatMap((group) =>
    group.scopes.map(({head, items}) => {
      const sets = new Metricsets()
      for (const metric of items) sets.add(metric)
      return {head, sets}
    }),
  )
  checkAnonymous(groups, scopes.reduce((sum, scope) => sum + scope.sets.events().length, 0), options.anonymous)
  for (const {head, sets} of scopes) {
    if (sets.rejected > 0) writer.reject(sets.rejected, 'unsupported data points')
    for (const metricset of sets.events()) {
      writer.write(head, 'metricset', metricset)
      if (writer.due) await writer.pace() // eslint-disable-line no-await-in-loop -- one metricset at a time, with back-pressure
    }
  }
}

const WRITERS: Record<Signal, (request: never, writer: Writer, options: OtlpIngestOptions) => Promise<void>> = {
  logs: writeLogs,
  metrics: writeMetrics,
  traces: writeTraces,
}

/**
 * Writes the events of a decoded export request of `signal` (`decodedBytes` long decoded) to the
 * output and waits until the output holds them. Never rejects for the client's doing: see the result.
 */
export async function ingestOtlp(signal: Signal, request: unknown, decodedBytes: number, options: OtlpIngestOptions): Promise<OtlpResult> {
  const writer = new Writer(options, decodedBytes)
  const {output} = options
  const failuresBefore = output.failures
  let refusal: Refusal | undefined
  try {
    await WRITERS[signal](request as never, writer, options)
  } catch (error) {
    if (!(error instanceof Refusal)) throw error
    refusal = error
  }

  try {
    await output.flush()
    if (writer.accepted > 0 && output.failures !== failuresBefore) throw output.lastFailure ?? new Error('a write failed')
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message
    return {accepted: 0, errorMessage: '', message: `internal error: cannot write to the output: ${reason}`, rejected: writer.accepted + writer.rejected, status: 503}
  }

  const {accepted, errorMessage, rejected} = writer
  return refusal ? {accepted, errorMessage, message: refusal.message, rejected, status: refusal.status} : {accepted, errorMessage, rejected, status: 200}
}
