/**
 * Rotation telemetry: while a rotation's grace period keeps the replaced secret token valid, which
 * clients still present it. Each request let in by the previous token is counted when it ends, by client
 * address and by the service and agent it named (intake v2 metadata; for OTLP the first resource's
 * service.name and telemetry.sdk.language; for agent configuration the service.name asked for). The log
 * gets a summary once a minute during the grace period, and one when it ends ("grace period over: 0
 * requests used the previous token in its last 5 minutes"); the monitoring endpoint (./endpoint.ts)
 * shows the same counts.
 *
 * Every name is the client's choice: each is cut and made printable, a tally keeps a bounded number of
 * them (./tally.ts), and a summary lists a fixed number, so neither memory nor a log line grows with
 * what clients send. Minutes run from the rotation; the checks run on a timer only during a grace period.
 */
import type {Logger} from '../logger.js'
import {Counted, printable, Tally} from './tally.js'

/** The service and agent a request named; '' for one it did not name. */
export interface ClientNames {
  service: string
  agent: string
}

export const MINUTE_MS = 60_000
/** The end-of-grace summary covers the grace period's last five minutes (or all of it, if shorter). */
export const TAIL_MS = 5 * MINUTE_MS
/**
 * A request let in by the previous token just before the grace period ended is still counted: the end
 * summary waits for those still running, at most this long (an agent holds a request open for its
 * apiRequestTime, 10 s by default).
 */
export const LATE_MS = 30_000
/** How often the timer looks at the clock during a grace period (a summary is at most this late). */
export const CHECK_MS = 1000
/** Services and addresses listed in a log line's fields and in the stats. */
export const LISTED = 10
/** Services and addresses named in a log message itself. */
const IN_MESSAGE = {addresses: 3, services: 5}

/** The requests of a span of time. */
class Usage {
  readonly services = new Tally<ClientNames>()
  readonly addresses = new Tally<string>()
  /** requests that named no service (GET /, a request that ended before its metadata) */
  withoutService = 0

  get requests(): number {
    return this.addresses.requests
  }

  add(address: string, client: ClientNames | undefined): void {
    this.addresses.add(address, address)
    if (!client || client.service === '') {
      this.withoutService++
      return
    }

    const named = {agent: client.agent === '' ? '' : printable(client.agent), service: printable(client.service)}
    // \0 cannot occur in a printable name: the pair is one key.
    this.services.add(`${named.service}\0${named.agent}`, named)
  }
}

/** What the stats (and the log lines' fields) show of a span's requests. */
export interface UsageStats {
  requests: number
  without_service: number
  services: {count: number; top: Array<{service: string; agent: string; requests: number}>; other_requests: number}
  addresses: {count: number; top: Array<{address: string; requests: number}>; other_requests: number}
}

function usageStats(usage: Usage): UsageStats {
  const services = usage.services.top(LISTED)
  const addresses = usage.addresses.top(LISTED)
  return {
    addresses: {count: usage.addresses.names, other_requests: addresses.others, top: addresses.top.map(({item, requests}) => ({address: item, requests}))},
    requests: usage.requests,
    services: {
      count: usage.services.names,
      other_requests: services.others,
      top: services.top.map(({item, requests}) => ({agent: item.agent, requests, service: item.service})),
    },
    without_service: usage.withoutService,
  }
}

/** The previous token's counts in the monitoring endpoint's stats: the running grace period's, else the latest one's. */
export interface PreviousTokenStats extends UsageStats {
  /** when the running grace period ends (ISO 8601); null when none runs */
  accepted_until: null | string
}

