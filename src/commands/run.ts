import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {serverFlags} from '../cli/server-flags.js'
import {KeystoreError} from '../core/errors.js'
import {PASSWORD_ENV, PASSWORD_FILE_ENV, passwordFromEnvironment} from '../core/password-env.js'
import type {ConfigError as ConfigErrorClass, LoadedConfig, ServerConfig} from '../server/config/server-config.js'
import type {LogFormat, Logger} from '../server/logger.js'
import type {RunningServer} from '../server/server.js'

/** A server never prompts: the keystore password comes from the environment or a file it names. */
async function serverPassword(): Promise<Buffer> {
  const password = await passwordFromEnvironment(process.env)
  if (password) return password
  throw new KeystoreError('ENOPASSWORD', `the keystore is password protected and a server never prompts; set ${PASSWORD_ENV} or ${PASSWORD_FILE_ENV}`)
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
      ConfigError: typeof ConfigErrorClass
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
    Promise.race([attempt, deadline])
      .then((next) => {
        if (this.stopped) return
        if (next !== 'timeout') return this.apply(next)
        this.givenUp = true
        this.failed([`the reload did not finish within ${RELOAD_TIMEOUT_MS / 1000} s (a password file, config file or keystore that does not answer?); it is given up`], 'ETIMEDOUT')
      })
      .catch((error: unknown) => {
        if (this.stopped) return
        this.failed(error instanceof this.context.ConfigError ? error.problems : [(error as Error).message], (error as KeystoreError).code)
      })
      .finally(() => clearTimeout(timer))
    attempt
      .catch(() => {})
      .finally(() => {
        this.current = undefined
        if (this.stopped) return
        if (this.givenUp) logger.warn('the reload given up earlier has ended; its result is dropped')
        if (this.again) {
          this.again = false
          this.start()
        }
      })
  }

  private apply(next: LoadedConfig): void {
    const {logger, server, started} = this.context
    for (const warning of next.warnings) logger.warn(warning)
    server.reload(next.config)
    this.applied = asRunning(next, started.config)
    warnAboutTransport(next, logger)
    logger.info({file: next.file}, 'configuration reloaded')
  }

  private failed(problems: string[], code?: string): void {
    this.context.logger.error({'error.code': code, problems}, 'reload failed; still serving with the previous configuration')
  }
}

export default class Run extends BaseCommand<typeof Run> {
  static summary = 'Run the APM intake server.'
  static description = `Loads the configuration as "apm-server test config" does (apm-server.yml, -E overrides, --path.* flags; every \${KEY} resolved from the keystore, then the environment), then serves Elastic APM agents over HTTP, or HTTPS when apm-server.ssl.enabled is true, and appends accepted events to the output file.

The keystore password comes from APM_SERVER_KEYSTORE_PASSWORD or the file named by APM_SERVER_KEYSTORE_PASSWORD_FILE; the server never prompts. Any configuration problem stops the start-up (exit 1): the server never starts unauthenticated by accident.

Without a config file (and without -c) the defaults apply; a server without a secret token logs an error saying it runs without authentication. -E overrides are merged into the settings: -E 'apm-server.auth={anonymous: {enabled: false}}' changes that setting only. An override may weaken authentication only by naming what it weakens: -E apm-server.auth.secret_token=null turns the secret token off on purpose.

Logs go to stderr: ECS JSON lines, or readable text when stderr is a terminal (--log-format).

SIGHUP re-reads the configuration and the keystore. A failure is logged and the running configuration kept: a config file that is gone, unreadable or empty, any configuration problem, a reload that takes over 30 s, and a reload that would loosen protection (remove the secret token, turn anonymous access on, let more agents or services in anonymously, raise the anonymous rate limits, turn TLS off, or take a value the keystore gave from the environment instead): restart the server to do those on purpose.

SIGTERM or SIGINT stop accepting (without waiting for a reload), finish the requests in flight, flush and fsync the output, and exit 0.`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Serve with ./apm-server.yml'},
    {command: '<%= config.bin %> <%= command.id %> -E apm-server.host=127.0.0.1:0', description: 'Listen on a free port (the chosen URL is logged)'},
    {command: 'APM_SERVER_KEYSTORE_PASSWORD_FILE=/run/secrets/ks <%= config.bin %> <%= command.id %> -c /etc/apm-server/apm-server.yml', description: 'A password-protected keystore'},
    {command: 'kill -HUP <pid>', description: 'Reload the configuration and keystore, e.g. after rotating the secret token'},
  ]

  static enableJsonFlag = false
  static flags = {
    ...serverFlags,
    e: Flags.boolean({char: 'e', description: 'log to stderr (always the case here; accepted as in Beats)'}),
    'log-format': Flags.string({description: 'log lines as ECS JSON, or as text for a person [default: text when stderr is a terminal, else json]', options: ['json', 'text']}),
    'log-level': Flags.string({description: 'log level, overriding logging.level [default: info]', options: ['debug', 'info', 'warning', 'error']}),
  }

  async run(): Promise<void> {
    // SIGHUP's default action kills the process; during start-up the configuration being read is the fresh one.
    const ignoreHangup = () => {}
    process.on('SIGHUP', ignoreHangup)
    // The server's modules load here, not at the top: every command's module is loaded at start-up.
    const [{ConfigError}, {loadServerConfig}, {loadOptionsFrom}, {createLogger}, {startServer}] = await Promise.all([
      import('../server/config/server-config.js'),
      import('../server/config/load.js'),
      import('../server/config/options.js'),
      import('../server/logger.js'),
      import('../server/server.js'),
    ])
    const load = (reloadOf?: LoadedConfig) => loadServerConfig({...loadOptionsFrom(this.flags, {password: serverPassword, strictPerms: this.strictPerms}), reloadOf})
    let loaded: LoadedConfig
    try {
      loaded = await load()
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      // The CLI's error lines, as "test config" prints them: the server has not started, so no log yet.
      for (const warning of error.warnings) this.note(warning)
      for (const problem of error.problems) process.stderr.write(`error: ${problem}\n`)
      const count = error.problems.length === 1 ? 'a configuration problem' : `${error.problems.length} configuration problems`
      throw new KeystoreError(error.keystoreCode ?? 'ECONFIG', `cannot start: ${count}; fix the configuration (check it with "apm-server test config")`)
    }

    const format = (this.flags['log-format'] ?? (process.stderr.isTTY ? 'text' : 'json')) as LogFormat
    const logger = createLogger({format, level: this.flags['log-level'] ?? loaded.config.logLevel})
    const server = await startServer(loaded.config, logger)
    // Signal handlers first, then the log lines: whoever acts on a line (a supervisor, a test) may
    // send SIGTERM at once, and it must find a graceful stop, not the default kill.
    const serving = this.serveUntilSignal(server, logger, new Reloads({ConfigError, load, logger, server, started: loaded}))
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

  /** Serves until SIGTERM/SIGINT; SIGHUP reloads. Resolves with the signal, and whether a reload was still running then. */
  private serveUntilSignal(server: RunningServer, logger: Logger, reloads: Reloads): Promise<{reloadRunning: boolean; signal: NodeJS.Signals}> {
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
}
