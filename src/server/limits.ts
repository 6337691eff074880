/**
 * The bounds every client byte is held to once a request is let in, in one place: how deep and how many
 * containers a line may hold before it is parsed, how much of a client's text is echoed into a response
 * or a log line, how much a request may write compared with what it sent, and how much request data the
 * server holds in memory at once (a {@link MemoryBudget}).
 */

/**
 * Deepest nesting of arrays and objects in one line (the line's own braces count as the first level).
 * Elastic's decoder (apm-data, json-iterator) stops at 10,000 levels, but it decodes on a growable Go
 * stack; V8's JSON.stringify recurses on a fixed one and throws a RangeError at about 4,100 levels from a
 * fresh stack on Node 20 (fewer inside a stream listener). Agents' deepest structures (exception cause
 * chains, custom context) are tens of levels, so 1,000 refuses nothing real and stays 4x under V8's limit.
 */
export const MAX_LINE_DEPTH = 1000
/**
 * Most arrays and objects in one line: each costs JSON.parse 40-70 bytes of heap (measured: 100,000 empty
 * arrays, 4.3 MB), so this bounds a parsed line at a few MB whatever max_event_size is set to. A line of
 * the default max_event_size (300 KiB) of real events holds a few thousand; this refuses nothing real.
 */
export const MAX_LINE_CONTAINERS = 100_000
/** The per-line error for a line past either bound (parsed neither way). */
export const LINE_TOO_COMPLEX = `data read error: more than ${MAX_LINE_DEPTH} levels of nesting or ${MAX_LINE_CONTAINERS} arrays and objects in one line`

/** Longest client-chosen name (event type, agent, service, content type, origin, URL path...) put in a message or log field. */
export const CLIENT_TEXT_MAX = 128
/** Longest excerpt of a line given back as an error's `document` (Go gives the whole line, up to max_event_size). */
export const DOCUMENT_MAX = 1024

/** `text` cut to `max` characters, saying how much was cut: client text echoed back never grows with the input. */
export function clip(text: string, max = CLIENT_TEXT_MAX): string {
  return text.length <= max ? text : `${text.slice(0, max)}…(${text.length - max} more)`
}

/** The `document` of an error about `line`: its first {@link DOCUMENT_MAX} bytes, decoded. Never decodes the rest. */
export function documentOf(line: Buffer): string {
  if (line.length <= DOCUMENT_MAX) return line.toString('utf8')
  return `${line.toString('utf8', 0, DOCUMENT_MAX)}…(${line.length - DOCUMENT_MAX} more bytes)`
}

/**
 * A request may write at most this many times the decoded bytes of its metadata line and the events it
 * had accepted (each line with its newline): each event is stored with a copy of the metadata line, so a
 * large metadata line and tiny events would otherwise write hundreds of times what was sent. Empty and
 * invalid lines earn nothing (a gzip of newlines earned 64 bytes of output per byte). An agent's events
 * are hundreds of bytes to kilobytes and its metadata one or two kilobytes, a ratio under 20.
 */
export const OUTPUT_MULTIPLE = 64
/** The request-ending error when a request's events would pass {@link OUTPUT_MULTIPLE}. */
export const OUTPUT_LIMIT_EXCEEDED = `output limit exceeded: the events of this request would write more than ${OUTPUT_MULTIPLE} times its own size (each is stored with the metadata); send a smaller metadata line`

/**
 * Decoded bytes one request may send (its body after gzip or deflate): past it the request ends. A gzip
 * body can decode to a thousand times its size, and every decoded byte costs time on the one thread that
 * serves every client (1 GiB of newlines took 65 s). Agents cut their requests at `api_request_size`
 * (768 KiB compressed by default), a few MiB decoded; a 100 MB line, refused for its size, still fits.
 */
export const REQUEST_DECODED_MAX_BYTES = 256 * 1024 * 1024
export const REQUEST_DECODED_TOO_LARGE = `request body too large: more than ${REQUEST_DECODED_MAX_BYTES / 1024 / 1024} MiB decoded; send smaller requests`
/**
 * Invalid and oversized lines one request may send before it ends: each costs a parse attempt and an
 * error count, and a body of `x` lines is millions of them (0.125 GiB of them took 16 s). An agent sends
 * none unless it is broken; a broken one is told at once, with the first errors listed.
 */
export const MAX_REJECTED_LINES = 1000
export const TOO_MANY_REJECTED_LINES = `too many invalid lines: more than ${MAX_REJECTED_LINES} in one request; fix the agent`
/**
 * Decoded bytes an anonymous client (one IP address) may send per event of its rate limit, a second, with
 * a burst of three seconds' worth: an anonymous request is charged for what it decodes, valid or not, as
 * it is for what it writes. A RUM agent's request is a few KiB.
 */
