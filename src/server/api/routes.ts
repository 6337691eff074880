/**
 * The route table, as Elastic's APM Server has it (internal/beater/api/mux.go): each route one line,
 * its path, its auth policy, its limits and its handler; the handlers live in one module per route
 * family. ./router.ts applies the policy and the limits in one fixed order before the handler runs.
 *
 * A new route is one line here and its handler module. As in mux.go, a route is chosen by its path
 * alone: a handler answers a method it does not serve in its protocol's way (intake v2: 400, OTLP/HTTP:
 * 405). OTLP over gRPC is not a route: it comes over HTTP/2 (../h2.ts), to ./otlp-grpc.ts.
 */
import {agentConfiguration} from './agent-config.js'
import type {ApiContext} from './context.js'
import type {Exchange} from './exchange.js'
import {intakeV2} from './intake.js'
import {otlpHttp} from './otlp.js'
import {serverInformation} from './root.js'

/**
 * - `none`: anyone; the handler sees whether the request authenticated (GET / shows more if it did);
 * - `secret-token`: `Authorization: Bearer <token>`, or no credentials when anonymous access is on; else 401;
 * - `rum`: CORS first (./rum.ts), then as `secret-token`, then 403 while RUM is off.
 */
export type AuthPolicy = 'none' | 'rum' | 'secret-token'

export interface RouteLimits {
  /** an anonymous client spends one token of its address's event allowance per request (429 past it) */
  anonymousRate: boolean
  /** the route reads a body: held to the memory budget (per client when anonymous), cut at the shutdown timeout */
  body: boolean
}

export type Handler = (exchange: Exchange, context: ApiContext) => Promise<void> | void

export interface Route {
  path: string
  auth: AuthPolicy
  limits: RouteLimits
  handle: Handler
}

const NO_LIMITS: RouteLimits = {anonymousRate: false, body: false}
const RATED: RouteLimits = {anonymousRate: true, body: false}
const INTAKE: RouteLimits = {anonymousRate: true, body: true}

export const ROUTES: readonly Route[] = [
  {auth: 'none', handle: serverInformation, limits: NO_LIMITS, path: '/'},
  {auth: 'secret-token', handle: intakeV2, limits: INTAKE, path: '/intake/v2/events'},
  {auth: 'rum', handle: intakeV2, limits: INTAKE, path: '/intake/v2/rum/events'},
  {auth: 'secret-token', handle: agentConfiguration, limits: RATED, path: '/config/v1/agents'},
  {auth: 'rum', handle: agentConfiguration, limits: RATED, path: '/config/v1/rum/agents'},
  {auth: 'secret-token', handle: otlpHttp('traces'), limits: INTAKE, path: '/v1/traces'},
  {auth: 'secret-token', handle: otlpHttp('metrics'), limits: INTAKE, path: '/v1/metrics'},
  {auth: 'secret-token', handle: otlpHttp('logs'), limits: INTAKE, path: '/v1/logs'},
]
