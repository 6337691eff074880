/**
 * HTTP/2 beside HTTP/1.1 on the one APM port, for OTLP over gRPC, as Elastic's APM Server shares its
 * port (elastic/gmux): with TLS, ALPN offers `http/1.1` first and `h2` second, so browsers, curl and
 * the agents keep HTTP/1.1 exactly as before while gRPC clients (which offer only `h2`) get HTTP/2;
 * without TLS, a connection that opens with the HTTP/2 preface (prior knowledge) is HTTP/2, any other
 * HTTP/1.1. The listener's own HTTP/1 server keeps every HTTP/1.1 connection, with its settings and
 * connection tracking; HTTP/2 connections are handed to a separate http2 server whose streams go to
 * one handler (../api/otlp-grpc.ts).
 *
 * The HTTP/2 server's limits are set here, explicitly, against its own kinds of abuse: concurrent
 * streams per connection, header list size and pairs, SETTINGS and PING floods, invalid frames and
 * refused streams (Node's nghttp2 guards), the memory one session may hold, streams that stay idle,
 * and connections that send nothing.
 */
import http from 'node:http'
import http2 from 'node:http2'
import type https from 'node:https'
import type {Socket} from 'node:net'
import type {TLSSocket} from 'node:tls'

import {type ConnectionGate, UNAUTHENTICATED_IDLE_MS} from './connections.js'

/** ALPN with TLS: HTTP/1.1 preferred, so only clients that offer nothing but h2 (gRPC's) speak HTTP/2. */
export const ALPN_PROTOCOLS = ['http/1.1', 'h2']

/** The client connection preface of HTTP/2 (RFC 9113, 3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

/** Streams one HTTP/2 connection may have open at once: an exporter sends one export at a time, a Collector a few. */
export const H2_MAX_CONCURRENT_STREAMS = 16
/** A stream that neither sends nor receives for this long is answered DEADLINE_EXCEEDED and closed. */
export const H2_STREAM_IDLE_MS = 30_000
/**
 * An HTTP/2 connection without a frame for this long is closed (GOAWAY), as HTTP/1.1 keep-alive
 * (listener.ts); one that has not presented the secret token, after UNAUTHENTICATED_IDLE_MS (connections.ts).
 */
export const H2_SESSION_IDLE_MS = 45_000

const H2_OPTIONS: http2.ServerOptions = {
  // Memory nghttp2 may hold for one connection (in MB): flow-control windows below keep data well under it.
  maxSessionMemory: 8,
  // Header pairs and bytes of one header list: gRPC sends about ten headers.
  maxHeaderListPairs: 64,
  maxOutstandingPings: 10,
  maxSessionInvalidFrames: 100,
  maxSessionRejectedStreams: 100,
  // Settings entries in one SETTINGS frame.
  maxSettings: 32,
  settings: {
    enablePush: false,
    // Per stream: what a client may send before the server reads it (the message is reserved as it is read).
    initialWindowSize: 1024 * 1024,
    maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
    maxFrameSize: 16_384,
    maxHeaderListSize: 16 * 1024,
  },
  unknownProtocolTimeout: 10_000,
}

export interface Http2Side {
  server: http2.Http2Server
  /** open HTTP/2 connections */
  sessions: Set<http2.ServerHttp2Session>
  /** Asks every connection to finish (GOAWAY): no new streams, those open may end. */
  closeSessions(): void
}

/**
 * Puts HTTP/2 beside the HTTP/1 server `server` (created with ALPN_PROTOCOLS when `secure`): its
 * HTTP/2 connections go to a new http2 server, each stream to `onStream`. `sniffTimeoutMs` bounds how
 * long a new cleartext connection may take to send enough bytes to be told apart. `gate` (the connection
 * caps) tells which sessions have presented the token.
 */
