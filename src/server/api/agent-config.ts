/**
 * The agent configuration routes (`/config/v1/agents`, and `/config/v1/rum/agents` under the RUM
 * policy): without Kibana there is no remote configuration, so a client that got past the route's auth
 * policy gets Elastic's 403 saying so, whatever the method.
 */
import type {ApiContext} from './context.js'
import {Exchange, queryOf} from './exchange.js'
import {respond} from './respond.js'

/** 403 body of the agent configuration endpoints without Kibana (mux.go, agentConfigHandler). */
export const AGENT_CONFIG_DISABLED_MESSAGE =
  'forbidden request: Agent remote configuration is disabled. Configure the `apm-server.kibana` section in apm-server.yml to enable it. ' +
  'If you are using a RUM agent, you also need to configure the `apm-server.rum` section. ' +
  'If you are not using remote configuration, you can safely ignore this error.'

export function agentConfiguration(exchange: Exchange, context: ApiContext): void {
  const {outcome, req, res} = exchange
  // Agents poll this with their service name: the rotation telemetry names them by it.
  if (outcome.ok && outcome.previous) exchange.client = {agent: '', service: new URLSearchParams(queryOf(req.url)).get('service.name') ?? ''}
  respond(context, req, res, 403, AGENT_CONFIG_DISABLED_MESSAGE)
}
