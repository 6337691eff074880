/**
 * The HTTP(S) intake server: Elastic APM Server's agent-facing API with its status codes and JSON
 * bodies, and OTLP over HTTP and gRPC on the same port, writing accepted events to the configured output. `startServer` opens the output, wires the
 * route table (./api/routes.ts) into a listener (./listener.ts) and returns; `close()` is the graceful
 * stop of ./shutdown.ts and `reload()` applies a reloaded configuration. The serving lifecycle around
 * it (signals, reloads, logs) is ./lifecycle.ts.
 */
import {randomUUID} from 'node:crypto'
import type https from 'node:https'

import {ApiContext, ServerStats} from './api/context.js'
import {grpcStreamHandler} from './api/otlp-grpc.js'
import {buildDate, SERVER_VERSION} from './api/root.js'
import {createRequestHandler} from './api/router.js'
import {ROUTES} from './api/routes.js'
import type {ServerConfig} from './config/server-config.js'
import {ConnectionGate, connectionCap} from './connections.js'
import {createListener, listen, parseHost, readTls, urlOf} from './listener.js'
import type {Logger} from './logger.js'
import {beatInfo, Identity, statsDocument} from './monitoring/documents.js'
import {MonitoringEndpoint, startMonitoring} from './monitoring/endpoint.js'
import {openOutput} from './outputs/open.js'
import type {Output} from './outputs/output.js'
import {DEFAULT_SHUTDOWN_TIMEOUT_MS, shutdown} from './shutdown.js'

export type {ServerStats} from './api/context.js'

export interface RunningServer {
  url: string
  address: {host: string; port: number}
  /** the monitoring endpoint's URL while it listens (http.enabled) */
  readonly monitoringUrl?: string
  close(): Promise<void>
  /**
   * Applies a reloaded configuration; rejects, changing nothing, when it cannot (an unreadable
   * certificate, output credentials the store refuses).
   */
  reload(next: ServerConfig): Promise<void>
  stats(): ServerStats
}

export interface StartOptions {
  /** how long close() waits for in-flight requests before cutting them; default 30 s */
  shutdownTimeoutMs?: number
  /** milliseconds clock for the token grace period and rate limits; tests pass a fake one */
  now?: () => number
  /** request data held in memory at once, queued output included; default MEMORY_BUDGET_BYTES (limits.ts) */
  memoryBudgetBytes?: number
  /** connections taken at once; default from the open-files limit (connections.ts) */
  connectionCap?: number
  /** how long a gRPC call's stream may stay idle; default H2_STREAM_IDLE_MS (h2.ts); tests shorten it */
  streamIdleMs?: number
  /** how often the previous-token summaries look at the clock; default CHECK_MS (monitoring/previous-token.ts) */
  summaryCheckMs?: number
}

