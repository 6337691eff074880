/**
 * Counting by client-chosen names within a fixed bound: a {@link Tally} keeps at most
 * {@link MAX_NAMES} distinct names, each cut to CLIENT_TEXT_MAX characters with its control and
 * format characters replaced, and counts the requests of any further name apart. So what a client
 * names (a service, an agent, an address) can neither grow the server's memory nor a log line or an
 * answer of the monitoring endpoint, however many names it makes up.
 */
import {clip} from '../limits.js'

/**
 * Distinct names one tally keeps. An agent fleet is tens to hundreds of services; a client that makes up
 * more names than this (with the previous token) has its further requests counted, not named.
 */
export const MAX_NAMES = 500

// Control, format (bidi overrides, zero-width), private-use, unassigned and surrogate code points, and
// the line and paragraph separators: a name shown on a terminal (the text log) cannot move the cursor,
// recolour, reorder or split what follows it.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Cs}\u2028\u2029]/gu

/** A client-chosen name as it may be shown: cut first (a name can be as long as an event), then made printable. */
export function printable(text: string): string {
  return clip(text).replaceAll(UNPRINTABLE, '?')
}

export interface Counted<T> {
  item: T
  requests: number
}

/** Requests counted by name, at most {@link MAX_NAMES} names; the requests of further names only counted. */
export class Tally<T> {
  /** every request added */
  requests = 0
  /** requests whose name found the tally full */
  unlisted = 0
  private readonly byName = new Map<string, Counted<T>>()

  /** names counted apart */
  get names(): number {
    return this.byName.size
  }

  /** true once a name was refused for want of room: `names` is then a lower bound */
  get full(): boolean {
    return this.unlisted > 0
  }

  /** Counts one request under `name` (already printable), remembering `item` for it. */
  add(name: string, item: T): void {
    this.requests++
    const counted = this.byName.get(name)
    if (counted) counted.requests++
    else if (this.byName.size < MAX_NAMES) this.byName.set(name, {item, requests: 1})
    else this.unlisted++
  }

  /** The `n` names with the most requests (ties in the order they came), and the requests of all the others. */
  top(n: number): {top: Array<Counted<T>>; others: number} {
    const sorted = [...this.byName.values()].sort((a, b) => b.requests - a.requests)
    const top = sorted.slice(0, n)
    return {others: this.requests - top.reduce((sum, counted) => sum + counted.requests, 0), top}
  }
}
