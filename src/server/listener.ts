/**
 * The listener: HTTP, or HTTPS with the configured certificate and key, on `apm-server.host`; its open
 * connections tracked for shutdown and held to the caps of ./connections.ts (HTTP/2 ones included).
 * Agents reuse connections between requests, so idle ones are kept for 45 s, Go's default (5 s without
 * the token); a request's headers must come within 10 s. HTTP/2 (OTLP over gRPC) shares the port:
 * ./h2.ts takes the connections that speak it (ALPN h2 with TLS, the HTTP/2 preface without) and leaves
 * HTTP/1.1 to the server here.
 */
import http, {IncomingMessage, ServerResponse} from 'node:http'
import type http2 from 'node:http2'
import https from 'node:https'
import type {AddressInfo, Socket} from 'node:net'
import tls from 'node:tls'

import {readRegularFileSync, RefusedFileError} from '../core/bounded-read.js'
import {KeystoreError} from '../core/errors.js'
import type {ServerConfig} from './config/server-config.js'
import {ConnectionGate, CONNECTIONS_CHECK_INTERVAL_MS, HEADERS_TIMEOUT_MS} from './connections.js'
import {addHttp2, ALPN_PROTOCOLS, Http2Side} from './h2.js'
import type {Logger} from './logger.js'
import {keyCostProblem} from './tls-key-cost.js'

export interface TlsMaterial {
  cert: Buffer
  key: Buffer
  passphrase?: string
}

export interface Listener {
  server: http.Server | https.Server
  /** every open connection (with TLS, the TCP sockets under the TLS ones), HTTP/2 ones included */
  sockets: Set<Socket>
  /** the HTTP/2 side: its connections, and how to ask them to finish */
  http2: Http2Side
}

export type StreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void

/** "host:port", "[v6]:port" or ":port" (all interfaces). */
export function parseHost(host: string): {hostname: string; port: number} {
  const match = /^(?:\[([^\]]*)\]|([^:]*)):(\d{1,5})$/.exec(host.trim())
  const port = match ? Number(match[3]) : Number.NaN
  if (!match || port > 65_535) {
    throw new KeystoreError('ECONFIG', `apm-server.host "${host}" is not host:port; write it like localhost:8200 (port 0 picks a free port)`)
  }

  return {hostname: match[1] ?? match[2], port}
}

/** A certificate chain or key is a few KiB; a bigger file is not one (and /dev/zero must not be read without end). */
const MAX_PEM_BYTES = 1024 * 1024

/** The certificate and key, read and checked to work together; ECONFIG naming the file otherwise (never the passphrase). */
export function readTls(ssl: ServerConfig['ssl']): TlsMaterial {
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
  // OpenSSL decrypts the key on the event loop, whatever the derivation costs: judged first.
  const costly = keyCostProblem(material.key)
  if (costly) throw new KeystoreError('ECONFIG', `cannot use the key ${ssl.key} (apm-server.ssl.key): ${costly}`)
  try {
    tls.createSecureContext(material)
  } catch (error) {
    // OpenSSL's reason only (e.g. "bad decrypt"): never the passphrase.
    const reason = (error as Error).message.split('\n')[0]
    throw new KeystoreError('ECONFIG', `cannot use the certificate ${ssl.certificate} with the key ${ssl.key}: ${reason}; check the files and apm-server.ssl.key_passphrase`)
  }

  return material
}

/** An idle connection with the token is kept this long between requests (Go's default). */
const KEEP_ALIVE_MS = 45_000

export function createListener(
  material: TlsMaterial | undefined,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  onStream: StreamHandler,
  logger: Logger,
  gate?: ConnectionGate,
): Listener {
  const options = {connectionsCheckingInterval: CONNECTIONS_CHECK_INTERVAL_MS}
  // Registered after Node's own 'finish' listener, which sets the keep-alive timeout the gate shortens.
  const serve = gate
    ? (req: IncomingMessage, res: ServerResponse) => {
        res.once('finish', () => gate.answered(req.socket))
        handler(req, res)
      }
    : handler
  // A TLS handshake is held to the headers' time too (Node's default is 120 s, before any header timer runs).
  const server = material
    ? https.createServer({...options, ...material, ALPNProtocols: ALPN_PROTOCOLS, handshakeTimeout: HEADERS_TIMEOUT_MS}, serve)
    : http.createServer(options, serve)
  const sockets = new Set<Socket>()
  server.keepAliveTimeout = KEEP_ALIVE_MS
  server.headersTimeout = HEADERS_TIMEOUT_MS
  // Every TCP connection, HTTP/1 or HTTP/2, counts against the caps.
  if (gate) {
    server.maxConnections = gate.cap
    server.on('drop', () => gate.dropped())
  }

  // A new connection has as long to show which protocol it speaks as to send its headers.
  const side = addHttp2(server, material !== undefined, onStream, HEADERS_TIMEOUT_MS, gate)
  server.on('connection', (socket: Socket) => {
    gate?.admit(socket)
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.on('tlsClientError', (error: Error & {code?: string}, socket: Socket) => {
    logger.debug({'error.code': error.code, 'error.message': error.message, 'source.address': socket.remoteAddress}, 'TLS handshake failed')
  })
  return {http2: side, server, sockets}
}

/** Listens on `config.host`; ECONFIG saying why when it cannot. Later server errors are logged. */
export async function listen({server}: Listener, config: Pick<ServerConfig, 'host'>, logger: Logger): Promise<AddressInfo> {
  const {hostname, port} = parseHost(config.host)
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
  })
  server.on('error', (error: Error) => logger.error({'error.message': error.message}, 'server error'))
  return server.address() as AddressInfo
}

/** The URL agents reach: the configured host name, or the address bound for a wildcard host. */
export function urlOf(address: AddressInfo, host: string, secure: boolean): string {
  const {hostname} = parseHost(host)
  const wildcard = hostname === '' || hostname === '0.0.0.0' || hostname === '::'
  const shownHost = wildcard ? address.address : hostname
  return `${secure ? 'https' : 'http'}://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${address.port}`
}
