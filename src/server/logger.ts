/**
 * The server's log: ECS JSON lines (pino with @elastic/ecs-pino-format) on stderr, so stdout stays free
 * and log shippers can read the lines as they are. Nothing secret is ever passed to the logger; the
 * redaction below is a second fence in case a header or a token ends up in a logged object anyway.
 */
import {createRequire} from 'node:module'

import {ecsFormat} from '@elastic/ecs-pino-format'
import {type DestinationStream, type Logger, pino} from 'pino'

export type {Logger} from 'pino'

const CENSOR = '[redacted]'

// Paths a careless log call could carry a credential in. fast-redact needs explicit paths.
const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.authorization',
  '*.headers.authorization',
  'secretToken',
  'secret_token',
  '*.secretToken',
  '*.secret_token',
  'password',
  '*.password',
]

/** Beats spells the levels debug, info, warning, error; pino says warn. */
function pinoLevel(level: string | undefined): string {
  const wanted = (level ?? 'info').toLowerCase()
  if (wanted === 'warning') return 'warn'
  return ['debug', 'error', 'info', 'trace', 'warn', 'fatal'].includes(wanted) ? wanted : 'info'
}

export type LogFormat = 'json' | 'text'

export interface LoggerOptions {
  /** `logging.level` from the config (debug, info, warning, error); default info */
  level?: string
  /** json: ECS lines; text: the same records, readable by a person (for a terminal); default json */
  format?: LogFormat
  /** where lines go; default stderr, written synchronously so nothing is lost at exit */
  destination?: DestinationStream
}

/** pino-pretty over the ECS fields, loaded only when a person is watching. */
function textDestination(): DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as (options: Record<string, unknown>) => DestinationStream
  return pretty({
    colorize: Boolean(process.stderr.isTTY),
    destination: 2,
    // pino-pretty reads dots as nesting; ECS keys are flat names with dots in them.
    ignore: ['ecs.version', 'process.pid', 'host.hostname', 'service.name', 'event.dataset'].map((key) => key.replaceAll('.', '\\.')).join(','),
    levelKey: 'log\\.level',
    messageKey: 'message',
    singleLine: true,
    sync: true,
    timestampKey: '@timestamp',
    translateTime: 'SYS:HH:MM:ss.l',
  })
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? (options.format === 'text' ? textDestination() : pino.destination({dest: 2, sync: true}))
  return pino(
    {
      // apmIntegration would require('elastic-apm-node') at start-up: slow, and this server is not traced.
      ...ecsFormat({apmIntegration: false, convertReqRes: false, serviceName: 'apm-server'}),
      level: pinoLevel(options.level),
      redact: {censor: CENSOR, paths: REDACT_PATHS},
    },
    destination,
  )
}

/**
 * `logger` without the redaction, for the per-request lines only (api/request-log.ts): their fields are
 * a fixed set of flat names and scalar values that no path of REDACT_PATHS can match, so the second
 * fence has nothing to catch there, and it cost ~6.5 µs a line, a line per request (issue 17).
 */
export function requestLogger(logger: Logger): Logger {
  return logger.child({}, {redact: []})
}
