/**
 * Span events and log records that record an exception, as intake v2 errors, and other span events as
 * log events, as apm-data maps them (input/otlp traces.go convertSpanEvent, exceptions.go, logs.go):
 * an error has a fresh id, the trace, its parent (the span or transaction that recorded it) and the
 * transaction, `exception.message` (or "[EMPTY]"), `exception.type`, `handled` unless
 * `exception.escaped`, and the stack trace as sent (`stack_trace`: apm-data parses only Java's);
 * the event's other attributes become labels.
 */
import {randomBytes} from 'node:crypto'

import {micros} from './spans.js'
import {KeyValue, kindOf, Labels, setLabel, stringMember, truncate} from './values.js'

const EXCEPTION_KEYS = new Set(['exception.escaped', 'exception.message', 'exception.stacktrace', 'exception.type'])

export interface Exception {
  message: string
  type: string
  stacktrace: string
  escaped: boolean
}

/** The exception attributes of an event or record, the others as labels into `labels`; undefined without a message or type. */
export function exceptionOf(attributes: KeyValue[] | undefined, labels: Labels, skip: ReadonlySet<string> = EXCEPTION_KEYS): Exception | undefined {
  const found: Exception = {escaped: false, message: '', stacktrace: '', type: ''}
  for (const {key = '', value} of attributes ?? []) {
    if (key === 'exception.message') found.message = stringMember(value) ?? ''
    else if (key === 'exception.type') found.type = stringMember(value) ?? ''
    else if (key === 'exception.stacktrace') found.stacktrace = stringMember(value) ?? ''
    else if (key === 'exception.escaped') found.escaped = kindOf(value) === 'bool' && value!.boolValue === true
    else if (!skip.has(key)) setLabel(labels, key, value)
  }

  return found.message !== '' || found.type !== '' ? found : undefined
}

/** The intake v2 `exception` (and the error's `stack_trace`) of an exception. */
export function errorFields(exception: Exception): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    exception: {handled: !exception.escaped, message: exception.message === '' ? '[EMPTY]' : exception.message, ...(exception.type === '' ? {} : {type: exception.type})},
    id: randomBytes(16).toString('hex'),
  }
  if (exception.stacktrace !== '') fields.stack_trace = exception.stacktrace
  return fields
}

/** The span or transaction a span event belongs to. */
export interface Parent {
  traceId: string
  id: string
  transaction?: {type: string}
}

/** One span event as an intake v2 error (an exception) or log event: its type and body. */
export function spanEventAsEvent(event: {timeUnixNano?: number; name?: string; attributes?: KeyValue[]}, parent: Parent): ['error' | 'log', Record<string, unknown>] {
  // Only the event's own attributes: the resource's labels are in the metadata, the span's are not copied (as in apm-data).
  const labels = {} as Labels
  const exception = event.name === 'exception' ? exceptionOf(event.attributes, labels) : undefined
  const timestamp = micros(event.timeUnixNano)
  if (exception) {
    const error: Record<string, unknown> = {...errorFields(exception), parent_id: parent.id, timestamp, trace_id: parent.traceId}
    if (parent.transaction) Object.assign(error, {transaction: {sampled: true, type: parent.transaction.type}, transaction_id: parent.id})
    if (Object.keys(labels).length > 0) error.context = {tags: labels}
    return ['error', error]
  }

  if (event.name !== 'exception') for (const {key = '', value} of event.attributes ?? []) setLabel(labels, key, value)
  const log: Record<string, unknown> = {'@timestamp': timestamp, event: {kind: 'event'}, message: truncate(event.name ?? ''), span: {id: parent.id}, trace: {id: parent.traceId}}
  if (parent.transaction) log.transaction = {id: parent.id}
  if (Object.keys(labels).length > 0) log.labels = labels
  return ['log', log]
}
