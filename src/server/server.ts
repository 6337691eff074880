/**
 * The HTTP(S) intake server: Elastic APM Server's agent-facing API (internal/beater/api/mux.go) with its
 * status codes and JSON bodies, writing accepted events to the file output.
 *
 * Routes: `GET /` (server information), `POST /intake/v2/events`, `POST /intake/v2/rum/events`,
 * `/config/v1/agents` and `/config/v1/rum/agents` (403: no Kibana, so no remote configuration); any
 * other path is a 404. Every response carries `X-Content-Type-Options: nosniff`.
 *
 * `close()` stops accepting connections, lets in-flight requests finish (agents hold a request open for
 * up to `apiRequestTime`, 10 s by default), then flushes and fsyncs the output. It has one hard bound:
 * after `shutdownTimeoutMs` it cuts every connection and ends every request still reading, and
 * {@link SHUTDOWN_GRACE_MS} later it closes the output whatever is still running.
 */
import {statSync} from 'node:fs'
import http, {IncomingMessage, ServerResponse} from 'node:http'
import https from 'node:https'
import type {AddressInfo, Socket} from 'node:net'
import tls from 'node:tls'
import {fileURLToPath} from 'node:url'

import {readRegularFileSync, RefusedFileError} from '../core/bounded-read.js'
import {KeystoreError} from '../core/errors.js'
import {Authenticator, AuthOutcome} from './auth.js'
import type {ServerConfig} from './config/server-config.js'
import {intakeResponseBody, IntakeResult} from './intake/model.js'
import {checkIntakeRequest, ingest} from './intake/v2.js'
import {ANONYMOUS_OUTPUT_BYTES_PER_EVENT, clip, MEMORY_BUDGET_BYTES, MemoryBudget, OUTPUT_MULTIPLE, QUEUE_FULL} from './limits.js'
import type {Logger} from './logger.js'
import {openOutput} from './outputs/open.js'
import {corsDecision, RATE_LIMITED_MESSAGE, RateLimitStore, RUM_DISABLED_MESSAGE} from './rum.js'

/** Reported as the server version, so agents behave as with an 8.x server. */
export const SERVER_VERSION = '8.15.0'

/** 403 body of the agent configuration endpoints without Kibana (mux.go, agentConfigHandler). */
export const AGENT_CONFIG_DISABLED_MESSAGE =
  'forbidden request: Agent remote configuration is disabled. Configure the `apm-server.kibana` section in apm-server.yml to enable it. ' +
  'If you are using a RUM agent, you also need to configure the `apm-server.rum` section. ' +
  'If you are not using remote configuration, you can safely ignore this error.'

export const NOT_FOUND_MESSAGE = '404 page not found'
export const SHUTTING_DOWN_MESSAGE = 'server is shutting down'

/** Default bound on how long close() waits for in-flight requests. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000
/**
 * After the shutdown timeout has cut the connections and ended every request still reading, how long
 * close() waits for those requests to finish their writes before it closes the output anyway.
 */
export const SHUTDOWN_GRACE_MS = 1000

export interface ServerStats {
  requests: number
  /** responses by status code */
  responses: Record<string, number>
  events: {accepted: number; invalid: number; tooLarge: number}
}

export interface RunningServer {
  url: string
  address: {host: string; port: number}
  close(): Promise<void>
  /** Applies a reloaded configuration; throws, changing nothing, when it cannot (e.g. an unreadable certificate). */
  reload(next: ServerConfig): void
  stats(): ServerStats
}

export interface StartOptions {
  /** how long close() waits for in-flight requests before cutting them; default 30 s */
  shutdownTimeoutMs?: number
  /** milliseconds clock for the token grace period and rate limits; tests pass a fake one */
  now?: () => number
  /** request data held in memory at once, queued output included; default {@link MEMORY_BUDGET_BYTES} */
  memoryBudgetBytes?: number
}

/** Go's json.Encoder: HTML-sensitive characters escaped, a newline after the value; indented for JSON clients. */
export function goJson(value: unknown, indent: boolean): string {
  const text = indent ? JSON.stringify(value, null, 2) : JSON.stringify(value)
  return `${text.replaceAll(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`
}