export function addHttp2(
  server: http.Server | https.Server,
  secure: boolean,
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
  sniffTimeoutMs: number,
  gate?: ConnectionGate,
): Http2Side {
  const h2 = http2.createServer(H2_OPTIONS)
  const sessions = new Set<http2.ServerHttp2Session>()
  h2.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
    session.on('timeout', () => session.close())
    session.setTimeout(gate?.pending(session.socket) ? UNAUTHENTICATED_IDLE_MS : H2_SESSION_IDLE_MS)
    // A client's protocol error ends its connection; it is the client's, not the server's.
    session.on('error', () => session.destroy())
  })
  h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on('error', () => {}) // a reset stream: the handler sees it closed
    onStream(stream, headers)
  })
  const toH2 = (socket: Socket) => {
    // The HTTP/1 server accepted the socket half-open (its parser answers a FIN itself); an HTTP/2
    // session does not, so a client that closed its side would be kept until the session's idle timeout.
    socket.allowHalfOpen = false
    h2.emit('connection', socket)
  }
  const event = secure ? 'secureConnection' : 'connection'
  const http1 = takeOnlyListener(server, event)
  if (secure) {
    server.on(event, (socket: TLSSocket) => (socket.alpnProtocol === 'h2' ? toH2(socket) : http1.call(server, socket)))
  } else {
    server.on(event, (socket: Socket) => sniff(socket, (isH2) => (isH2 ? toH2(socket) : http1.call(server, socket)), sniffTimeoutMs))
  }

  return {
    closeSessions() {
      for (const session of sessions) session.close()
    },
    server: h2,
    sessions,
  }
}

type ConnectionListener = (this: http.Server | https.Server, socket: Socket) => void

/**
 * Node's HTTP/1 connection listener of `server` (registered by its constructor, so the first), removed so
 * that connections pass through here first; listeners added by others stay and see every connection.
 */
function takeOnlyListener(server: http.Server | https.Server, event: string): ConnectionListener {
  const [first] = server.listeners(event) as ConnectionListener[]
  if (first?.name !== 'connectionListener') throw new Error(`the HTTP server's first '${event}' listener is not Node's connectionListener`)
  server.removeListener(event, first)
  return first
}

/**
 * Reads the first bytes of a cleartext connection until they are, or cannot be, the HTTP/2 preface,
 * then puts them back and hands the connection over, all within the 'data' callback, so that they are
 * read before anything that arrives later. A connection that sends too little for `timeoutMs`, or closes its
 * side before, is closed.
 */
function sniff(socket: Socket, handOver: (isH2: boolean) => void, timeoutMs: number): void {
  let head: Buffer = Buffer.alloc(0)
  const timer = setTimeout(() => socket.destroy(), timeoutMs)
  const stop = () => {
    clearTimeout(timer)
    socket.off('data', onData)
    socket.off('end', ended)
    socket.off('close', stop)
  }

  // A client that closes its side (FIN) before it was told apart can send nothing more: its connection is
  // over. The HTTP/1 server accepts sockets half-open, so without this one would keep its descriptor and
  // its address's share until the timer (break-new2 finding 1: a burst of such connections every 10 s
  // held an address's share with no socket open).
  const ended = () => {
    stop()
    socket.destroy()
  }

  const onData = (chunk: Buffer) => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk])
    const compared = Math.min(head.length, PREFACE.length)
    const prefix = head.subarray(0, compared).equals(PREFACE.subarray(0, compared))
    if (prefix && head.length < PREFACE.length) return
    stop()
    socket.pause()
    socket.unshift(head)
    handOver(prefix)
    // HTTP/1's parser reads the bytes put back through 'data' events once the socket flows again; an
    // HTTP/2 session takes them from the buffer itself (on the next tick), so its socket stays paused.
    if (!prefix) socket.resume()
  }

  socket.on('data', onData)
  socket.once('end', ended)
  socket.once('close', stop)
  // Node's HTTP/1 listener, which this one stands in front of, handles a socket's errors from its first
  // moment; until the hand-over nothing else does, and an 'error' without a listener (a client's reset)
  // would end the process. Kept after the hand-over: an error ends the connection whoever reads it.
  socket.on('error', () => {
    stop()
    socket.destroy()
  })
}
