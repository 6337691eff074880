/**
 * The OTLP conversion as it was before the event lines were assembled as strings (commit ceabe66:
 * objects built per event, then JSON.stringify), kept frozen beside its modules in this folder so that
 * test/server/otlp-conversion.test.ts can hold the server's conversion to the very same bytes. Its
 * decoder is a plain protobufjs Root of the same schema, without the server's decoding settings.
 * Bounds are not applied here (the corpus stays within them): every event line, in order.
 */
import protobuf from 'protobufjs/light.js'

import {OTLP_SCHEMA} from '../../../src/server/intake/otlp/schema.js'
import type {Signal} from '../../../src/server/intake/otlp/wire.js'
import {LogRecord, logRecordAsEvent, Metric, Metricsets} from './records.js'
import {metadataHead, Resource, resourceMetadata, Scope} from './resource.js'
import {spanEventAsEvent} from './span-events.js'
import {isTransaction, OtlpSpan, spanIds, toSpan, toTransaction} from './spans.js'

const ROOT = protobuf.Root.fromJSON(OTLP_SCHEMA)
const REQUESTS: Record<Signal, protobuf.Type> = {
  logs: ROOT.lookupType('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest'),
  metrics: ROOT.lookupType('opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest'),
  traces: ROOT.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest'),
}

/** Decodes a protobuf export request as protobufjs does by default. */
export function referenceDecode(signal: Signal, bytes: Uint8Array): unknown {
  return REQUESTS[signal].decode(bytes)
}

interface Reference {
  lines: string[]
  rejected: number
}

type Nested<Item> = Array<{resource?: Resource | null; scopes: Array<{scope?: Scope | null; items?: Item[]}>}>

function line(head: Buffer, type: string, event: unknown): string {
  return `${head.toString('utf8')}"${type}":${JSON.stringify(event)}}`
}

function traces(resources: Nested<OtlpSpan>, out: Reference): void {
  for (const {resource, scopes} of resources) {
    const metadata = resourceMetadata(resource)
    for (const {items = [], scope} of scopes) {
      const head = metadataHead(metadata, scope)
      for (const span of items) {
        const ids = spanIds(span)
        if (!ids) {
          out.rejected++
          continue
        }

        const transaction = isTransaction(span, ids.parentId)
        const event = transaction ? toTransaction(span, ids) : toSpan(span, ids)
        out.lines.push(line(head, transaction ? 'transaction' : 'span', event))
        const parent = {id: ids.id, traceId: ids.traceId, ...(transaction ? {transaction: {type: event.type as string}} : {})}
        for (const spanEvent of span.events ?? []) out.lines.push(line(head, ...spanEventAsEvent(spanEvent, parent)))
      }
    }
  }
}

function logs(resources: Nested<LogRecord>, out: Reference): void {
  for (const {resource, scopes} of resources) {
    const metadata = resourceMetadata(resource)
    for (const {items = [], scope} of scopes) {
      const head = metadataHead(metadata, scope)
      for (const record of items) {
        const event = logRecordAsEvent(record)
        if (event) out.lines.push(line(head, ...event))
        else out.rejected++
      }
    }
  }
}

function metrics(resources: Nested<Metric>, out: Reference): void {
  for (const {resource, scopes} of resources) {
    const metadata = resourceMetadata(resource)
    for (const {items = [], scope} of scopes) {
      const head = metadataHead(metadata, scope)
      const sets = new Metricsets()
      for (const metric of items) sets.add(metric)
      out.rejected += sets.rejected
      for (const metricset of sets.events()) out.lines.push(line(head, 'metricset', metricset))
    }
  }
}

/** Every event line of a decoded request, and the count of items rejected, as the conversion made them before. */
export function referenceLines(signal: Signal, request: unknown): Reference {
  const out: Reference = {lines: [], rejected: 0}
  /* eslint-disable @typescript-eslint/no-explicit-any -- the decoded request, read as each signal nests it */
  const r = request as any
  if (signal === 'traces') traces((r.resourceSpans ?? []).map((x: any) => ({resource: x.resource, scopes: (x.scopeSpans ?? []).map((s: any) => ({items: s.spans, scope: s.scope}))})), out)
  if (signal === 'logs') logs((r.resourceLogs ?? []).map((x: any) => ({resource: x.resource, scopes: (x.scopeLogs ?? []).map((s: any) => ({items: s.logRecords, scope: s.scope}))})), out)
  if (signal === 'metrics') metrics((r.resourceMetrics ?? []).map((x: any) => ({resource: x.resource, scopes: (x.scopeMetrics ?? []).map((s: any) => ({items: s.metrics, scope: s.scope}))})), out)
  /* eslint-enable @typescript-eslint/no-explicit-any */
  return out
}