/** "host:port", "[v6]:port" or ":port" (all interfaces). */
export function parseHost(host: string): {hostname: string; port: number} {
  const match = /^(?:\[([^\]]*)\]|([^:]*)):(\d{1,5})$/.exec(host.trim())
  const port = match ? Number(match[3]) : Number.NaN
  if (!match || port > 65_535) {
    throw new KeystoreError('ECONFIG', `apm-server.host "${host}" is not host:port; write it like localhost:8200 (port 0 picks a free port)`)
  }

  return {hostname: match[1] ?? match[2], port}
}

function buildDate(): string {
  try {
    return statSync(fileURLToPath(import.meta.url)).mtime.toISOString().replace(/\.\d{3}Z$/, 'Z')
  } catch {
    return '1970-01-01T00:00:00Z'
  }
}

interface TlsMaterial {
  cert: Buffer
  key: Buffer
  passphrase?: string
}

/** A certificate chain or key is a few KiB; a bigger file is not one (and /dev/zero must not be read without end). */
const MAX_PEM_BYTES = 1024 * 1024

function readTls(ssl: ServerConfig['ssl']): TlsMaterial {
  if (!ssl.certificate || !ssl.key) {
    throw new KeystoreError('ECONFIG', 'apm-server.ssl.enabled is true but apm-server.ssl.certificate or apm-server.ssl.key is not set; set both paths')
  }

  const read = (file: string, setting: string) => {
    try {
      return readRegularFileSync(file, MAX_PEM_BYTES)
    } catch (error) {
      if (error instanceof RefusedFileError) throw new KeystoreError('ECONFIG', `cannot read ${setting} ${file}: it is ${error.message}; point it at a PEM file of at most 1 MiB`)
      throw new KeystoreError('ECONFIG', `cannot read ${setting} ${file}: ${(error as NodeJS.ErrnoException).code}; check the path and its permissions`)
    }
  }

  const material = {cert: read(ssl.certificate, 'apm-server.ssl.certificate'), key: read(ssl.key, 'apm-server.ssl.key'), passphrase: ssl.keyPassphrase}
  try {
    tls.createSecureContext(material)
  } catch (error) {
    // OpenSSL's reason only (e.g. "bad decrypt"): never the passphrase.
    const reason = (error as Error).message.split('\n')[0]
    throw new KeystoreError('ECONFIG', `cannot use the certificate ${ssl.certificate} with the key ${ssl.key}: ${reason}; check the files and apm-server.ssl.key_passphrase`)
  }

  return material
}

function authSettings(config: ServerConfig) {
  return {anonymous: config.anonymous.enabled, secretToken: config.secretToken, secretTokenGracePeriodMs: config.secretTokenGracePeriodMs}
}

/** Go's result keywords, used as the log message of each request; `failure` tells a full queue from a shutdown. */
function keyword(status: number, failure?: string): string {
  if (status === 503 && failure === QUEUE_FULL) return QUEUE_FULL
  const keywords: Record<number, string> = {
    200: 'request ok',
    202: 'request accepted',
    400: 'data validation error',
    401: 'unauthorized',
    403: 'forbidden request',
    404: NOT_FOUND_MESSAGE,
    429: 'too many requests',
    500: 'internal error',
    503: SHUTTING_DOWN_MESSAGE,
  }
  return keywords[status] ?? `status ${status}`
}

