/**
 * Rotation telemetry and the monitoring endpoint through `apm-server run`, as an operator sees them:
 * real elastic-apm-node agents rolling over during a grace period (the token rotated in the keystore,
 * SIGHUP), the endpoint's /stats naming the service that still uses the previous token (and no token),
 * the "grace period over" line naming it, a reload that turns the endpoint off, and the start refused
 * when the default host `localhost` resolves to an address that is not a loopback one.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {promises as fs} from 'node:fs'
import {createRequire} from 'node:module'
import path from 'node:path'

import {cleanEnv, makeTempDir, runCli} from '../helpers/cli.js'
import {killStartedServers, send, startRun} from '../helpers/run-server.js'

const require = createRequire(import.meta.url)
const AGENT_PATH = require.resolve('elastic-apm-node')
const OLD_TOKEN = 'e2e-old-Token_0123456789abcdef'
const NEW_TOKEN = 'e2e-new-Token_fedcba9876543210'
const GRACE_S = 12

/** One transaction, flushed; the service name and token from the environment. */
const AGENT_SCRIPT = `
const apm = require(process.env.AGENT_PATH).start({
  serviceName: process.env.SERVICE_NAME,
  serverUrl: process.env.SERVER_URL,
  secretToken: process.env.AGENT_SECRET_TOKEN,
  apiRequestTime: '1s',
  centralConfig: false,
  cloudProvider: 'none',
  metricsInterval: '0s',
  breakdownMetrics: false,
  captureExceptions: false,
  logLevel: 'warn',
})
const keepAlive = setInterval(() => {}, 1000)
apm.startTransaction('rollover', 'custom').end()
apm.flush(() => {
  apm.destroy()
  clearInterval(keepAlive)
})
`

function runAgent(cwd: string, env: Record<string, string>): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(cwd, 'agent.cjs')], {cwd, env: {...cleanEnv(), AGENT_PATH, ...env}, stdio: 'ignore'})
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
}

