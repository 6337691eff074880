/**
 * The server's log: ECS JSON lines (pino with @elastic/ecs-pino-format) on stderr, so stdout stays free
 * and log shippers can read the lines as they are. Nothing secret is ever passed to the logger; the
 * redaction below is a second fence in case a header or a token ends up in a logged object anyway.
 */
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

export interface LoggerOptions {
  /** `logging.level` from the config (debug, info, warning, error); default info */
  level?: string
  /** where lines go; default stderr, written synchronously so nothing is lost at exit */
  destination?: DestinationStream
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? pino.destination({dest: 2, sync: true})
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
