/**
 * The intake routes (`POST /intake/v2/events`, and `/intake/v2/rum/events` under the RUM policy): the
 * request checks, then the body read into the output by the v2 reader (../intake/v2.ts), anonymous
 * clients held to their allowed agents and services and their rate and output allowances, and the
 * result answered as Elastic's APM Server answers it (202, or the errors with the highest status).
 */
import {intakeResponseBody} from '../intake/model.js'
import {checkIntakeRequest, ingest} from '../intake/v2.js'
import {OUTPUT_MULTIPLE} from '../limits.js'
import type {ApiContext} from './context.js'
import {clientIp, Exchange, queryOf} from './exchange.js'
import {respond} from './respond.js'

export async function intakeV2(exchange: Exchange, context: ApiContext): Promise<void> {
  const {anonymous, memory, req, res} = exchange
  const verbose = new URLSearchParams(queryOf(req.url)).has('verbose')
  let result = checkIntakeRequest(req.method, req.headers['content-type'])
  if (!result) {
    const ip = clientIp(req)
    const {config, stats} = context
    const declared = req.headers['content-length']
    result = await ingest(req, req.headers['content-encoding'], {
      anonymous: anonymous
        ? {
            allowAgent: config.anonymous.allowAgent,
            allowService: config.anonymous.allowService,
            decoded: context.decodedLimits.forIP(ip),
            limiter: context.rateLimits.forIP(ip),
            output: context.outputLimits.forIP(ip),
          }
        : undefined,
      connection: req.socket,
      contentLength: declared === undefined ? undefined : Number(declared),
      maxEventSize: config.maxEventSize,
      memory,
      onUnexpectedError: (error) => context.logBug(error, 'internal error while reading a request'),
      // The rotation telemetry names the clients the previous token let in.
      ...(exchange.outcome.ok && exchange.outcome.previous ? {onMetadata: (names: {agent: string; service: string}) => (exchange.client = names)} : {}),
      output: context.output,
      outputMultiple: OUTPUT_MULTIPLE,
    })
    stats.events.accepted += result.accepted
    stats.events.invalid += result.invalid
    stats.events.tooLarge += result.tooLarge
  }

  // As Go: a failed intake request closes the connection (the rest of its body is not read).
  respond(context, req, res, result.status, intakeResponseBody(result, verbose), result.status >= 400 ? {Connection: 'close'} : {})
  if (result.status >= 400 && !req.complete) req.resume()
}
