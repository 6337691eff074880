/**
 * `apm-server run`: parse the flags and serve (src/server/lifecycle.ts); a configuration that cannot
 * start is reported as `test config` reports it.
 */
import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {serverFlags} from '../cli/server-flags.js'
import {KeystoreError} from '../core/errors.js'
import type {LogFormat} from '../server/logger.js'

export default class Run extends BaseCommand<typeof Run> {
  static summary = 'Run the APM intake server.'
  static description = `Loads the configuration as "apm-server test config" does (apm-server.yml, -E overrides, --path.* flags; every \${KEY} resolved from the keystore, then the environment), then serves Elastic APM agents over HTTP, or HTTPS when apm-server.ssl.enabled is true, and OpenTelemetry SDKs on the same port (OTLP over HTTP at /v1/traces, /v1/metrics and /v1/logs, and over gRPC), with the same secret token, and writes accepted events to the output: the output file, or a Redis list or channel with output.redis (an event is answered 202 only once Redis acknowledged it; while Redis is down or slow, 503 "queue is full" after output.redis.timeout).

The keystore password comes from APM_SERVER_KEYSTORE_PASSWORD or the file named by APM_SERVER_KEYSTORE_PASSWORD_FILE; the server never prompts. Any configuration problem stops the start-up (exit 1): the server never starts unauthenticated by accident. A keystore secret in use that expires within 14 days is a warning; an expired secret token is a problem (rotate it, or extend it with "keystore add --force --expires").

Without a config file (and without -c) the defaults apply; a server without a secret token logs an error saying it runs without authentication. -E overrides are merged into the settings: -E 'apm-server.auth={anonymous: {enabled: false}}' changes that setting only. An override may weaken authentication only by naming what it weakens: -E apm-server.auth.secret_token=null turns the secret token off on purpose.

Logs go to stderr: ECS JSON lines, or readable text when stderr is a terminal (--log-format).

SIGHUP re-reads the configuration and the keystore. A failure is logged and the running configuration kept: a config file that is gone, unreadable or empty, any configuration problem, a reload that takes over 30 s, a new Redis password that a Redis host refuses, and a reload that would loosen protection (remove the secret token, turn anonymous access on, let more agents or services in anonymously, raise the anonymous rate limits, turn TLS off, or take a value the keystore gave from the environment instead) or that would use an expired secret token: restart the server to do those on purpose.

During a rotation's grace period, the requests the previous token lets in are counted by address and by the service and agent they name, and logged once a minute ("previous secret token: ...") and when it ends ("grace period over: ..."). With http.enabled: true, a local monitoring endpoint without authentication (it never shows a secret) serves GET / and GET /stats (JSON counts) on http.host (default localhost) and http.port (default 5066); it listens on a non-loopback address only when http.host is set explicitly. A reload with http.enabled: false closes it at once; other http.* changes need a restart.

SIGTERM or SIGINT stop accepting (without waiting for a reload), finish the requests in flight, flush and fsync the output (or wait for Redis to acknowledge what is queued, up to apm-server.shutdown_timeout), and exit 0.

SIGUSR1 is logged and ignored: Node would open its inspector on 127.0.0.1:9229, where any local user could run code in the server and read its secrets. For the same reason the server does not start with the inspector open (--inspect in NODE_OPTIONS).`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Serve with ./apm-server.yml'},
    {command: '<%= config.bin %> <%= command.id %> -E apm-server.host=127.0.0.1:0', description: 'Listen on a free port (the chosen URL is logged)'},
    {command: 'APM_SERVER_KEYSTORE_PASSWORD_FILE=/run/secrets/ks <%= config.bin %> <%= command.id %> -c /etc/apm-server/apm-server.yml', description: 'A password-protected keystore'},
    {command: 'kill -HUP <pid>', description: 'Reload the configuration and keystore, e.g. after rotating the secret token'},
    {command: '<%= config.bin %> <%= command.id %> -E http.enabled=true && curl -s localhost:5066/stats', description: 'Serve the monitoring endpoint, and read its counts'},
  ]

  static enableJsonFlag = false
  static flags = {
    ...serverFlags,
    e: Flags.boolean({char: 'e', description: 'log to stderr (always the case here; accepted as in Beats)'}),
    'log-format': Flags.string({description: 'log lines as ECS JSON, or as text for a person [default: text when stderr is a terminal, else json]', options: ['json', 'text']}),
    'log-level': Flags.string({description: 'log level, overriding logging.level [default: info]', options: ['debug', 'info', 'warning', 'error']}),
  }

  async run(): Promise<void> {
    // SIGHUP's default action kills the process: ignored while the server's modules load (serve() then guards itself).
    const ignoreHangup = () => {}
    process.on('SIGHUP', ignoreHangup)
    // The server's modules load here, not at the top: every command's module is loaded at start-up.
    const [{serve}, {loadServerConfig}, {loadOptionsFrom, serverPassword}, {ConfigError}] = await Promise.all([
      import('../server/lifecycle.js'),
      import('../server/config/load.js'),
      import('../server/config/options.js'),
      import('../server/config/server-config.js'),
    ])
    const options = loadOptionsFrom(this.flags, {password: serverPassword, strictPerms: this.strictPerms})
    const logFormat = (this.flags['log-format'] ?? (process.stderr.isTTY ? 'text' : 'json')) as LogFormat
    try {
      await serve({load: (reloadOf) => loadServerConfig({...options, reloadOf}), logFormat, logLevel: this.flags['log-level']})
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      // The CLI's error lines, as "test config" prints them: the server has not started, so no log yet.
      for (const warning of error.warnings) this.note(warning)
      for (const problem of error.problems) process.stderr.write(`error: ${problem}\n`)
      const count = error.count === 1 ? 'a configuration problem' : `${error.count} configuration problems`
      throw new KeystoreError(error.keystoreCode ?? 'ECONFIG', `cannot start: ${count}; fix the configuration (check it with "apm-server test config")`)
    } finally {
      process.off('SIGHUP', ignoreHangup)
    }
  }
}
