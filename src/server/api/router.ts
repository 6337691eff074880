/**
 * The request handler of the listener: every request is counted, logged once its response closes, and
 * routed by path through the route table; its route's auth policy and limits apply in one fixed order
 * (CORS for RUM, authentication, the anonymous rate limit, RUM on, the body's memory account), then its
 * handler runs. Any other path is a 404; during shutdown every request gets 503. Every response carries
 * `X-Content-Type-Options: nosniff`. A handler that throws is a bug: that request gets a 500 (or loses
 * its connection), the server goes on.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'

import {RATE_LIMITED_MESSAGE} from '../anonymous.js'
import type {ApiContext} from './context.js'
import {clientIp, Exchange, pathOf} from './exchange.js'
import {logRequest, NOT_FOUND_MESSAGE, SHUTTING_DOWN_MESSAGE} from './request-log.js'
import {respond} from './respond.js'
import type {Route} from './routes.js'
import {answeredByCors, RUM_DISABLED_MESSAGE} from './rum.js'

export function createRequestHandler(routes: readonly Route[], context: ApiContext): (req: IncomingMessage, res: ServerResponse) => void {
  const byPath = new Map(routes.map((route) => [route.path, route]))
  return (req, res) => {
    const started = process.hrtime.bigint()
    context.stats.requests++
    context.inFlight.start()
    res.setHeader('X-Content-Type-Options', 'nosniff')
    res.once('close', () => {
      try {
        logRequest(context, req, res, started)
      } catch (error) {
        context.logBug(error as Error, 'cannot log a request')
      }
    })
    const work = context.closing ? Promise.resolve(respond(context, req, res, 503, SHUTTING_DOWN_MESSAGE)) : dispatch(byPath.get(pathOf(req.url)), context, req, res)
    work
      .catch((error: Error) => {
        // A bug, not the client's doing: this request ends with a 500 (or its connection), the server goes on.
        context.logBug(error, 'internal error')
        try {
          respond(context, req, res, 500, 'internal error')
        } catch {
          res.destroy()
        }
      })
      .finally(() => context.inFlight.end())
  }
}

async function dispatch(route: Route | undefined, context: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!route) return respond(context, req, res, 404, NOT_FOUND_MESSAGE)
  if (route.auth === 'rum' && answeredByCors(context, req, res)) return
  const outcome = context.authenticator.authenticate(req.headers.authorization)
  // Without a token configured every client is let in alike: then no connection counts as without one.
  if (outcome.ok && outcome.method !== 'anonymous') context.connections?.authenticated(req.socket)
  if (route.auth !== 'none' && !outcome.ok) return respond(context, req, res, 401, outcome.message)
  const exchange: Exchange = {anonymous: outcome.ok && outcome.method === 'anonymous', outcome, req, res}
  if (!(outcome.ok && outcome.previous)) return admit(route, exchange, context)
  // Counted when it ends, with the names its handler found (the rotation telemetry).
  const counted = context.previousToken.use(clientIp(req))
  try {
    await admit(route, exchange, context)
  } finally {
    counted(exchange.client)
  }
}

/** The route's limits, then its handler. */
async function admit(route: Route, exchange: Exchange, context: ApiContext): Promise<void> {
  const {anonymous, req, res} = exchange
  // Anonymous clients spend one token of their IP's allowance per request.
  if (anonymous && route.limits.anonymousRate && !context.rateLimits.forIP(clientIp(req)).allow(1)) return respond(context, req, res, 429, RATE_LIMITED_MESSAGE)
  if (route.auth === 'rum' && !context.config.rum.enabled) return respond(context, req, res, 403, RUM_DISABLED_MESSAGE)
  if (!route.limits.body) return route.handle(exchange, context)
  exchange.memory = context.memory.account(anonymous ? clientIp(req) : undefined)
  context.reading.add(req.socket)
  try {
    await route.handle(exchange, context)
  } finally {
    context.reading.delete(req.socket)
    exchange.memory.close()
  }
}
