/**
 * One connection to one Redis host, through ioredis: TLS as configured, HELLO/AUTH with the username and
 * password, SELECT of the database (refused: no connection), then pipelined commands whose replies are the acknowledgement.
 *
 * The library's reconnection, offline queue and resending of unanswered commands are off: the output
 * decides when to reconnect and what to send again (./redis-host.ts), so a command is never sent twice
 * behind its back. Every bound is ours: the connection and handshake within `timeout`, each pipeline's
 * replies within `timeout`, and what the server sends back (a "Redis" that is not one could stream
 * gigabytes into the reply parser). Errors leave as {@link RedisLinkError}: a message of ours or the
 * first line of Redis's reply, with any credential scrubbed out, never the library's text.
 */
import type {ConnectionOptions} from 'node:tls'

import createDebug from 'debug'
import {Command, Redis} from 'ioredis'

keepClientDebugOff()

/**
 * ioredis's debug output (DEBUG=ioredis:*, or DEBUG=*) prints each command with its arguments, the
 * password of AUTH and HELLO included: it stays off whatever DEBUG says. `debug` is the one copy in the
 * tree (the bundle holds it once), so this is the instance ioredis logs through.
 */
function keepClientDebugOff(): void {
  const wanted = process.env.DEBUG
  if (!wanted) return
  createDebug.enable(`${createDebug.disable()},-ioredis:*`)
  // enable() writes its string to DEBUG, which the CLI also reads (stack traces): put it back.
  process.env.DEBUG = wanted
}

/** The error of a link: what kind of failure, and a message that is safe to log and show. */
export class RedisLinkError extends Error {
  constructor(
    readonly kind: 'auth' | 'refused' | 'transport',
    message: string,
    /** set when the commands were never written: the connection was already gone (not a failed try) */
    readonly unsent = false,
  ) {
    super(message)
    this.name = 'RedisLinkError'
  }
}

/** Where and how to connect: one host of output.redis, with the credentials in force. */
export interface LinkTarget {
  host: string
  port: number
  db: number
  username?: string
  password?: string
  /** TLS options; undefined: plain TCP */
  tls?: ConnectionOptions
  timeoutMs: number
}

/**
 * What the server may send beyond the replies to our commands: the handshake's (HELLO's map, the ready
 * check's INFO, a few KiB) and errors. A reply to RPUSH or PUBLISH is an integer of at most 24 bytes.
 */
const REPLY_ALLOWANCE_BYTES = 256 * 1024
/** An integer reply, or a refusal's line (Redis 7's NOPERM on a channel is 86 bytes: at 64, honest refusals of a full pipeline tripped the guard). */
const REPLY_BYTES_PER_COMMAND = 128

/** Redis's replies that refuse the credentials (Redis 6+ ACLs, and the older AUTH). */
const AUTH_REFUSALS = /^(WRONGPASS|NOAUTH|NOPERM|ERR invalid (username-)?password|ERR AUTH|ERR Client sent AUTH)/i

export class RedisLink {
  /** called once when the connection is gone (closed by either side, or destroyed for a bound) */
  onClose: (error: RedisLinkError) => void = () => {}
  private received = 0
  private allowance = REPLY_ALLOWANCE_BYTES
  /** commands sent and not yet answered */
  private unanswered = 0
  private closeReason: RedisLinkError | undefined
  private closed = false

  private constructor(
    private readonly client: Redis,
    private readonly target: LinkTarget,
  ) {}