export async function startServer(config: ServerConfig, logger: Logger, options: StartOptions = {}): Promise<RunningServer> {
  const {hostname, port} = parseHost(config.host)
  const material = config.ssl.enabled ? readTls(config.ssl) : undefined
  const output = await openOutput(config.output)

  let current = config
  const now = options.now ?? Date.now
  const authenticator = new Authenticator(authSettings(config), now)
  let rateLimits = new RateLimitStore(config.anonymous.rateLimit.eventLimit, config.anonymous.rateLimit.ipLimit, now)
  let outputLimits = outputLimitStore(config, now)
  // The output's queue is a fixed share of the budget.
  const memory = new MemoryBudget((options.memoryBudgetBytes ?? MEMORY_BUDGET_BYTES) - output.maxQueuedBytes)
  /** the connections of the requests being read: shutdown cuts them when it runs out of time, which ends their reading */
  const reading = new Set<Socket>()
  const info = {build_date: buildDate(), build_sha: 'unknown', publish_ready: true, version: SERVER_VERSION}
  const stats: ServerStats = {events: {accepted: 0, invalid: 0, tooLarge: 0}, requests: 0, responses: {}}
  let closing = false
  let inFlight = 0
  let idle: (() => void) | undefined
  const sockets = new Set<Socket>()
  /** what went wrong, for the request log line (messages only: never a document or a header) */
  const failures = new WeakMap<ServerResponse, string>()

  function writeResult(req: IncomingMessage, res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent || res.destroyed) return
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
    if (closing) res.setHeader('Connection', 'close')
    const payload = status >= 400 && typeof body === 'string' ? {error: body} : body
    if (status >= 400) failures.set(res, errorSummary(body))
    if (payload === undefined) {
      res.writeHead(status, {'Content-Length': '0'})
      res.end()
      return
    }

    // As the Go server: indented JSON for clients that accept JSON, else plain text (compact JSON for objects).
    const accept = req.headers.accept ?? ''
    const json = accept.includes('*/*') || accept.includes('application/json')
    const text = json ? goJson(payload, true) : typeof payload === 'string' ? `${payload}\n` : goJson(payload, false)
    res.writeHead(status, {'Content-Length': String(Buffer.byteLength(text)), 'Content-Type': json ? 'application/json' : 'text/plain; charset=utf-8'})
    res.end(text)
  }

  function unauthorized(req: IncomingMessage, res: ServerResponse, outcome: AuthOutcome): outcome is {message: string; ok: false} {
    if (outcome.ok) return false
    writeResult(req, res, 401, outcome.message)
    return true
  }

  /** Anonymous clients spend one token of their IP's allowance per request. */
  function rateLimited(req: IncomingMessage, res: ServerResponse, outcome: AuthOutcome): boolean {
    if (!outcome.ok || outcome.method !== 'anonymous') return false
    if (rateLimits.forIP(clientIp(req)).allow(1)) return false
    writeResult(req, res, 429, RATE_LIMITED_MESSAGE)
    return true
  }

  async function intake(req: IncomingMessage, res: ServerResponse, outcome: AuthOutcome & {ok: true}): Promise<void> {
    const verbose = new URLSearchParams(queryOf(req.url)).has('verbose')
    let result: IntakeResult | undefined = checkIntakeRequest(req.method, req.headers['content-type'])
    if (!result) {
      const ip = clientIp(req)
      const anonymous =
        outcome.method === 'anonymous'
          ? {allowAgent: current.anonymous.allowAgent, allowService: current.anonymous.allowService, limiter: rateLimits.forIP(ip), output: outputLimits.forIP(ip)}
          : undefined
      const declared = req.headers['content-length']
      const contentLength = declared === undefined ? undefined : Number(declared)
      const account = memory.account(anonymous ? ip : undefined)
      reading.add(req.socket)
      try {
        result = await ingest(req, req.headers['content-encoding'], {
          anonymous,
          contentLength,
          maxEventSize: current.maxEventSize,
          connection: req.socket,
          memory: account,
          onUnexpectedError: (error) => logBug(error, 'internal error while reading a request'),
          output,
          outputMultiple: OUTPUT_MULTIPLE,
        })
      } finally {
        reading.delete(req.socket)
        account.close()
      }

      stats.events.accepted += result.accepted
      stats.events.invalid += result.invalid
      stats.events.tooLarge += result.tooLarge
    }

    // As Go: a failed intake request closes the connection (the rest of its body is not read).
    writeResult(req, res, result.status, intakeResponseBody(result, verbose), result.status >= 400 ? {Connection: 'close'} : {})
    if (result.status >= 400 && !req.complete) req.resume()
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req.url)
    const authorization = req.headers.authorization
    switch (path) {
      case '/': {
        const outcome = authenticator.authenticate(authorization)
        writeResult(req, res, 200, outcome.ok && outcome.method !== 'anonymous' ? info : undefined)
        return
      }

      case '/intake/v2/events': {
        const outcome = authenticator.authenticate(authorization)
        if (unauthorized(req, res, outcome) || rateLimited(req, res, outcome)) return
        await intake(req, res, outcome)
        return
      }

      case '/config/v1/agents': {
        const outcome = authenticator.authenticate(authorization)
        if (unauthorized(req, res, outcome) || rateLimited(req, res, outcome)) return
        writeResult(req, res, 403, AGENT_CONFIG_DISABLED_MESSAGE)
        return
      }

      case '/intake/v2/rum/events':
      case '/config/v1/rum/agents': {
        const cors = corsDecision(req.method ?? '', req.headers.origin, current.rum.allowOrigins)
        if (cors.kind === 'preflight') return writeResult(req, res, 200, undefined, cors.headers)
        if (cors.kind === 'forbidden') return writeResult(req, res, 403, cors.message)
        for (const [name, value] of Object.entries(cors.headers)) res.setHeader(name, value)
        const outcome = authenticator.authenticate(authorization)
        if (unauthorized(req, res, outcome) || rateLimited(req, res, outcome)) return
        if (!current.rum.enabled) return writeResult(req, res, 403, RUM_DISABLED_MESSAGE)
        if (path === '/config/v1/rum/agents') return writeResult(req, res, 403, AGENT_CONFIG_DISABLED_MESSAGE)
        await intake(req, res, outcome)
        return
      }

      default: {
        writeResult(req, res, 404, NOT_FOUND_MESSAGE)
      }
    }
  }

  function logRequest(req: IncomingMessage, res: ServerResponse, started: bigint): void {
    const fields = {
      'event.duration': Number(process.hrtime.bigint() - started),
      'http.request.method': req.method,
      'source.address': clientIp(req),
      'url.path': clip(pathOf(req.url)),
    }
    if (!res.headersSent) {
      logger.warn({...fields, 'error.message': 'the connection closed before a response was sent'}, 'request aborted')
      return
    }

    const status = res.statusCode
    stats.responses[status] = (stats.responses[status] ?? 0) + 1
    const failure = failures.get(res)
    if (status >= 400) logger.error({...fields, 'http.response.status_code': status, ...(failure ? {'error.message': failure} : {})}, keyword(status, failure))
    else logger.info({...fields, 'http.response.status_code': status}, keyword(status))
  }

  /** An error that is not the client's doing: one log line (its stack only at debug level). */
  function logBug(error: Error, message: string): void {
    const stack = logger.isLevelEnabled('debug') ? {'error.stack_trace': error.stack} : {}
    logger.error({'error.message': clip(error.message, 1024), 'error.type': error.name, ...stack}, message)
  }

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint()
    stats.requests++
    inFlight++
    res.setHeader('X-Content-Type-Options', 'nosniff')
    res.once('close', () => {
      try {
        logRequest(req, res, started)
      } catch (error) {
        logBug(error as Error, 'cannot log a request')
      }
    })
    const work = closing ? Promise.resolve(writeResult(req, res, 503, SHUTTING_DOWN_MESSAGE)) : route(req, res)
    work
      .catch((error: Error) => {
        // A bug, not the client's doing: this request ends with a 500 (or its connection), the server goes on.
        logBug(error, 'internal error')
        try {
          writeResult(req, res, 500, 'internal error')
        } catch {
          res.destroy()
        }
      })
      .finally(() => {
        inFlight--
        if (inFlight === 0) idle?.()
      })
  }

  const server = material ? https.createServer({...material}, handler) : http.createServer(handler)
  // Agents reuse connections between requests; Go's default idle timeout is 45 s.
  server.keepAliveTimeout = 45_000
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.on('tlsClientError', (error: Error & {code?: string}, socket: Socket) => {
    logger.debug({'error.code': error.code, 'error.message': error.message, 'source.address': socket.remoteAddress}, 'TLS handshake failed')
  })

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'the address is in use' : (error.code ?? error.message)
      reject(new KeystoreError('ECONFIG', `cannot listen on ${config.host}: ${reason}; stop the other process or change apm-server.host`))
    }

    server.once('error', onError)
    server.listen(port, hostname === '' ? undefined : hostname, () => {
      server.off('error', onError)
      resolve()
    })
  }).catch(async (error) => {
    await output.close()
    throw error
  })
  server.on('error', (error: Error) => logger.error({'error.message': error.message}, 'server error'))

  const address = server.address() as AddressInfo
  const wildcard = hostname === '' || hostname === '0.0.0.0' || hostname === '::'
  const shownHost = wildcard ? address.address : hostname
  const url = `${material ? 'https' : 'http'}://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${address.port}`

  /** Resolves true once no request is in flight, or false after `ms` (with at most one waiter at a time). */
  function drained(ms: number): Promise<boolean> {
    if (inFlight === 0) return Promise.resolve(true)
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        idle = undefined
        resolve(false)
      }, Math.max(0, ms))
      idle = () => {
        clearTimeout(timer)
        idle = undefined
        resolve(true)
      }
    })
  }

  let closed: Promise<void> | undefined
  async function close(): Promise<void> {
    closing = true
    const timeout = options.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS
    // One hard bound for the whole shutdown: whatever is still running then, the output is closed.
    const deadline = Date.now() + timeout + SHUTDOWN_GRACE_MS
    const serverClosed = new Promise<void>((resolve) => {
      server.close(() => resolve())
    })
    server.closeIdleConnections()
    if (!(await drained(timeout))) {
      logger.warn({'event.duration': timeout * 1e6, requests: inFlight}, 'shutdown timeout: closing the connections of unfinished requests')
      // (With TLS, a request's connection is the TLS socket over one of `sockets`.)
      for (const socket of [...sockets, ...reading]) socket.destroy()
      if (!(await drained(deadline - Date.now()))) {
        logger.warn({requests: inFlight}, 'shutdown: requests still running after the grace period; closing the output without them')
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
    await output.close()
  }

  return {
    address: {host: address.address, port: address.port},
    close() {
      closed ??= close()
      return closed
    },
    reload(next: ServerConfig) {
      // Everything that can fail happens before anything changes.
      const nextMaterial = current.ssl.enabled && next.ssl.enabled ? readTls(next.ssl) : undefined
      const restartNeeded = [
        next.host === current.host ? undefined : 'apm-server.host',
        next.ssl.enabled === current.ssl.enabled ? undefined : 'apm-server.ssl.enabled',
        JSON.stringify(next.output) === JSON.stringify(current.output) ? undefined : 'output.file',
      ].filter((name): name is string => name !== undefined)
      authenticator.update(authSettings(next))
      if (nextMaterial) (server as https.Server).setSecureContext({...nextMaterial})
      const limits = next.anonymous.rateLimit
      if (limits.eventLimit !== rateLimits.eventLimit || limits.ipLimit !== rateLimits.ipLimit) {
        rateLimits = new RateLimitStore(limits.eventLimit, limits.ipLimit, now)
        outputLimits = outputLimitStore(next, now)
      }
      current = {...next, host: current.host, output: current.output, ssl: {...next.ssl, enabled: current.ssl.enabled}}
      if (restartNeeded.length > 0) logger.warn({settings: restartNeeded}, `changes to ${restartNeeded.join(', ')} take effect after a restart`)
    },
    stats: () => structuredClone(stats),
    url,
  }
}

/** Longest error summary in a request's log line. */
const SUMMARY_MAX = 1024

/**
 * The error messages of a response, for the log: JSON parser messages quote the event, so they are cut;
 * a message repeated is counted, not repeated; client text in them is already cut, and so is the whole.
 */
function errorSummary(body: unknown): string {
  if (typeof body === 'string') return clip(body, SUMMARY_MAX)
  const errors = (body as {errors?: {message: string}[]} | undefined)?.errors ?? []
  const counts = new Map<string, number>()
  for (const error of errors) {
    const message = error.message.startsWith('data read error') ? 'data read error' : error.message
    counts.set(message, (counts.get(message) ?? 0) + 1)
  }

  const parts = [...counts].map(([message, count]) => (count === 1 ? message : `${message} (${count} times)`))
  return clip(parts.join(', '), SUMMARY_MAX)
}

/** Per-IP limiters of the bytes anonymous clients' events may write: see ANONYMOUS_OUTPUT_BYTES_PER_EVENT. */
function outputLimitStore(config: ServerConfig, now: () => number): RateLimitStore {
  const {eventLimit, ipLimit} = config.anonymous.rateLimit
  return new RateLimitStore(eventLimit * ANONYMOUS_OUTPUT_BYTES_PER_EVENT, ipLimit, now)
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/'
  const query = raw.indexOf('?')
  return query === -1 ? raw : raw.slice(0, query)
}

function queryOf(url: string | undefined): string {
  const raw = url ?? ''
  const query = raw.indexOf('?')
  return query === -1 ? '' : raw.slice(query + 1)
}

/** The peer address (forwarding headers are not trusted: they would let a client pick its rate limit bucket). */
function clientIp(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? ''
  return address.startsWith('::ffff:') ? address.slice(7) : address
}

