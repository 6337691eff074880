/**
 * Graceful stop of the listener: stop accepting, let the requests in flight finish (agents hold a
 * request open for up to `apiRequestTime`, 10 s by default), then flush and fsync the output. One hard
 * bound: after the shutdown timeout every connection is cut and every request still reading ends, and
 * {@link SHUTDOWN_GRACE_MS} later the output is closed whatever is still running.
 */
import type http from 'node:http'
import type {Socket} from 'node:net'

import type {ApiContext} from './api/context.js'

/** Default bound on how long close() waits for in-flight requests. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000
/**
 * After the shutdown timeout has cut the connections and ended every request still reading, how long
 * close() waits for those requests to finish their writes before it closes the output anyway.
 */
export const SHUTDOWN_GRACE_MS = 1000

/** The count of requests being handled, and a wait for it to reach 0. */
export class InFlight {
  count = 0
  private idle: (() => void) | undefined

  start(): void {
    this.count++
  }

  end(): void {
    this.count--
    if (this.count === 0) this.idle?.()
  }

  /** Resolves true once no request is in flight, or false after `ms` (with at most one waiter at a time). */
  drained(ms: number): Promise<boolean> {
    if (this.count === 0) return Promise.resolve(true)
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.idle = undefined
        resolve(false)
      }, Math.max(0, ms))
      this.idle = () => {
        clearTimeout(timer)
        this.idle = undefined
        resolve(true)
      }
    })
  }
}

/** Stops `server` (whose open connections are `sockets`) within `timeout` ms plus the grace, then closes the output. */
export async function shutdown(server: http.Server, sockets: ReadonlySet<Socket>, context: ApiContext, timeout: number): Promise<void> {
  const {inFlight, logger} = context
  context.closing = true
  // One hard bound for the whole shutdown: whatever is still running then, the output is closed.
  const deadline = Date.now() + timeout + SHUTDOWN_GRACE_MS
  const serverClosed = new Promise<void>((resolve) => {
    server.close(() => resolve())
  })
  server.closeIdleConnections()
  if (!(await inFlight.drained(timeout))) {
    logger.warn({'event.duration': timeout * 1e6, requests: inFlight.count}, 'shutdown timeout: closing the connections of unfinished requests')
    // (With TLS, a request's connection is the TLS socket over one of `sockets`.)
    for (const socket of [...sockets, ...context.reading]) socket.destroy()
    if (!(await inFlight.drained(deadline - Date.now()))) {
      logger.warn({requests: inFlight.count}, 'shutdown: requests still running after the grace period; closing the output without them')
    }
  }

  for (const socket of sockets) socket.destroy()
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    serverClosed,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))
    }),
  ])
  clearTimeout(timer)
  // An output waiting for its store (Redis) tries until the same bound, then counts what it could not publish.
  await context.output.close(deadline)
}
