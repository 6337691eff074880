/**
 * The serving lifecycle of `apm-server run`: start with the loaded configuration, reload it on SIGHUP
 * (fail closed: a reload that fails, times out or would loosen protection keeps the running
 * configuration), and stop gracefully on SIGTERM or SIGINT. The command parses its flags and calls
 * {@link serve}; the server itself (routes, output, shutdown) is ./server.ts.
 */
import inspector from 'node:inspector'

import {KeystoreError} from '../core/errors.js'
import {ConfigError, LoadedConfig, ServerConfig} from './config/server-config.js'
import {createLogger, LogFormat, Logger} from './logger.js'
import {RunningServer, startServer} from './server.js'

export interface ServeOptions {
  /** loads the configuration; on a reload, given the one running (see LoadOptions.reloadOf) */
  load(reloadOf?: LoadedConfig): Promise<LoadedConfig>
  logFormat: LogFormat
  /** overrides logging.level */
  logLevel?: string
}

/**
 * Loads the configuration, starts the server, logs that it listens, and serves until SIGTERM or SIGINT
 * has stopped it. A configuration that cannot start the server rejects with the {@link ConfigError}
 * (nothing is logged then: the caller reports it); a server that cannot listen, with ECONFIG.
 */
export async function serve(options: ServeOptions): Promise<void> {
  refuseOpenInspector()
  let logger: Logger | undefined
  // Node opens its inspector on 127.0.0.1:9229 at SIGUSR1 (which log rotation tools send by habit):
  // any local user could then run code in the server and read its secrets. A listener of our own keeps
  // Node's from running; it stays for the life of the process.
  process.on('SIGUSR1', () => logger?.warn({signal: 'SIGUSR1'}, 'SIGUSR1 ignored: it would open the Node.js inspector to every local user; send SIGHUP to reload the configuration'))
  // SIGHUP's default action kills the process; during start-up the configuration being read is the fresh one.
  const ignoreHangup = () => {}
  process.on('SIGHUP', ignoreHangup)
  const loaded = await options.load()
  logger = createLogger({format: options.logFormat, level: options.logLevel ?? loaded.config.logLevel})
  const server = await startServer(loaded.config, logger, {shutdownTimeoutMs: loaded.config.shutdownTimeoutMs})
  // Signal handlers first, then the log lines: whoever acts on a line (a supervisor, a test) may
  // send SIGTERM at once, and it must find a graceful stop, not the default kill.
  const serving = serveUntilSignal(server, logger, new Reloads({load: options.load, logger, server, started: loaded}))
  process.off('SIGHUP', ignoreHangup)
  for (const warning of loaded.warnings) logger.warn(warning)
  warnAboutTransport(loaded, logger)
  logger.info({url: server.url}, 'listening')
  const {reloadRunning, signal} = await serving
  if (reloadRunning) {
    // A reload stuck in a read (a FIFO, a hung mount) holds a thread that even process.exit() waits
    // for. The output is flushed and the log written: end by the signal's default action, which a
    // supervisor (systemd) counts as a clean stop.
    logger.warn({signal}, 'a reload had not finished; ending the process without it')
    process.kill(process.pid, signal)
  }
}

/**
 * The inspector open (`--inspect` in NODE_OPTIONS or node's flags) lets every local user run code in
 * the server and read the keystore password and the secret token: the server does not start so.
 */
function refuseOpenInspector(): void {
  if (inspector.url() === undefined) return
  throw new KeystoreError(
    'ECONFIG',
    'the Node.js inspector is open (--inspect in NODE_OPTIONS or in node\'s flags): any local user could run code in the server and read its secrets; start the server without it',
  )
}

/** Serves until SIGTERM/SIGINT; SIGHUP reloads. Resolves with the signal, and whether a reload was still running then. */
function serveUntilSignal(server: RunningServer, logger: Logger, reloads: Reloads): Promise<{reloadRunning: boolean; signal: NodeJS.Signals}> {
  return new Promise((resolve, reject) => {
    let stopping = false
    const onHangup = () => reloads.request()
    const onStop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({signal}, 'already stopping: finishing the requests in flight')
        return
      }

      stopping = true
      logger.info({signal}, 'stopping')
      // Never after a reload: one may be stuck, and its result no longer matters.
      reloads.stop()
      server.close().then(() => {
        process.off('SIGHUP', onHangup)
        process.off('SIGINT', onStop)
        process.off('SIGTERM', onStop)
        logger.info({stats: server.stats()}, 'stopped')
        resolve({reloadRunning: reloads.running, signal})
      }, reject)
    }

    process.on('SIGHUP', onHangup)
    process.on('SIGINT', onStop)
    process.on('SIGTERM', onStop)
  })
}

