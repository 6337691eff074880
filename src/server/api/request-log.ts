/**
 * One log line per request, as Elastic's APM Server logs them: the result keyword of its status as the
 * message, its duration, method, path and client address, and what went wrong (messages only, cut:
 * never a document or a header). Counts the responses by status for the server's stats.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'

import {clip, QUEUE_FULL} from '../limits.js'
import type {ApiContext} from './context.js'
import {clientIp, pathOf} from './exchange.js'

export const NOT_FOUND_MESSAGE = '404 page not found'
export const SHUTTING_DOWN_MESSAGE = 'server is shutting down'

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
    405: 'method not supported',
    413: 'request body too large',
    415: 'unsupported media type',
    429: 'too many requests',
    500: 'internal error',
    503: SHUTTING_DOWN_MESSAGE,
  }
  return keywords[status] ?? `status ${status}`
}

/** Logs a request once its response is closed; `started` is its process.hrtime.bigint() at arrival. */
export function logRequest(context: ApiContext, req: IncomingMessage, res: ServerResponse, started: bigint): void {
  const {requestLog: logger, stats} = context
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
  const failure = context.failures.get(res)
  if (status >= 400) logger.error({...fields, 'http.response.status_code': status, ...(failure ? {'error.message': failure} : {})}, keyword(status, failure))
  else logger.info({...fields, 'http.response.status_code': status}, keyword(status))
}
