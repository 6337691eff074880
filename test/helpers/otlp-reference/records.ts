/**
 * OTLP log records and metric data points as intake v2 events, as apm-data maps them (input/otlp
 * logs.go, metrics.go):
 *
 * - a log record is a log event: its time (or observed time), body as the message (a map's entries
 *   also as labels), severity text as `log.level` and number as `event.severity`, trace and span ids,
 *   attributes as labels; a record with `exception.message` or `exception.type` is an error instead;
 * - gauge and sum data points (numbers), and histograms with explicit bounds (as intake v2 histogram
 *   samples: each bucket's midpoint and count), become metricsets, one per time and attribute set of a
 *   scope; summaries, exponential histograms and values that are not finite numbers are rejected, and
 *   counted in the response's `partial_success`.
 */
import {errorFields, exceptionOf} from './span-events.js'
import {hexId, micros} from './spans.js'
import {AnyValue, KeyValue, kindOf, Labels, setLabel, truncate, valueAsString} from './values.js'

export interface LogRecord {
  timeUnixNano?: number
  observedTimeUnixNano?: number
  severityNumber?: number
  severityText?: string
  body?: AnyValue | null
  attributes?: KeyValue[]
  traceId?: Uint8Array
  spanId?: Uint8Array
}

/** A log record as an intake v2 log event, or an error when it records an exception; undefined when an id has the wrong length. */
export function logRecordAsEvent(record: LogRecord): ['error' | 'log', Record<string, unknown>] | undefined {
  const traceId = hexId(record.traceId, 16)
  const spanId = hexId(record.spanId, 8)
  if (traceId === undefined || spanId === undefined) return undefined
  const labels = {} as Labels
  const body = record.body
  if (kindOf(body) === 'kvlist') for (const {key = '', value} of body!.kvlistValue!.values ?? []) setLabel(labels, key, value)
  const exception = exceptionOf(record.attributes, labels, new Set())
  const nanos = Number(record.timeUnixNano ?? 0) === 0 ? record.observedTimeUnixNano : record.timeUnixNano
  const message = valueAsString(body)
  const level = truncate(record.severityText ?? '')
  if (exception) {
    const error: Record<string, unknown> = {...errorFields(exception), timestamp: micros(nanos)}
    if (traceId) error.trace_id = traceId
    if (spanId) error.parent_id = spanId
    if (message !== '') error.log = {message, ...(level ? {level} : {})}
    if (Object.keys(labels).length > 0) error.context = {tags: labels}
    return ['error', error]
  }

  const log: Record<string, unknown> = {'@timestamp': micros(nanos)}
  if (message !== '') log.message = message
  if (level !== '') log.log = {level}
  if (record.severityNumber) log.event = {severity: record.severityNumber}
  if (traceId) log.trace = {id: traceId}
  if (spanId) log.span = {id: spanId}
  if (Object.keys(labels).length > 0) log.labels = labels
  return ['log', log]
}

interface NumberPoint {
  attributes?: KeyValue[]
  timeUnixNano?: number
  asDouble?: null | number
  asInt?: null | number
}

interface HistogramPoint {
  attributes?: KeyValue[]
  timeUnixNano?: number
  count?: number
  sum?: null | number
  bucketCounts?: number[]
  explicitBounds?: number[]
}

export interface Metric {
  name?: string
  gauge?: null | {dataPoints?: NumberPoint[]}
  sum?: null | {dataPoints?: NumberPoint[]}
  histogram?: null | {dataPoints?: HistogramPoint[]}
  exponentialHistogram?: null | {dataPoints?: unknown[]}
  summary?: null | {dataPoints?: unknown[]}
}

type Sample = {type: string; value: number} | {type: 'histogram'; values: number[]; counts: number[]}

/** The metricsets of one scope, keyed by time and attributes, as apm-data groups them. */
export class Metricsets {
  /** data points rejected: not numbers, not finite, or of a kind intake v2 cannot hold */
  rejected = 0
  private readonly sets = new Map<string, {timestamp: number; tags: Labels; samples: Record<string, Sample>}>()

  add(metric: Metric): void {
    const name = truncate(metric.name ?? '')
    for (const point of metric.gauge?.dataPoints ?? []) this.number(name, 'gauge', point)
    for (const point of metric.sum?.dataPoints ?? []) this.number(name, 'counter', point)
    for (const point of metric.histogram?.dataPoints ?? []) {
      const sample = histogramSample(point)
      if (sample) this.upsert(point, name, sample)
      else this.rejected++
    }

    this.rejected += (metric.exponentialHistogram?.dataPoints?.length ?? 0) + (metric.summary?.dataPoints?.length ?? 0)
  }

  /** The intake v2 metricsets, in the order their first data point came. */
  events(): Array<Record<string, unknown>> {
    return [...this.sets.values()].map(({samples, tags, timestamp}) => ({samples, timestamp, ...(Object.keys(tags).length > 0 ? {tags} : {})}))
  }

  private number(name: string, type: string, point: NumberPoint): void {
    // Own properties: protobufjs keeps a 0 on the prototype for both members of the oneof.
    const value = Object.hasOwn(point, 'asInt') && point.asInt != null ? Number(point.asInt) : Object.hasOwn(point, 'asDouble') ? point.asDouble : undefined
    if (value == null || !Number.isFinite(value)) {
      this.rejected++
      return
    }

    this.upsert(point, name, {type, value})
  }

  private upsert(point: {attributes?: KeyValue[]; timeUnixNano?: number}, name: string, sample: Sample): void {
    const timestamp = micros(point.timeUnixNano)
    const tags = {} as Labels
    for (const {key = '', value} of point.attributes ?? []) setLabel(tags, key, value)
    const key = `${timestamp} ${JSON.stringify(tags)}`
    let set = this.sets.get(key)
    if (!set) {
      set = {samples: {} as Record<string, Sample>, tags, timestamp}
      this.sets.set(key, set)
    }

    // Defined, not assigned: a metric named __proto__ is a sample like any other.
    Object.defineProperty(set.samples, name, {configurable: true, enumerable: true, value: sample, writable: true})
  }
}

/** apm-data's histogram sample: each non-empty bucket's midpoint (the bound of the first and last) and count. */
function histogramSample(point: HistogramPoint): Sample | undefined {
  const counts = point.bucketCounts ?? []
  const bounds = point.explicitBounds ?? []
  const total = Number(point.count ?? 0)
  if (bounds.length === 0) return total > 0 ? {counts: [total], type: 'histogram', values: [Number(point.sum ?? 0) / total]} : undefined
  if (counts.length !== bounds.length + 1) return undefined
  const sample = {counts: [] as number[], type: 'histogram' as const, values: [] as number[]}
  for (const [i, count] of counts.entries()) {
    if (Number(count) === 0) continue
    const value = i === 0 ? (bounds[0] > 0 ? bounds[0] / 2 : bounds[0]) : i === counts.length - 1 ? bounds[i - 1] : bounds[i - 1] + (bounds[i] - bounds[i - 1]) / 2
    sample.counts.push(Number(count))
    sample.values.push(value)
  }

  return sample
}
