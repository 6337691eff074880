/**
 * The service and agent an OTLP export request names, for the rotation telemetry (./previous-token.ts):
 * its first resource's `service.name`, and `telemetry.sdk.language` as its agent. Read only for requests
 * let in by the previous token, from the decoded message; one resource's attributes at most.
 */
import {kindOf, KeyValue} from '../intake/otlp/values.js'
import type {ClientNames} from './previous-token.js'

interface ExportRequest {
  resourceSpans?: Array<{resource?: {attributes?: KeyValue[]} | null}>
  resourceMetrics?: Array<{resource?: {attributes?: KeyValue[]} | null}>
  resourceLogs?: Array<{resource?: {attributes?: KeyValue[]} | null}>
}

/** The names of a decoded export request (traces, metrics or logs); undefined when it has no resource. */
export function otlpClientNames(message: unknown): ClientNames | undefined {
  const request = message as ExportRequest
  const resources = request.resourceSpans ?? request.resourceMetrics ?? request.resourceLogs
  if (!resources || resources.length === 0) return undefined
  const names: ClientNames = {agent: '', service: ''}
  for (const {key, value} of resources[0].resource?.attributes ?? []) {
    if (kindOf(value) !== 'string') continue
    if (key === 'service.name') names.service = value!.stringValue!
    else if (key === 'telemetry.sdk.language') names.agent = value!.stringValue!
    if (names.service !== '' && names.agent !== '') break
  }

  return names
}