export async function startServer(config: ServerConfig, logger: Logger, options: StartOptions = {}): Promise<RunningServer> {
  parseHost(config.host) // a malformed host fails before anything is opened
  const material = config.ssl.enabled ? readTls(config.ssl) : undefined
  const output = await openOutput(config.output, logger)
  const context = new ApiContext(config, output, logger, options)
  const stats = (): ServerStats => ({
    ...structuredClone(context.stats),
    auth: {...context.authenticator.counts},
    output: output.stats(),
    previousToken: context.previousToken.stats(),
  })
  // The monitoring endpoint first: a refused or taken address stops the start before agents are let in.
  let monitoring = await openMonitoring(config, stats, logger).catch(async (error) => {
    await output.close()
    throw error
  })
  context.connections = new ConnectionGate(options.connectionCap ?? connectionCap(), logger)
  const listener = createListener(material, createRequestHandler(ROUTES, context), grpcStreamHandler(context), logger, context.connections)
  const address = await listen(listener, config, logger).catch(async (error) => {
    await Promise.all([monitoring?.close(), output.close()])
    throw error
  })
  let closed: Promise<void> | undefined
  return {
    address: {host: address.address, port: address.port},
    close() {
      if (!closed) {
        context.previousToken.close()
        closed = Promise.all([
          shutdown(listener.server, listener.sockets, context, options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS),
          monitoring?.close(),
        ]).then(() => {})
        // (shutdown set `closing` at once:) HTTP/2 connections get GOAWAY and finish their open calls.
        listener.http2.closeSessions()
      }

      return closed
    },
    get monitoringUrl() {
      return monitoring?.url
    },
    async reload(next: ServerConfig) {
      // Everything that can fail happens before anything changes; the output's check (a new password
      // tried on the store) last, as it applies what it checked.
      const running = context.config
      const nextMaterial = running.ssl.enabled && next.ssl.enabled ? readTls(next.ssl) : undefined
      const outputRestart = await reloadOutput(output, running.output, next.output)
      if (nextMaterial) (listener.server as https.Server).setSecureContext({...nextMaterial})
      context.apply(next)
      const monitoringChange = monitoringReload(running.monitoring, next.monitoring)
      if (monitoringChange === 'close' && monitoring) {
        // Closing takes nothing away from protection: done at once, not at the next restart.
        await monitoring.close()
        monitoring = undefined
        context.config = {...context.config, monitoring: next.monitoring}
        logger.info('the monitoring endpoint is closed (http.enabled: false)')
      }

      const restartNeeded = [
        next.host === running.host ? undefined : 'apm-server.host',
        next.ssl.enabled === running.ssl.enabled ? undefined : 'apm-server.ssl.enabled',
        ...(Array.isArray(monitoringChange) ? monitoringChange : []),
        ...outputRestart,
      ].filter((name): name is string => name !== undefined)
      if (restartNeeded.length > 0) logger.warn({settings: restartNeeded}, `changes to ${restartNeeded.join(', ')} take effect after a restart`)
    },
    stats,
    url: urlOf(address, config.host, material !== undefined),
  }
}

/** The monitoring endpoint, when http.enabled; it answers from the stats of the moment. */
async function openMonitoring(config: ServerConfig, stats: () => ServerStats, logger: Logger): Promise<MonitoringEndpoint | undefined> {
  if (!config.monitoring?.enabled) return undefined
  const identity: Identity = {
    buildTime: buildDate(),
    ephemeralId: randomUUID(),
    outputType: config.output.redis ? 'redis' : 'file',
    started: process.hrtime.bigint(),
    version: SERVER_VERSION,
  }
  const documents = (path: string) => (path === '/' ? beatInfo(identity) : path === '/stats' ? statsDocument(identity, stats()) : undefined)
  const endpoint = await startMonitoring(config.monitoring, documents, logger)
  logger.info({url: endpoint.url}, 'monitoring endpoint listening')
  return endpoint
}

/**
 * What a reload does with http.*: turning the endpoint off closes it at once ('close'); any other change
 * (turning it on, another host or port) waits for a restart, as apm-server.host does: the names returned.
 */
function monitoringReload(running: ServerConfig['monitoring'], next: ServerConfig['monitoring']): 'close' | string[] {
  if (running?.enabled && !next?.enabled) return 'close'
  if (!running?.enabled && !next?.enabled) return []
  if (!running?.enabled) return ['http.enabled']
  return [running.host === next!.host ? undefined : 'http.host', running.port === next!.port ? undefined : 'http.port'].filter((name): name is string => name !== undefined)
}

/** The output settings of a reload that need a restart; the output applies what it can (rejecting what it refuses). */
async function reloadOutput(output: Output, running: ServerConfig['output'], next: ServerConfig['output']): Promise<string[]> {
  const {redis: runningRedis, ...runningFile} = running
  const {redis: nextRedis, ...nextFile} = next
  const file = JSON.stringify(nextFile) === JSON.stringify(runningFile) ? [] : ['output.file']
  if (runningRedis === undefined) return nextRedis === undefined ? file : [...file, 'output.redis']
  return [...file, ...((await output.reload?.(next)) ?? ['output.redis'])]
}