/**
 * How long a reload may take (reading the config, the password file, the keystore and its KDF) before
 * it is given up as failed. Shutdown never waits for a reload at all.
 */
const RELOAD_TIMEOUT_MS = 30_000

function warnAboutTransport(loaded: LoadedConfig, logger: Logger): void {
  const {config} = loaded
  if (config.secretToken === undefined) {
    // At error level, so that it shows whatever the log level and alerts whoever watches errors.
    const why = loaded.tokenOffBy
      ? `the secret token is turned off by ${loaded.tokenOffBy}=null`
      : loaded.fileState === 'missing'
        ? `there is no config file at ${loaded.file}, so the defaults apply`
        : 'apm-server.auth.secret_token is not set'
    logger.error(`running WITHOUT authentication: ${why}; any client that reaches this server can send data; set apm-server.auth.secret_token (e.g. "\${APM_SECRET_TOKEN}" from the keystore)`)
  } else if (!config.ssl.enabled) {
    // The Go server's words, then the way out.
    logger.warn('Secret token is set, but SSL is not enabled.')
    logger.warn('agents send the secret token in clear text; enable TLS with apm-server.ssl.enabled, apm-server.ssl.certificate and apm-server.ssl.key')
  }
}

/** The configuration as it runs: TLS is set up at start and stays as it was, whatever a reload says. */
function asRunning(loaded: LoadedConfig, started: ServerConfig): LoadedConfig {
  return {...loaded, config: {...loaded.config, ssl: {...loaded.config.ssl, enabled: started.ssl.enabled}}}
}

/**
 * SIGHUP reloads. At most one runs at a time: one that takes longer than {@link RELOAD_TIMEOUT_MS} is
 * given up as failed and its late result dropped, and a SIGHUP meanwhile runs once it has ended (a
 * second read of a FIFO that never answers would hold a second thread of the pool for good).
 */
class Reloads {
  private current?: Promise<unknown>
  private givenUp = false
  private again = false
  private stopped = false
  private applied: LoadedConfig

  constructor(
    private readonly context: {
      server: RunningServer
      logger: Logger
      load: (reloadOf?: LoadedConfig) => Promise<LoadedConfig>
      started: LoadedConfig
    },
  ) {
    this.applied = context.started
  }

  /** A reload is under way (or given up but not ended). */
  get running(): boolean {
    return this.current !== undefined
  }

  request(): void {
    if (this.stopped) return
    if (!this.current) {
      this.start()
      return
    }

    this.again = true
    if (this.givenUp) this.context.logger.warn('SIGHUP: the reload given up earlier is still running; this one starts when it ends')
  }

  /** Nothing is applied from now on. */
  stop(): void {
    this.stopped = true
  }

  private start(): void {
    const {logger} = this.context
    logger.info('SIGHUP: reloading the configuration')
    const attempt = this.context.load(this.applied)
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), RELOAD_TIMEOUT_MS).unref()
    })
    this.current = attempt
    this.givenUp = false
    const applied = Promise.race([attempt, deadline])
      .then((next) => {
        if (this.stopped) return
        if (next !== 'timeout') return this.apply(next)
        this.givenUp = true
        this.failed([`the reload did not finish within ${RELOAD_TIMEOUT_MS / 1000} s (a password file, config file or keystore that does not answer?); it is given up`], 'ETIMEDOUT')
      })
      .catch((error: unknown) => {
        if (this.stopped) return
        this.failed(error instanceof ConfigError ? error.problems : [(error as Error).message], (error as KeystoreError).code)
      })
      .finally(() => clearTimeout(timer))
    // The reload runs until both the load and its application (the output's check of new credentials) ended.
    void Promise.allSettled([attempt, applied]).finally(() => {
      this.current = undefined
      if (this.stopped) return
      if (this.givenUp) logger.warn('the reload given up earlier has ended; its result is dropped')
      if (this.again) {
        this.again = false
        this.start()
      }
    })
  }

  private async apply(next: LoadedConfig): Promise<void> {
    const {logger, server, started} = this.context
    for (const warning of next.warnings) logger.warn(warning)
    await server.reload(next.config)
    this.applied = asRunning(next, started.config)
    warnAboutTransport(next, logger)
    logger.info({file: next.file}, 'configuration reloaded')
  }

  private failed(problems: string[], code?: string): void {
    this.context.logger.error({'error.code': code, problems}, 'reload failed; still serving with the previous configuration')
  }
}
