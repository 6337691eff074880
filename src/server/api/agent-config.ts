/**
 * The agent configuration routes (`/config/v1/agents`, and `/config/v1/rum/agents` under the RUM
 * policy): without Kibana there is no remote configuration, so a client that got past the route's auth
 * policy gets Elastic's 403 saying so, whatever the method.
 */
import type {ApiContext} from './context.js'
import type {Exchange} from './exchange.js'
import {respond} from './respond.js'

/** 403 body of the agent configuration endpoints without Kibana (mux.go, agentConfigHandler). */
export const AGENT_CONFIG_DISABLED_MESSAGE =
  'forbidden request: Agent remote configuration is disabled. Configure the `apm-server.kibana` section in apm-server.yml to enable it. ' +
  'If you are using a RUM agent, you also need to configure the `apm-server.rum` section. ' +
  'If you are not using remote configuration, you can safely ignore this error.'

export function agentConfiguration({req, res}: Exchange, context: ApiContext): void {
  respond(context, req, res, 403, AGENT_CONFIG_DISABLED_MESSAGE)
}
