/**
 * End to end with the real client: the elastic-apm-node agent, in its own process, sends a transaction,
 * a span and an error over HTTPS (CA pinned with serverCaCertFile) to `apm-server run`, whose secret
 * token comes from a password-protected keystore made with the CLI. With a wrong token nothing lands
 * and the server counts the 401s.
 */
import assert from 'node:assert/strict'
import {ChildProcess, execFileSync, spawn} from 'node:child_process'
import {promises as fs} from 'node:fs'
import {createRequire} from 'node:module'
import path from 'node:path'

import {BIN, cleanEnv, makeTempDir, runCli} from '../helpers/cli.js'

const require = createRequire(import.meta.url)
const AGENT_PATH = require.resolve('elastic-apm-node')
const KEYSTORE_PASSWORD = 'e2e keystore password'
const TOKEN = 'e2e-Secret-Token_0123456789abcdef'

/** The agent program: everything secret arrives through the environment, never argv. */
const AGENT_SCRIPT = `
const apm = require(process.env.AGENT_PATH).start({
  serviceName: 'e2e-service',
  serverUrl: process.env.SERVER_URL,
  secretToken: process.env.AGENT_SECRET_TOKEN,
  serverCaCertFile: process.env.CA_FILE,
  apiRequestTime: '1s',
  centralConfig: false,
  cloudProvider: 'none',
  metricsInterval: '0s',
  breakdownMetrics: false,
  captureExceptions: false,
  logLevel: 'warn',
})
// The agent unrefs its sockets so it never keeps an application alive; this program has nothing else
// to wait on, so a timer holds the process until the flush is done.
const keepAlive = setInterval(() => {}, 1000)
const transaction = apm.startTransaction('e2e-transaction', 'custom')
const span = apm.startSpan('e2e-span', 'custom')
span.end()
apm.captureError(new Error('e2e-error'), () => {
  transaction.end()
  apm.flush(() => {
    apm.destroy()
    clearInterval(keepAlive)
  })
})
`

interface Exit {
  code: number | null
  output: string
}

function runAgent(cwd: string, env: Record<string, string>): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(cwd, 'agent.cjs')], {cwd, env: {...cleanEnv(), AGENT_PATH, ...env}, stdio: ['ignore', 'pipe', 'pipe']})
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('error', reject)
    // 'close', not 'exit': the agent's last lines (its report of the 401) can still be in the pipes at exit.
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, output})
    })
  })
}

async function outputEvents(dir: string): Promise<Record<string, Record<string, unknown>>[]> {
  const text = await fs.readFile(path.join(dir, 'out', 'apm-server'), 'utf8').catch(() => '')
  return text === '' ? [] : text.slice(0, -1).split('\n').map((line) => JSON.parse(line) as Record<string, Record<string, unknown>>)
}

describe('e2e: a real elastic-apm-node agent against apm-server run over HTTPS', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let server: ChildProcess | undefined
  let serverLog = ''
  let serverExit: Promise<number | null>
  let url: string
  const env = {APM_SERVER_KEYSTORE_PASSWORD: KEYSTORE_PASSWORD}

  before(async function () {
    this.timeout(60_000)
    tmp = makeTempDir('apm-e2e-agent-')
    const cwd = tmp.dir
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=apm-e2e', '-addext', 'subjectAltName=IP:127.0.0.1'],
      {cwd, stdio: 'ignore'},
    )
    const created = await runCli(['keystore', 'create', '--password'], {cwd, env})
    assert.equal(created.code, 0, created.stderr)
    const added = await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin'], {cwd, env, input: `${TOKEN}\n`})
    assert.equal(added.code, 0, added.stderr)
    await fs.writeFile(
      path.join(cwd, 'apm-server.yml'),
      [
        'apm-server:',
        '  host: "127.0.0.1:0"',
        '  auth:',
        '    secret_token: "${APM_SECRET_TOKEN}"',
        '  ssl:',
        '    enabled: true',
        '    certificate: cert.pem',
        '    key: key.pem',
        `output.file.path: "${path.join(cwd, 'out')}"`,
        '',
      ].join('\n'),
    )
    await fs.writeFile(path.join(cwd, 'agent.cjs'), AGENT_SCRIPT)

    const child = spawn(process.execPath, [BIN, 'run'], {cwd, env: cleanEnv(env), stdio: ['ignore', 'ignore', 'pipe']})
    server = child
    serverExit = new Promise((resolve) => {
      child.on('exit', resolve)
    })
    url = await new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (chunk: Buffer) => {
        serverLog += chunk.toString('utf8')
        const listening = /"url":"(https:\/\/127\.0\.0\.1:\d+)","message":"listening"/.exec(serverLog)
        if (listening) resolve(listening[1])
      })
      child.on('exit', (code) => reject(new Error(`apm-server run exited ${code}:\n${serverLog}`)))
    })
  })

  after(() => {
    if (server?.exitCode === null) server.kill('SIGKILL')
    tmp?.cleanup()
  })

  it('the token in the keystore is the one given on stdin', async () => {
    const shown = await runCli(['keystore', 'show', 'APM_SECRET_TOKEN'], {cwd: tmp.dir, env})
    assert.equal(shown.stdout, TOKEN)
  })

  it("lands the agent's transaction, span and error in the output file", async () => {
    const shown = await runCli(['keystore', 'show', 'APM_SECRET_TOKEN'], {cwd: tmp.dir, env})
    const agent = await runAgent(tmp.dir, {AGENT_SECRET_TOKEN: shown.stdout, CA_FILE: path.join(tmp.dir, 'cert.pem'), SERVER_URL: url})
    assert.equal(agent.code, 0, agent.output)
    const events = await outputEvents(tmp.dir)
    const transaction = events.find((line) => line.transaction?.name === 'e2e-transaction')
    const span = events.find((line) => line.span?.name === 'e2e-span')
    const error = events.find((line) => (line.error?.exception as {message?: string} | undefined)?.message === 'e2e-error')
    assert.ok(transaction && span && error, `missing events in ${JSON.stringify(events, null, 1)}\nagent output:\n${agent.output}`)
    assert.equal(span.span.transaction_id, transaction.transaction.id)
    assert.equal(error.error.transaction_id, transaction.transaction.id)
    for (const line of [transaction, span, error]) {
      const service = line.metadata.service as {name: string; agent: {name: string; version: string}}
      assert.deepEqual([service.name, service.agent.name, service.agent.version], ['e2e-service', 'nodejs', '4.18.0'])
    }
  })

  it('with a wrong token nothing lands, and the server counts the 401s', async () => {
    const before = (await outputEvents(tmp.dir)).length
    const agent = await runAgent(tmp.dir, {AGENT_SECRET_TOKEN: 'not-the-token', CA_FILE: path.join(tmp.dir, 'cert.pem'), SERVER_URL: url})
    assert.equal(agent.code, 0, agent.output)
    assert.match(agent.output, /401/, 'the agent reports the refusal')
    assert.equal((await outputEvents(tmp.dir)).length, before)

    server!.kill('SIGTERM')
    assert.equal(await serverExit, 0)
    const lines = serverLog
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    const refused = lines.filter((line) => line['http.response.status_code'] === 401 && line['url.path'] === '/intake/v2/events')
    assert.ok(refused.length > 0, serverLog)
    const stopped = lines.find((line) => line.message === 'stopped') as {stats: {responses: Record<string, number>}}
    assert.equal(stopped.stats.responses['401'], refused.length)
    assert.equal(serverLog.includes(TOKEN), false, 'the token never reaches the log')
    assert.equal(serverLog.includes('not-the-token'), false, 'nor does a presented one')
  })
})