describe('e2e: rotation telemetry and the monitoring endpoint through apm-server run', function () {
  this.timeout(120_000)
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir('apm-e2e-monitoring-')
  })
  afterEach(() => {
    killStartedServers()
    tmp.cleanup()
  })

  const writeConfig = (enabled = true) =>
    fs.writeFile(
      path.join(tmp.dir, 'apm-server.yml'),
      [
        'apm-server:',
        '  host: "127.0.0.1:0"',
        '  auth.secret_token: "${APM_SECRET_TOKEN}"',
        `  auth.secret_token_grace_period: ${GRACE_S}s`,
        `http.enabled: ${enabled}`,
        'http.port: 0',
        `output.file.path: "${path.join(tmp.dir, 'out')}"`,
        '',
      ].join('\n'),
      {mode: 0o600},
    )

  const setToken = async (token: string) => {
    const added = await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin', '--force'], {cwd: tmp.dir, env: {}, input: token})
    assert.equal(added.code, 0, added.stderr)
  }

  it('agents rolling over during a grace period: /stats and the "grace period over" line name the service still on the previous token', async () => {
    const cwd = tmp.dir
    assert.equal((await runCli(['keystore', 'create'], {cwd, env: {}})).code, 0)
    await setToken(OLD_TOKEN)
    await writeConfig()
    await fs.writeFile(path.join(cwd, 'agent.cjs'), AGENT_SCRIPT)
    const run = await startRun(cwd)
    const monitoring = String((await run.waitFor('monitoring endpoint listening')).url)
    assert.match(monitoring, /^http:\/\/127\.0\.0\.1:\d+$/)

    await setToken(NEW_TOKEN)
    const before = run.logs().length
    run.child.kill('SIGHUP')
    await run.waitFor('configuration reloaded', before)
    const agent = {AGENT_SECRET_TOKEN: OLD_TOKEN, SERVER_URL: run.url}
    assert.equal(await runAgent(cwd, {...agent, SERVICE_NAME: 'e2e-rollover-old'}), 0)
    assert.equal(await runAgent(cwd, {...agent, AGENT_SECRET_TOKEN: NEW_TOKEN, SERVICE_NAME: 'e2e-rollover-new'}), 0)

    const stats = await send(monitoring, {method: 'GET', path: '/stats'})
    assert.equal(stats.status, 200)
    for (const token of [OLD_TOKEN, NEW_TOKEN]) assert.ok(!stats.body.includes(token), 'a token in /stats')
    const previous = (JSON.parse(stats.body) as {'apm-server': {previous_token: {services: {top: Array<{service: string; agent: string}>}}}})['apm-server'].previous_token
    assert.deepEqual(
      previous.services.top.map(({agent, service}) => `${service} (${agent})`),
      ['e2e-rollover-old (nodejs)'],
    )

    const over = await run.waitFor(/^grace period over/, before)
    assert.equal(over['log.level'], 'warn')
    assert.match(String(over.message), new RegExp(`^grace period over: (\\d+) requests? used the previous token in its last ${GRACE_S} s: e2e-rollover-old \\(nodejs\\) \\d+(; \\d+ requests? named no service)?; addresses: 127\\.0\\.0\\.1 \\1$`))
    assert.ok(!run.stderr().includes(OLD_TOKEN) && !run.stderr().includes(NEW_TOKEN), 'a token in the log')

    // Turning the endpoint off takes effect at the reload.
    await writeConfig(false)
    const reloaded = run.logs().length
    run.child.kill('SIGHUP')
    await run.waitFor('the monitoring endpoint is closed (http.enabled: false)', reloaded)
    await assert.rejects(send(monitoring, {method: 'GET', path: '/'}), {code: 'ECONNREFUSED'})
    run.child.kill('SIGTERM')
    assert.equal(await run.exit, 0)
  })

  it('refuses to start when the default http.host, localhost, resolves to an address that is not a loopback one; an explicit http.host is taken', async () => {
    const cwd = tmp.dir
    // A hosts file that maps localhost elsewhere, in effect: the lookup of "localhost" answers 192.0.2.10.
    const preload = path.join(cwd, 'hosts.cjs')
    await fs.writeFile(
      preload,
      `const dns = require('node:dns')
const lookup = dns.promises.lookup
dns.promises.lookup = (host, options) => (host === 'localhost' ? Promise.resolve([{address: '192.0.2.10', family: 4}]) : lookup(host, options))
`,
    )
    await fs.writeFile(path.join(cwd, 'apm-server.yml'), `apm-server.host: "127.0.0.1:0"\nhttp.enabled: true\nhttp.port: 0\noutput.file.path: out\n`)
    const env = {NODE_OPTIONS: `--require ${preload}`}
    const refused = await runCli(['run'], {cwd, env})
    assert.equal(refused.code, 1)
    assert.equal(
      refused.stderr.trim().split('\n').at(-1),
      `error: the monitoring endpoint's default host "localhost" resolves to 192.0.2.10 here, not a loopback address, and the endpoint has no authentication; make localhost resolve to 127.0.0.1 or ::1 (/etc/hosts), or set http.host explicitly`,
    )
    assert.ok(!refused.stderr.includes('"message":"listening"'), 'the APM port was not opened')

    const explicit = await startRun(cwd, ['-E', 'http.host=0.0.0.0'], env)
    const warning = await explicit.waitFor(/^the monitoring endpoint listens on 0\.0\.0\.0, reachable from the network without authentication/)
    assert.match(String(warning.url), /^http:\/\/0\.0\.0\.0:\d+$/)
    assert.equal((await send(String(warning.url).replace('0.0.0.0', '127.0.0.1'), {method: 'GET', path: '/'})).status, 200)
    explicit.child.kill('SIGTERM')
    assert.equal(await explicit.exit, 0)
  })
})

