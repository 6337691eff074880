import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {loadOptionsFrom, serverFlags} from '../cli/server-flags.js'
import {KeystoreError} from '../core/errors.js'
import {PASSWORD_ENV, PASSWORD_FILE_ENV, passwordFromEnvironment} from '../core/password-env.js'
import type {ConfigError as ConfigErrorClass, LoadedConfig, ServerConfig} from '../server/config.js'
import type {LogFormat, Logger} from '../server/logger.js'
import type {RunningServer} from '../server/server.js'

/** A server never prompts: the keystore password comes from the environment or a file it names. */
async function serverPassword(): Promise<Buffer> {
  const password = await passwordFromEnvironment(process.env)
  if (password) return password
  throw new KeystoreError('ENOPASSWORD', `the keystore is password protected and a server never prompts; set ${PASSWORD_ENV} or ${PASSWORD_FILE_ENV}`)
}

function warnAboutTransport(config: ServerConfig, logger: Logger): void {
  if (config.secretToken === undefined) {
    logger.warn('no secret token is set: any client that reaches this server can send data; set apm-server.auth.secret_token')
  } else if (!config.ssl.enabled) {
    // The Go server's words, then the way out.
    logger.warn('Secret token is set, but SSL is not enabled.')
    logger.warn('agents send the secret token in clear text; enable TLS with apm-server.ssl.enabled, apm-server.ssl.certificate and apm-server.ssl.key')
  }
}

export default class Run extends BaseCommand<typeof Run> {
  static summary = 'Run the APM intake server.'
  static description = `Loads the configuration as "apm-server test config" does (apm-server.yml, -E overrides, --path.* flags; every \${KEY} resolved from the keystore, then the environment), then serves Elastic APM agents over HTTP, or HTTPS when apm-server.ssl.enabled is true, and appends accepted events to the output file.

The keystore password comes from APM_SERVER_KEYSTORE_PASSWORD or the file named by APM_SERVER_KEYSTORE_PASSWORD_FILE; the server never prompts. Any configuration problem stops the start-up (exit 1): the server never starts unauthenticated by accident.

Logs go to stderr: ECS JSON lines, or readable text when stderr is a terminal (--log-format). SIGHUP re-reads the configuration and the keystore (a failure is logged and the running configuration kept); SIGTERM or SIGINT stop accepting, finish the requests in flight, flush and fsync the output, and exit 0.`

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
    const [{ConfigError, loadServerConfig}, {createLogger}, {startServer}] = await Promise.all([
      import('../server/config.js'),
      import('../server/logger.js'),
      import('../server/server.js'),
    ])
    const load = () => loadServerConfig(loadOptionsFrom(this.flags, {password: serverPassword, strictPerms: this.strictPerms}))
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
    const serving = this.serveUntilSignal(server, logger, load, ConfigError)
    process.off('SIGHUP', ignoreHangup)
    for (const warning of loaded.warnings) logger.warn(warning)
    warnAboutTransport(loaded.config, logger)
    logger.info({url: server.url}, 'listening')
    await serving
  }

  private serveUntilSignal(
    server: RunningServer,
    logger: Logger,
    load: () => Promise<LoadedConfig>,
    ConfigError: typeof ConfigErrorClass,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      let stopping = false
      let reloading: Promise<void> | undefined
      let reloadAgain = false

      const reload = async () => {
        try {
          const next = await load()
          for (const warning of next.warnings) logger.warn(warning)
          server.reload(next.config)
          warnAboutTransport(next.config, logger)
          logger.info({file: next.file}, 'configuration reloaded')
        } catch (error) {
          const problems = error instanceof ConfigError ? error.problems : [(error as Error).message]
          logger.error({'error.code': (error as KeystoreError).code, problems}, 'reload failed; still serving with the previous configuration')
        }
      }

      const onHangup = () => {
        if (stopping) return
        if (reloading) {
          reloadAgain = true
          return
        }

        logger.info('SIGHUP: reloading the configuration')
        reloading = reload().finally(() => {
          reloading = undefined
          if (reloadAgain) {
            reloadAgain = false
            onHangup()
          }
        })
      }

      const onStop = (signal: NodeJS.Signals) => {
        if (stopping) {
          logger.warn({signal}, 'already stopping: finishing the requests in flight')
          return
        }

        stopping = true
        logger.info({signal}, 'stopping')
        Promise.resolve(reloading)
          .then(() => server.close())
          .then(() => {
            process.off('SIGHUP', onHangup)
            process.off('SIGINT', onStop)
            process.off('SIGTERM', onStop)
            logger.info({stats: server.stats()}, 'stopped')
            resolve()
          }, reject)
      }

      process.on('SIGHUP', onHangup)
      process.on('SIGINT', onStop)
      process.on('SIGTERM', onStop)
    })
  }
}
