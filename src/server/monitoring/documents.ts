/**
 * What the monitoring endpoint answers, in the shapes of Beats' (libbeat/api) and of the counters APM
 * Server registers there: `GET /` the beat information, `GET /stats` the counters (`beat`, `libbeat.output`,
 * `apm-server.server`, `apm-server.processor.stream`) and this server's own (`apm-server.auth`,
 * `apm-server.previous_token`). Every document has a fixed set of keys and lists of bounded length,
 * whatever clients sent; none holds a setting's value, a token or a header. docs/monitoring.md shows
 * both, and where they differ from Beats.
 */
import os from 'node:os'

import type {ServerStats} from '../api/context.js'

/** What identifies this server to a monitoring tool. */
export interface Identity {
  /** random, made at each start (Beats' ephemeral_id) */
  ephemeralId: string
  version: string
  buildTime: string
  /** process.hrtime.bigint() at start, for the uptime */
  started: bigint
  /** `file` or `redis` */
  outputType: string
}

/** `GET /`: Beats' beat information (without the uuid Beats keeps in data/meta.json, and the user). */
export function beatInfo(identity: Identity): Record<string, string> {
  const hostname = os.hostname()
  return {
    beat: 'apm-server',
    binary_arch: process.arch,
    build_commit: 'unknown',
    build_time: identity.buildTime,
    ephemeral_id: identity.ephemeralId,
    hostname,
    name: hostname,
    version: identity.version,
  }
}

/** APM Server's error counters (response.errors.*) by the status that stands for them. */
const ERROR_KEYS: Record<number, string> = {
  400: 'validate',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'notfound',
  405: 'method',
  413: 'toolarge',
  415: 'validate',
  429: 'ratelimit',
  500: 'internal',
  503: 'unavailable',
  504: 'timeout',
}

/** `apm-server.server`: requests, and responses by status as APM Server counts them, plus every status apart. */
function serverCounters(stats: ServerStats): Record<string, unknown> {
  const errors: Record<string, number> = {count: 0, forbidden: 0, internal: 0, method: 0, notfound: 0, ratelimit: 0, timeout: 0, toolarge: 0, unauthorized: 0, unavailable: 0, validate: 0}
  const valid = {accepted: 0, count: 0, ok: 0}
  let count = 0
  // Keys are the server's own status codes: a bounded set, never client text.
  for (const [status, responses] of Object.entries(stats.responses)) {
    const code = Number(status)
    count += responses
    if (code < 400) {
      valid.count += responses
      if (code === 200) valid.ok += responses
      if (code === 202) valid.accepted += responses
    } else {
      errors.count += responses
      if (ERROR_KEYS[code]) errors[ERROR_KEYS[code]] += responses
    }
  }

  return {request: {count: stats.requests}, response: {count, errors, status: {...stats.responses}, valid}}
}

/** `libbeat.output`: Beats' event counters from the output's stats, and each Redis host's. */
function outputCounters(stats: ServerStats, type: string): Record<string, unknown> {
  const output = stats.output ?? {failed: 0, pending: 0, published: 0}
  const hosts = Object.entries(output.hosts ?? {}).map(([host, counts]) => ({host, ...counts}))
  return {
    events: {
      acked: output.published,
      active: output.pending,
      // Beats: `failed` is sent again, `dropped` given up.
      dropped: output.failed,
      failed: output.retried ?? 0,
      total: output.published + output.failed + output.pending,
    },
    hosts,
    type,
  }
}

/** `GET /stats`. */
export function statsDocument(identity: Identity, stats: ServerStats): Record<string, unknown> {
  const memory = process.memoryUsage()
  const uptimeMs = Number((process.hrtime.bigint() - identity.started) / 1_000_000n)
  return {
    'apm-server': {
      auth: stats.auth ?? {anonymous: 0, failed: 0, none: 0, previous_token: 0, secret_token: 0},
      previous_token: stats.previousToken,
      processor: {stream: {accepted: stats.events.accepted, errors: {invalid: stats.events.invalid, toolarge: stats.events.tooLarge}}},
      server: serverCounters(stats),
    },
    beat: {
      info: {ephemeral_id: identity.ephemeralId, name: os.hostname(), uptime: {ms: uptimeMs}, version: identity.version},
      memstats: {memory_alloc: memory.heapUsed, memory_sys: memory.heapTotal, rss: memory.rss},
    },
    libbeat: {output: outputCounters(stats, identity.outputType)},
  }
}
