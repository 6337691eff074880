/**
 * The caps on open connections: every connection holds a file descriptor, and silent ones cost a client
 * nothing (the review held ~1,000 without a token until the server ran out of descriptors: agents were
 * reset with nothing in the log, and a reload failed with EMFILE). The server takes at most
 * {@link connectionCap} connections, leaving descriptors for its own files. Connections that have not
 * presented the secret token may hold at most half of them, and one address a sixteenth (the shares of
 * the memory budget). A new connection is never refused for those shares, only for the whole cap: it
 * cannot have shown the token yet, and the agents of an address share it with whoever else connects
 * from there (behind a proxy, NAT or a k8s Service, on the same host). So a connection past its
 * address's share takes the place of that address's oldest connection without the token, and one past
 * the half the place of an older one without the token (the oldest of an address holding several
 * first), which is closed. An agent's connection presents its token within milliseconds of its opening,
 * so it is the youngest of its address, not the oldest; a silent one is closed within
 * {@link HEADERS_TIMEOUT_MS} anyway, an idle one {@link UNAUTHENTICATED_IDLE_MS} after its last answer.
 * Connections that presented the token are never closed to make room: clients without it can never take
 * the descriptors agents with it need. Closings are logged, counted.
 */
import {readFileSync} from 'node:fs'
import type {Socket} from 'node:net'

import type {Logger} from './logger.js'

/** Descriptors kept for the server's own files (output, keystore, config, TLS files at a reload, logs). */
export const DESCRIPTOR_RESERVE = 128
/** The cap when the descriptor limit cannot be read, or is unlimited. */
const DEFAULT_DESCRIPTORS = 1024
const MAX_CAP = 65_536
/** Share of the cap all connections without the token may hold together; the rest is kept for agents with it. */
export const UNAUTHENTICATED_SHARE = 1 / 2
/** Share of the cap one address may hold in connections without the token. */
export const ADDRESS_SHARE = 1 / 16
/** A request's headers must arrive within this (Node's default, 60 s, let silent sockets live 90 s). */
export const HEADERS_TIMEOUT_MS = 10_000
/** A connection without the token is kept idle between requests this long (one with it, 45 s: listener.ts). */
export const UNAUTHENTICATED_IDLE_MS = 5000
/** How often Node checks that bound (its default is 30 s). */
export const CONNECTIONS_CHECK_INTERVAL_MS = 1000
/** Connections without the token looked at, oldest first, for one to close to make room (see ConnectionGate.evict). */
const EVICTION_SCAN = 64
/** At most one log line of refused connections in this long. */
const REFUSAL_LOG_MS = 10_000

/** The soft limit on open files (Node raises it to the hard limit at start), from /proc; undefined elsewhere. */
function descriptorLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]
    return line === undefined || line === 'unlimited' ? undefined : Number(line)
  } catch {
    return undefined
  }
}

/** Connections the server takes at once: its descriptor limit less {@link DESCRIPTOR_RESERVE}, at least 16. */
export function connectionCap(limit = descriptorLimit() ?? DEFAULT_DESCRIPTORS): number {
  return Math.max(16, Math.min(MAX_CAP, limit - DESCRIPTOR_RESERVE))
}

/** Why a connection was refused or closed. */
type Refusal = 'evicted' | 'per address' | 'total'

/** Counts connections without the token, in all and per address, and closes the oldest past their share. */
export class ConnectionGate {
  /** connections that have not presented the token, by remote address and port, oldest first */
  private readonly withoutToken = new Map<string, {address: string; socket: Socket}>()
  /** the same by address, each address's oldest first (its first to close, without a scan) */
  private readonly perAddress = new Map<string, Map<string, Socket>>()
  private readonly refused = new Map<Refusal, number>()
  private logTimer: NodeJS.Timeout | undefined

  constructor(
    readonly cap: number,
    private readonly logger: Logger,
  ) {}