  /** Connects, authenticates and selects the database within `timeout`; rejects with a RedisLinkError. */
  static async open(target: LinkTarget): Promise<RedisLink> {
    const client = new Redis({
      autoResendUnfulfilledCommands: false,
      connectTimeout: target.timeoutMs,
      disableClientInfo: true,
      enableOfflineQueue: false,
      host: target.host,
      lazyConnect: true,
      maxLoadingRetryTime: target.timeoutMs,
      maxRetriesPerRequest: 0,
      port: target.port,
      reconnectOnError: () => false,
      retryStrategy: () => null,
      ...(target.password === undefined ? {} : {password: target.password}),
      ...(target.username === undefined ? {} : {username: target.username}),
      ...(target.tls === undefined ? {} : {tls: target.tls}),
    })
    const link = new RedisLink(client, target)
    let first: Error | undefined
    client.on('error', (error: Error) => {
      first ??= error
    })
    client.once('connect', () => link.guardReplies())
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new RedisLinkError('transport', `no answer within ${target.timeoutMs / 1000} s (connect, authenticate, select the database)`)), target.timeoutMs)
    })
    try {
      await Promise.race([client.connect(), deadline])
      // SELECTed here, not by the library: its handshake only emits a refused SELECT (a database out of
      // range, an ACL user without +select) and goes on, on database 0, where every event then went.
      if (target.db !== 0) {
        await Promise.race([
          client.select(target.db).catch((error: Error) => {
            throw link.describe(error, false)
          }),
          deadline,
        ])
      }
    } catch (error) {
      client.disconnect()
      throw link.closeReason ?? (error instanceof RedisLinkError ? error : link.describe(first ?? (error as Error), true))
    } finally {
      clearTimeout(timer)
    }

    client.on('close', () => link.gone(new RedisLinkError('transport', 'the connection closed')))
    return link
  }

  /**
   * Writes the commands (each encoded by ./redis-resp.ts) in one write; resolves with each one's error
   * (undefined: acknowledged). When the replies do not all come within `timeout`, the connection is
   * destroyed: the unanswered fail.
   */
  async send(name: 'publish' | 'rpush', commands: readonly Buffer[]): Promise<Array<RedisLinkError | undefined>> {
    const {stream} = this.client
    // The peer's close ends the socket's writable side ('end') before ioredis sees 'close': in between,
    // ioredis refuses each command at once, so a batch sent and sent again there spent every try in a
    // millisecond, unwritten. The link is gone from the first refusal on; what it did not write is unsent.
    if (!this.closed && (this.client.status !== 'ready' || !stream?.writable)) this.destroy(new RedisLinkError('transport', 'the connection closed'))
    if (this.closed) {
      const reason = this.closeReason ?? new RedisLinkError('transport', 'the connection closed')
      return commands.map(() => new RedisLinkError(reason.kind, reason.message, true))
    }

    this.allowance += commands.length * REPLY_BYTES_PER_COMMAND
    this.unanswered += commands.length
    const timer = setTimeout(() => this.destroy(new RedisLinkError('transport', `no reply within ${this.target.timeoutMs / 1000} s`)), this.target.timeoutMs)
    // Corked, the commands of a batch leave in one write (one system call), as a pipeline's do.
    stream?.cork()
    const replies = commands.map((encoded) => this.client.sendCommand(new EncodedCommand(name, encoded)) as Promise<unknown>)
    stream?.uncork()
    try {
      const results = await Promise.allSettled(replies)
      return results.map((result) => (result.status === 'fulfilled' ? undefined : (this.closeReason ?? this.describe(result.reason as Error, false))))
    } finally {
      clearTimeout(timer)
      // What answered replies left unused is not kept: added up over a long-lived connection (an integer
      // reply is ~5 bytes of its 128), it let a server that turned hostile stream hundreds of MiB.
      this.unanswered -= commands.length
      this.allowance = Math.min(this.allowance, this.received + REPLY_ALLOWANCE_BYTES + this.unanswered * REPLY_BYTES_PER_COMMAND)
    }
  }

  /** Closes the connection (unanswered commands fail). Idempotent. */
  close(reason = new RedisLinkError('transport', 'closed')): void {
    this.destroy(reason)
  }

  /** A safe message for the library's or the server's error: its first line, clipped, credentials scrubbed. */
  describe(error: Error, handshake: boolean): RedisLinkError {
    const code = (error as NodeJS.ErrnoException).code
    let text = error.name === 'ReplyError' ? error.message : code ? `${transportWords(code)} (${code})` : error.message
    text = (text.split('\n')[0] ?? '').slice(0, 200).replace(/\.$/, '')
    for (const secret of [this.target.password, this.target.username]) {
      if (secret) text = text.replaceAll(secret, '[redacted]')
    }

    if (error.name !== 'ReplyError') return new RedisLinkError('transport', text === 'Connection is closed.' ? 'the connection closed' : text)
    if (handshake && AUTH_REFUSALS.test(text)) return new RedisLinkError('auth', `the credentials were refused: ${text}`)
    return new RedisLinkError('refused', `Redis answered: ${text}`)
  }

  /** Counts what the server sends: past the replies our commands can have, it is not Redis (or is broken). */
  private guardReplies(): void {
    this.client.stream?.on('data', (chunk: Buffer) => {
      this.received += chunk.length
      if (this.received > this.allowance) this.destroy(new RedisLinkError('transport', 'the server sent more than the replies to our commands can hold; is it Redis?'))
    })
  }

  private destroy(reason: RedisLinkError): void {
    this.closeReason ??= reason
    this.client.disconnect()
    // disconnect() only ends our side and waits up to 2 s for the server's: one that does not close
    // (a hostile one streaming a reply) went on filling the reply parser, 1.4 GB in 300 ms on loopback.
    this.client.stream?.destroy()
    this.gone(reason)
  }

  private gone(reason: RedisLinkError): void {
    if (this.closed) return
    this.closed = true
    this.closeReason ??= reason
    this.onClose(this.closeReason)
  }
}

/**
 * A command whose bytes are already encoded: ioredis queues it, writes it as it is and matches its reply,
 * as for any command; it holds no arguments of its own to encode (or to show in a trace).
 */
class EncodedCommand extends Command {
  constructor(
    name: string,
    private readonly encoded: Buffer,
  ) {
    super(name, [], {replyEncoding: null})
  }

  override toWritable(): Buffer {
    return this.encoded
  }
}

function transportWords(code: string): string {
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'the connection was reset',
    EHOSTUNREACH: 'host unreachable',
    ENOTFOUND: 'the host name does not resolve',
    EPIPE: 'the connection was closed while writing',
    ETIMEDOUT: 'the connection timed out',
  }
  return words[code] ?? (code.startsWith('ERR_TLS') || code.includes('CERT') ? 'TLS failed' : 'connection failed')
}

type Credentials = {password?: string; username?: string}

/**
 * The credentials for one host: a URL's own win; its password without a user name means Redis's default
 * user, so the shared user name is not taken with it. Only the fields that are set.
 */
export function hostCredentials(own: Credentials, shared: Credentials): Credentials {
  const password = own.password ?? shared.password
  const username = own.username ?? (own.password === undefined ? shared.username : undefined)
  return {...(password === undefined ? {} : {password}), ...(username === undefined ? {} : {username})}
}
