/**
 * The HTTP(S) intake server: Elastic APM Server's agent-facing API with its status codes and JSON
 * bodies, and OTLP over HTTP and gRPC on the same port, writing accepted events to the configured output. `startServer` opens the output, wires the
 * route table (./api/routes.ts) into a listener (./listener.ts) and returns; `close()` is the graceful
 * stop of ./shutdown.ts and `reload()` applies a reloaded configuration. The serving lifecycle around
 * it (signals, reloads, logs) is ./lifecycle.ts.
 */
import type https from 'node:https'

import {ApiContext, ServerStats} from './api/context.js'
import {grpcStreamHandler} from './api/otlp-grpc.js'
import {createRequestHandler} from './api/router.js'
import {ROUTES} from './api/routes.js'
import type {ServerConfig} from './config/server-config.js'
import {ConnectionGate, connectionCap} from './connections.js'
import {createListener, listen, parseHost, readTls, urlOf} from './listener.js'
import type {Logger} from './logger.js'
import {openOutput} from './outputs/open.js'
import type {Output} from './outputs/output.js'
import {DEFAULT_SHUTDOWN_TIMEOUT_MS, shutdown} from './shutdown.js'

export type {ServerStats} from './api/context.js'

export interface RunningServer {
  url: string
  address: {host: string; port: number}
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
}

export async function startServer(config: ServerConfig, logger: Logger, options: StartOptions = {}): Promise<RunningServer> {
  parseHost(config.host) // a malformed host fails before anything is opened
  const material = config.ssl.enabled ? readTls(config.ssl) : undefined
  const output = await openOutput(config.output, logger)
  const context = new ApiContext(config, output, logger, options)
  context.connections = new ConnectionGate(options.connectionCap ?? connectionCap(), logger)
  const listener = createListener(material, createRequestHandler(ROUTES, context), grpcStreamHandler(context), logger, context.connections)
  const address = await listen(listener, config, logger).catch(async (error) => {
    await output.close()
    throw error
  })
  let closed: Promise<void> | undefined
  return {
    address: {host: address.address, port: address.port},
    close() {
      if (!closed) {
        closed = shutdown(listener.server, listener.sockets, context, options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS)
        // (shutdown set `closing` at once:) HTTP/2 connections get GOAWAY and finish their open calls.
        listener.http2.closeSessions()
      }

      return closed
    },
    async reload(next: ServerConfig) {
      // Everything that can fail happens before anything changes; the output's check (a new password
      // tried on the store) last, as it applies what it checked.
      const running = context.config
      const nextMaterial = running.ssl.enabled && next.ssl.enabled ? readTls(next.ssl) : undefined
      const outputRestart = await reloadOutput(output, running.output, next.output)
      if (nextMaterial) (listener.server as https.Server).setSecureContext({...nextMaterial})
      context.apply(next)
      const restartNeeded = [
        next.host === running.host ? undefined : 'apm-server.host',
        next.ssl.enabled === running.ssl.enabled ? undefined : 'apm-server.ssl.enabled',
        ...outputRestart,
      ].filter((name): name is string => name !== undefined)
      if (restartNeeded.length > 0) logger.warn({settings: restartNeeded}, `changes to ${restartNeeded.join(', ')} take effect after a restart`)
    },
    stats: () => ({...structuredClone(context.stats), output: output.stats()}),
    url: urlOf(address, config.host, material !== undefined),
  }
}

/** The output settings of a reload that need a restart; the output applies what it can (rejecting what it refuses). */
async function reloadOutput(output: Output, running: ServerConfig['output'], next: ServerConfig['output']): Promise<string[]> {
  const {redis: runningRedis, ...runningFile} = running
  const {redis: nextRedis, ...nextFile} = next
  const file = JSON.stringify(nextFile) === JSON.stringify(runningFile) ? [] : ['output.file']
  if (runningRedis === undefined) return nextRedis === undefined ? file : [...file, 'output.redis']
  return [...file, ...((await output.reload?.(next)) ?? ['output.redis'])]
}