export const ANONYMOUS_DECODED_BYTES_PER_EVENT = 8 * 1024
export const ANONYMOUS_DECODED_RATE_EXCEEDED = 'rate limit exceeded: anonymous clients may send at most 8 KiB a second (decoded) per event of apm-server.auth.anonymous.rate_limit.event_limit'
/**
 * The metadata line of an anonymous (RUM) client may be at most this long: a browser agent's metadata
 * is a few hundred bytes. Elastic's decoder bounds each metadata field at 1,024 characters and drops
 * unknown ones; this server stores the line as sent, so it bounds the line.
 */
export const ANONYMOUS_METADATA_MAX_BYTES = 8 * 1024
export const ANONYMOUS_METADATA_TOO_LARGE = `metadata exceeded the permitted size for anonymous clients (${ANONYMOUS_METADATA_MAX_BYTES} bytes)`
/**
 * Output bytes an anonymous client (one IP address) may write per event of its rate limit
 * (`apm-server.auth.anonymous.rate_limit.event_limit`, 300 a second by default, a burst of three
 * seconds' worth): a RUM event stored with its metadata is typically 1-3 KiB.
 */
export const ANONYMOUS_OUTPUT_BYTES_PER_EVENT = 8 * 1024
export const ANONYMOUS_OUTPUT_RATE_EXCEEDED = 'rate limit exceeded: anonymous clients may write at most 8 KiB of events a second per event of apm-server.auth.anonymous.rate_limit.event_limit'

/**
 * Request data the server holds in memory at once, at most: whole bodies and their decoded bytes, lines
 * not yet complete, metadata, zlib streams, and (a fixed share) queued output. Past it, a request is
 * read as a stream if it can be, else answered 503 `queue is full`, as Elastic's server answers when its
 * queue is full: the agent retries later.
 */
export const MEMORY_BUDGET_BYTES = 128 * 1024 * 1024
/** Share of the budget all anonymous clients may hold together; the rest is kept for agents with the token. */
export const ANONYMOUS_MEMORY_SHARE = 1 / 2
/** Share of the budget one anonymous client (an IP address) may hold. */
export const CLIENT_MEMORY_SHARE = 1 / 16
/** Go's 503 message and keyword when the server cannot take more (publish.ErrFull). */
export const QUEUE_FULL = 'queue is full'

/** What one request holds; every byte it reserved is released by close(). */
export interface MemoryAccount {
  /** The most this account could hold with nothing else held: a request needing more can never be served. */
  readonly capacity: number
  /** Takes `bytes` from the budget; false, taking nothing, when that would pass it. */
  reserve(bytes: number): boolean
  release(bytes: number): void
  close(): void
}

/**
 * The server-wide count of request bytes held in memory, with a cap for all anonymous clients together
 * and one per anonymous client, so that anonymous traffic can never take the memory agents with the
 * token need. Counting only: callers reserve before they hold and release when they drop.
 */
export class MemoryBudget {
  private total = 0
  private anonymous = 0
  private readonly clients = new Map<string, number>()

  constructor(readonly limit: number) {}

  /** Bytes held now. */
  get held(): number {
    return this.total
  }

  /** An account for one request; `client` (an address) for anonymous ones. */
  account(client?: string): MemoryAccount {
    let held = 0
    return {
      capacity: client === undefined ? this.limit : this.limit * Math.min(CLIENT_MEMORY_SHARE, ANONYMOUS_MEMORY_SHARE),
      close: () => {
        this.release(held, client)
        held = 0
      },
      release: (bytes: number) => {
        const freed = Math.min(bytes, held)
        held -= freed
        this.release(freed, client)
      },
      reserve: (bytes: number) => {
        if (!this.reserve(bytes, client)) return false
        held += bytes
        return true
      },
    }
  }

  private reserve(bytes: number, client: string | undefined): boolean {
    if (this.total + bytes > this.limit) return false
    if (client !== undefined) {
      const own = this.clients.get(client) ?? 0
      if (this.anonymous + bytes > this.limit * ANONYMOUS_MEMORY_SHARE || own + bytes > this.limit * CLIENT_MEMORY_SHARE) return false
      this.anonymous += bytes
      this.clients.set(client, own + bytes)
    }

    this.total += bytes
    return true
  }

  private release(bytes: number, client: string | undefined): void {
    if (bytes === 0) return
    this.total -= bytes
    if (client === undefined) return
    this.anonymous -= bytes
    const left = (this.clients.get(client) ?? 0) - bytes
    if (left > 0) this.clients.set(client, left)
    else this.clients.delete(client)
  }
}
