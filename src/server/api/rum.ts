/**
 * The RUM (browser) route family, as Elastic's APM Server serves it (internal/beater/api/mux.go,
 * rumMiddleware and cors_middleware.go): CORS per `apm-server.rum.allow_origins` before anything else,
 * and a 403 while RUM is off. The 'rum' auth policy of the route table applies both around the secret
 * token check; the RUM intake itself is the intake v2 handler (./intake.ts).
 */
import type {IncomingMessage, ServerResponse} from 'node:http'

import {clip} from '../limits.js'
import type {ApiContext} from './context.js'
import {respond} from './respond.js'

/** 403 body when RUM is off (internal/beater/api/mux.go, rumMiddleware). */
export const RUM_DISABLED_MESSAGE =
  'forbidden request: RUM endpoint is disabled. Configure the `apm-server.rum` section in apm-server.yml to enable ingestion of RUM events. ' +
  'If you are not using the RUM agent, you can safely ignore this error.'

const CORS_ALLOWED_HEADERS = ['Content-Type', 'Content-Encoding', 'Accept']

/** go-glob semantics: `*` matches any run of characters (also none); nothing else is special. */
export function globMatch(pattern: string, subject: string): boolean {
  if (pattern === '*') return true
  const parts = pattern.split('*')
  if (parts.length === 1) return pattern === subject
  const first = parts[0]
  const last = parts.at(-1)!
  if (!subject.startsWith(first)) return false
  let position = first.length
  for (const middle of parts.slice(1, -1)) {
    const found = subject.indexOf(middle, position)
    if (found === -1) return false
    position = found + middle.length
  }

  return subject.length - position >= last.length && subject.endsWith(last)
}

export type CorsDecision =
  | {headers: Record<string, string>; kind: 'allowed'}
  | {headers: Record<string, string>; kind: 'preflight'}
  | {kind: 'forbidden'; message: string}

/** What CORS says about a request to a RUM endpoint (cors_middleware.go). */
export function corsDecision(method: string, origin: string | undefined, allowOrigins: readonly string[]): CorsDecision {
  const received = origin ?? ''
  const valid = allowOrigins.some((allowed) => globMatch(allowed, received))
  if (method === 'OPTIONS') {
    return {
      headers: {
        ...(valid ? {'Access-Control-Allow-Origin': received} : {}),
        'Access-Control-Allow-Headers': CORS_ALLOWED_HEADERS.join(', '),
        'Access-Control-Allow-Methods': 'POST, OPTIONS',
        'Access-Control-Expose-Headers': 'Etag',
        'Access-Control-Max-Age': '3600',
        Vary: 'Origin',
      },
      kind: 'preflight',
    }
  }

  if (valid) return {headers: {'Access-Control-Allow-Origin': received}, kind: 'allowed'}
  return {kind: 'forbidden', message: `forbidden request: origin: '${clip(received)}' is not allowed`}
}

/** CORS first: a preflight or a forbidden origin is answered here (true); an allowed origin gets its header. */
export function answeredByCors(context: ApiContext, req: IncomingMessage, res: ServerResponse): boolean {
  const cors = corsDecision(req.method ?? '', req.headers.origin, context.config.rum.allowOrigins)
  if (cors.kind === 'preflight') {
    respond(context, req, res, 200, undefined, cors.headers)
    return true
  }

  if (cors.kind === 'forbidden') {
    respond(context, req, res, 403, cors.message)
    return true
  }

  for (const [name, value] of Object.entries(cors.headers)) res.setHeader(name, value)
  return false
}