const plural = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`

/** "5 minutes", "1 minute", "45 s", "2 minutes 30 s". */
export function describeSpan(ms: number): string {
  const seconds = Math.round(ms / 1000)
  const minutes = Math.floor(seconds / 60)
  const rest = seconds % 60
  if (minutes === 0) return `${rest} s`
  return rest === 0 ? plural(minutes, 'minute') : `${plural(minutes, 'minute')} ${rest} s`
}

const serviceLabel = ({item, requests}: Counted<ClientNames>) => `${item.service}${item.agent === '' ? '' : ` (${item.agent})`} ${requests}`

/** ": checkout (nodejs) 8, cart 3, and 2 more services (4 requests); 1 request named no service; addresses: 10.0.0.5 9": bounded whatever the input. */
function describeUsage(usage: Usage): string {
  if (usage.requests === 0) return ''
  const parts: string[] = []
  const services = usage.services.top(IN_MESSAGE.services)
  if (services.top.length > 0) {
    const more = usage.services.names - services.top.length
    const unlisted = more > 0 || usage.services.full ? `, and ${usage.services.full ? 'more than ' : ''}${plural(more, 'more service')} (${plural(services.others, 'request')})` : ''
    parts.push(`${services.top.map(serviceLabel).join(', ')}${unlisted}`)
  }

  if (usage.withoutService > 0) parts.push(`${plural(usage.withoutService, 'request')} named no service`)
  const addresses = usage.addresses.top(IN_MESSAGE.addresses)
  const others = addresses.others > 0 ? `, others ${addresses.others}` : ''
  parts.push(`addresses: ${addresses.top.map(({item, requests}) => `${item} ${requests}`).join(', ')}${others}`)
  return `: ${parts.join('; ')}`
}

function describeServiceCount(usage: Usage): string {
  const {names} = usage.services
  if (names === 0) return ''
  return ` from ${usage.services.full ? 'more than ' : ''}${plural(names, 'service')}`
}

interface GracePeriod {
  started: number
  until: number
  minuteStart: number
  minute: Usage
  /** the grace period's last TAIL_MS (and the late requests) */
  tail: Usage
  total: Usage
  /** requests let in by the previous token that have not ended yet */
  running: number
}

export class PreviousTokenUses {
  private grace?: GracePeriod
  /** the latest grace period that ended, for the stats */
  private latest?: Usage
  private timer?: NodeJS.Timeout

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number,
    private readonly checkMs = CHECK_MS,
  ) {}

  /**
   * Follows the authenticator after a start or reload: `until` is when its grace period ends (undefined:
   * none). A new one starts the counts afresh; one that replaces a running one ends that one first.
   */
  watch(until: number | undefined): void {
    if (this.grace?.until === until) return
    // A grace period that is over (waiting for its last requests) ends on its own.
    if (until === undefined && this.grace && this.now() >= this.grace.until) return
    if (this.grace) this.finish()
    if (until === undefined) return
    const now = this.now()
    this.grace = {minute: new Usage(), minuteStart: now, running: 0, started: now, tail: new Usage(), total: new Usage(), until}
    this.timer = setInterval(() => this.check(), this.checkMs).unref()
  }

  /**
   * A request the previous token let in, from `address`: the function returned counts it when it ends,
   * with the names it gave by then (once, whatever calls it again).
   */
  use(address: string): (client?: ClientNames) => void {
    const grace = this.grace
    if (!grace) return () => {}
    grace.running++
    let ended = false
    return (client) => {
      if (ended) return
      ended = true
      grace.running--
      if (this.grace !== grace) return
      this.rollMinute()
      const now = this.now()
      if (now < grace.until) grace.minute.add(address, client)
      if (now >= grace.until - TAIL_MS) grace.tail.add(address, client)
      grace.total.add(address, client)
      this.endIfOver()
    }
  }

  /** The running grace period's counts, else the latest one's (zeros before any rotation). */
  stats(): PreviousTokenStats {
    const usage = this.grace?.total ?? this.latest ?? new Usage()
    return {accepted_until: this.grace ? new Date(this.grace.until).toISOString() : null, ...usageStats(usage)}
  }

  /** Stops the timer (the server is stopping). */
  close(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** The timer's check: a minute to summarise, a grace period over. A bug here is logged, never thrown from a timer. */
  check(): void {
    try {
      this.rollMinute()
      this.endIfOver()
    } catch (error) {
      this.logger.error({'error.message': (error as Error).message}, 'cannot summarise the previous secret token uses')
    }
  }

  /**
   * Logs the minute that ended, if one did, and starts the next. The grace period's last minute is not
   * logged apart: the end summary covers it. A clock that jumped (a suspended process) skips the
   * minutes nobody could have used, without a line each.
   */
  private rollMinute(): void {
    const grace = this.grace
    if (!grace) return
    const end = Math.min(this.now(), grace.until)
    const elapsed = Math.floor((end - grace.minuteStart) / MINUTE_MS)
    if (elapsed < 1) return
    if (grace.minuteStart + MINUTE_MS < grace.until) {
      const {minute} = grace
      const message = `previous secret token: ${plural(minute.requests, 'request')}${describeServiceCount(minute)} in the last minute${describeUsage(minute)}`
      this.logger.info({'apm-server.previous_token': usageStats(minute)}, message)
    }

    grace.minute = new Usage()
    grace.minuteStart += elapsed * MINUTE_MS
  }

  /** Ends the grace period once it is over and its last requests have ended (or LATE_MS later). */
  private endIfOver(): void {
    const grace = this.grace
    if (!grace) return
    const now = this.now()
    if (now >= grace.until && (grace.running === 0 || now >= grace.until + LATE_MS)) this.finish()
  }

  /** Logs the end summary: of its last TAIL_MS, or of all of it when a new rotation ended it before its time. */
  private finish(): void {
    const grace = this.grace!
    const replaced = this.now() < grace.until
    this.grace = undefined
    this.latest = grace.total
    this.close()
    const fields = {'apm-server.previous_token': usageStats(replaced ? grace.total : grace.tail)}
    const {tail, total} = grace
    const message = replaced
      ? `grace period over: a new rotation ended it after ${describeSpan(this.now() - grace.started)}; ${plural(total.requests, 'request')} used the previous token during it${describeUsage(total)}`
      : `grace period over: ${plural(tail.requests, 'request')} used the previous token in its last ${describeSpan(Math.min(TAIL_MS, grace.until - grace.started))}${describeUsage(tail)}`
    const used = (replaced ? total : tail).requests > 0
    // Agents that still use it are refused from now on: a warning, for whoever watches warnings.
    if (used) this.logger.warn(fields, message)
    else this.logger.info(fields, message)
  }
}
