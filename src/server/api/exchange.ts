/**
 * One request as the API handles it once its route's auth policy let it in: the request and response,
 * how it authenticated, and (for a route that reads a body) its account in the memory budget. Also the
 * few facts about a request every route family reads the same way.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'

import type {AuthOutcome} from '../auth.js'
import type {MemoryAccount} from '../limits.js'
import type {ClientNames} from '../monitoring/previous-token.js'

export interface Exchange {
  req: IncomingMessage
  res: ServerResponse
  /** how the request authenticated; under the 'none' policy it may have failed */
  outcome: AuthOutcome
  /** let in without credentials, as anonymous access allows */
  anonymous: boolean
  /** set for routes that read a body: what the request holds in memory is reserved here */
  memory?: MemoryAccount
  /** the service and agent the request named, once its handler knows them (counted when the previous token let it in) */
  client?: ClientNames
}

export function pathOf(url: string | undefined): string {
  const raw = url ?? '/'
  const query = raw.indexOf('?')
  return query === -1 ? raw : raw.slice(0, query)
}

export function queryOf(url: string | undefined): string {
  const raw = url ?? ''
  const query = raw.indexOf('?')
  return query === -1 ? '' : raw.slice(query + 1)
}

/** The peer address (forwarding headers are not trusted: they would let a client pick its rate limit bucket). */
export function clientIp(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? ''
  return address.startsWith('::ffff:') ? address.slice(7) : address
}