  /**
   * A new connection, counted as without the token. Past its address's share it takes the place of that
   * address's oldest connection without the token, past the half that of another (see {@link evict}).
   * Only the whole cap (server.maxConnections, {@link dropped}) refuses a connection.
   */
  admit(socket: Socket): void {
    const address = addressOf(socket)
    let own = this.perAddress.get(address)
    if (own && own.size >= Math.max(1, Math.floor(this.cap * ADDRESS_SHARE))) {
      this.close(own.keys().next().value!, 'per address')
    } else if (this.withoutToken.size >= Math.max(1, Math.floor(this.cap * UNAUTHENTICATED_SHARE))) {
      this.evict()
    }

    const key = keyOf(socket)
    this.withoutToken.set(key, {address, socket})
    own = this.perAddress.get(address) ?? new Map<string, Socket>()
    own.set(key, socket)
    this.perAddress.set(address, own)
    socket.once('close', () => this.settle(key))
  }

  /**
   * Closes a connection without the token to make room: the oldest of an address that holds more than
   * one (looking at the {@link EVICTION_SCAN} oldest), else the oldest. Under a flood of connections an
   * agent's own is young and alone from its address, so it survives until its request shows the token
   * (evicting only the oldest, a flood of 6,000 connections a second closed it ~10 ms after it opened).
   */
  private evict(): void {
    let victim: string | undefined
    let seen = 0
    for (const [key, {address}] of this.withoutToken) {
      victim ??= key
      if ((this.perAddress.get(address)?.size ?? 0) > 1) {
        victim = key
        break
      }

      if (++seen >= EVICTION_SCAN) break
    }

    this.close(victim!, 'evicted')
  }

  /** Closes the connection without the token `key` to make room for a new one, counted as `why`. */
  private close(key: string, why: Refusal): void {
    const {socket} = this.withoutToken.get(key)!
    this.settle(key)
    socket.destroy()
    this.refuse(why)
  }

  /**
   * A request on `socket` (or the TLS socket over it, or an HTTP/2 session's) presented the secret token:
   * the connection no longer counts as without it. True the first time.
   */
  authenticated(socket: Socket): boolean {
    return this.settle(keyOf(socket))
  }

  /** The connection of `socket` has not presented the token. */
  pending(socket: Socket): boolean {
    return this.withoutToken.has(keyOf(socket))
  }

  /**
   * A response on `socket` finished: if the connection has not presented the token and Node set its
   * keep-alive timeout (it does only when no other request is under way; the server sets no other
   * timeout on a socket), it is kept idle only {@link UNAUTHENTICATED_IDLE_MS}.
   */
  answered(socket: Socket): void {
    if (socket.destroyed || !socket.timeout || !this.withoutToken.has(keyOf(socket))) return
    socket.setTimeout(UNAUTHENTICATED_IDLE_MS)
  }

  /** Node refused a connection past the server's cap (server.maxConnections). */
  dropped(): void {
    this.refuse('total')
  }

  private settle(key: string): boolean {
    const address = this.withoutToken.get(key)?.address
    if (address === undefined) return false
    this.withoutToken.delete(key)
    const own = this.perAddress.get(address)
    own?.delete(key)
    if (own?.size === 0) this.perAddress.delete(address)
    return true
  }

  /** Counts a refusal; the first of a quiet spell is logged at once, the rest of the next 10 s in one line. */
  private refuse(why: Refusal): void {
    this.refused.set(why, (this.refused.get(why) ?? 0) + 1)
    if (!this.logTimer) {
      this.logRefusals()
      this.logTimer = setTimeout(() => {
        this.logTimer = undefined
        this.logRefusals()
      }, REFUSAL_LOG_MS).unref()
    }
  }

  private logRefusals(): void {
    if (this.refused.size === 0) return
    const counts = Object.fromEntries(this.refused)
    this.refused.clear()
    const total = Object.values(counts).reduce((sum, count) => sum + count, 0)
    this.logger.warn(
      {cap: this.cap, refused: counts, unauthenticated: this.withoutToken.size},
      `refused or closed ${total} connection${total === 1 ? '' : 's'} past the connection caps (${this.cap} in all, half of them without the secret token, a sixteenth of them per address, the oldest without the token closed first); raise the open-files limit (ulimit -n) for more`,
    )
  }
}

function addressOf(socket: Socket): string {
  const address = socket.remoteAddress ?? ''
  return address.startsWith('::ffff:') ? address.slice(7) : address
}

/** The same for a TCP socket and the TLS socket over it. */
function keyOf(socket: Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`
}
