/**
 * End to end with the Redis output: `apm-server run` (the built CLI) whose Redis password comes from a
 * password-protected keystore made with the CLI, a real redis-server (requirepass, appendonly with
 * appendfsync always), and a real elastic-apm-node agent. A wrong password stops the start and fails
 * `test output`; kill -9 of Redis in the middle of a stream and a restart lose nothing answered 202; a
 * rotated password is taken on SIGHUP (`keystore add --force`, `CONFIG SET requirepass`), a wrong one
 * refused. The password is never in any output, DEBUG=* included.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {promises as fs} from 'node:fs'
import {createRequire} from 'node:module'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {cleanEnv, makeTempDir, runCli} from '../helpers/cli.js'
import {RedisInstance, startRedis, stopAllRedis} from '../helpers/redis.js'
import {killStartedServers, Running, send, startRun} from '../helpers/run-server.js'

const require = createRequire(import.meta.url)
const AGENT_PATH = require.resolve('elastic-apm-node')
const KEYSTORE_PASSWORD = 'e2e keystore password'
const REDIS_PASSWORD = 'e2e-Redis-Pa55word-0123'
const ROTATED = 'e2e-Rotated-Pa55word-4567'
const TOKEN = 'e2e-redis-token-0123456789abcdef'
const env = {APM_SERVER_KEYSTORE_PASSWORD: KEYSTORE_PASSWORD}
const METADATA = JSON.stringify({metadata: {service: {agent: {name: 'nodejs', version: '4.18.0'}, name: 'svc'}}})
const body = (ids: string[]) => [METADATA, ...ids.map((id) => JSON.stringify({transaction: {id, name: id}}))].map((line) => `${line}\n`).join('')

const AGENT_SCRIPT = `
const apm = require(process.env.AGENT_PATH).start({
  serviceName: 'e2e-redis', serverUrl: process.env.SERVER_URL, secretToken: process.env.AGENT_SECRET_TOKEN,
  apiRequestTime: '1s', centralConfig: false, cloudProvider: 'none', metricsInterval: '0s', breakdownMetrics: false,
  captureExceptions: false, logLevel: 'warn',
})
const keepAlive = setInterval(() => {}, 1000)
const transaction = apm.startTransaction('e2e-redis-transaction', 'custom')
apm.startSpan('e2e-redis-span', 'custom').end()
apm.captureError(new Error('e2e-redis-error'), () => {
  transaction.end()
  apm.flush(() => { apm.destroy(); clearInterval(keepAlive) })
})
`

describe('e2e: apm-server run with output.redis (real redis-server, keystore, agent)', function () {
  this.timeout(120_000)
  let tmp: ReturnType<typeof makeTempDir>
  let cwd: string
  let redis: RedisInstance
  const outputs: string[] = []

  const writeConfig = (extra = '') =>
    fs.writeFile(
      path.join(cwd, 'apm-server.yml'),
      [
        'apm-server.host: "127.0.0.1:0"',
        'apm-server.auth.secret_token: "${APM_SECRET_TOKEN}"',
        'output.redis:',
        `  hosts: ["127.0.0.1:${redis.port}"]`,
        '  password: "${REDIS_PASSWORD}"',
        '  key: apm-e2e',
        '  timeout: 1s',
        '  backoff: {init: 100ms, max: 500ms}',
        extra,
        '',
      ].join('\n'),
    )
  const post = (url: string, ids: string[]) => send(url, {body: body(ids), headers: {Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/x-ndjson'}, path: '/intake/v2/events'})
  const listed = async (password = REDIS_PASSWORD) => {
    const client = redis.client(password)
    try {
      return (await client.lrange('apm-e2e', 0, -1)).map((item) => JSON.parse(item) as Record<string, Record<string, string>>)
    } finally {
      client.disconnect()
    }
  }

  beforeEach(async () => {
    tmp = makeTempDir('apm-e2e-redis-')
    cwd = tmp.dir
    redis = await startRedis({durable: true, password: REDIS_PASSWORD})
    assert.equal((await runCli(['keystore', 'create', '--password'], {cwd, env})).code, 0)
    const added = await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', 'REDIS_PASSWORD', '--stdin'], {cwd, env, input: `${TOKEN}\n${REDIS_PASSWORD}\n`})
    assert.equal(added.code, 0, added.stderr)
    await writeConfig()
  })
  afterEach(async () => {
    killStartedServers()
    await stopAllRedis()
    tmp.cleanup()
    for (const text of outputs.splice(0)) for (const secret of [REDIS_PASSWORD, ROTATED]) assert.ok(!text.includes(secret), 'a Redis password in an output')
  })

  const logsOf = (run: Running) => run.stderr()

  it("test output says OK; a real agent's transaction, span and error land in the list", async () => {
    const tested = await runCli(['test', 'output'], {cwd, env})
    outputs.push(tested.stdout, tested.stderr)
    assert.equal(tested.code, 0, tested.stderr)
    assert.equal(tested.stdout, `redis: 127.0.0.1:${redis.port}...\n  parse host... OK\n  dns lookup... OK\n  addresses: 127.0.0.1\n  dial up... OK\n  TLS... WARN secure connection disabled\n  talk to server... OK\n`)
    const run = await startRun(cwd, [], env)
    await fs.writeFile(path.join(cwd, 'agent.cjs'), AGENT_SCRIPT)
    const agent = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [path.join(cwd, 'agent.cjs')], {cwd, env: {...cleanEnv(), AGENT_PATH, AGENT_SECRET_TOKEN: TOKEN, SERVER_URL: run.url}, stdio: 'ignore'})
      child.on('exit', resolve)
    })
    assert.equal(agent, 0)
    const kinds = new Set((await listed()).map((item) => Object.keys(item).find((key) => key !== 'metadata')))
    for (const kind of ['transaction', 'span', 'error']) assert.ok(kinds.has(kind), `no ${kind} in the list: ${[...kinds].join(',')}`)
    run.child.kill('SIGTERM')
    assert.equal(await run.exit, 0)
    outputs.push(logsOf(run))
  })

  it('a wrong password stops the start and fails test output, with the fix and without the password', async () => {
    const wrong = 'e2e-Wrong-Pa55word'
    await runCli(['keystore', 'add', 'REDIS_PASSWORD', '--stdin', '--force'], {cwd, env, input: wrong})
    const tested = await runCli(['test', 'output'], {cwd, env})
    const started = await runCli(['run'], {cwd, env, timeoutMs: 30_000})
    for (const result of [tested, started]) {
      assert.equal(result.code, 1)
      assert.ok(!`${result.stdout}${result.stderr}`.includes(wrong), 'the wrong password is shown')
    }

    assert.match(tested.stdout, /talk to server\.\.\. ERROR the credentials were refused: WRONGPASS .*; check output\.redis\.password \(and username\)\n$/)
    assert.match(started.stderr, /error: redis host 127\.0\.0\.1:\d+: the credentials were refused: WRONGPASS .*; check output\.redis\.password/)
  })

  it('kill -9 of Redis mid-stream and a restart: 503 while down, the server never stops, every event answered 202 is in the list (DEBUG=*)', async () => {
    const run = await startRun(cwd, [], {...env, DEBUG: '*'})
    const accepted = new Set<string>()
    const statuses: number[] = []
    let running = true
    let serial = 0
    const stream = (async () => {
      while (running) {
        const ids = [`e${serial++}`, `e${serial++}`]
        // eslint-disable-next-line no-await-in-loop -- one request after another, like an agent
        const reply = await post(run.url, ids).catch(() => ({body: '', status: 0}))
        statuses.push(reply.status)
        if (reply.status === 202) for (const id of ids) accepted.add(id)
        else assert.match(reply.body, /queue is full/)
      }
    })()
    await sleep(800)
    await redis.kill()
    await sleep(2500)
    await redis.start()
    await sleep(2000)
    running = false
    await stream
    assert.equal(run.child.exitCode, null, 'the server is still running')
    assert.ok(statuses.includes(503), 'a 503 while Redis was down')
    assert.ok(statuses.at(-1) === 202, `events flow again: ${statuses.slice(-5).join(',')}`)
    const stored = new Set((await listed()).map((item) => item.transaction.id))
    const missing = [...accepted].filter((id) => !stored.has(id))
    assert.deepEqual(missing, [], `${missing.length} of ${accepted.size} events answered 202 are missing`)
    run.child.kill('SIGTERM')
    assert.equal(await run.exit, 0)
    outputs.push(logsOf(run))
    assert.match(logsOf(run), /oclif/, 'DEBUG=* was on')
  })

  it('rotation: keystore add --force, CONFIG SET requirepass, SIGHUP; a wrong new password is refused and the old connection goes on', async () => {
    const run = await startRun(cwd, [], env)
    assert.equal((await post(run.url, ['before'])).status, 202)
    // A wrong one first: the reload fails closed.
    await runCli(['keystore', 'add', 'REDIS_PASSWORD', '--stdin', '--force'], {cwd, env, input: 'e2e-Not-It-Pa55'})
    const before = run.logs().length
    run.child.kill('SIGHUP')
    const failed = await run.waitFor(/reload failed/, before)
    assert.match(JSON.stringify(failed.problems), /the credentials were refused: WRONGPASS/)
    assert.equal((await post(run.url, ['after-wrong'])).status, 202, 'the running connection still works')
    // Now the real rotation.
    await runCli(['keystore', 'add', 'REDIS_PASSWORD', '--stdin', '--force'], {cwd, env, input: ROTATED})
    const admin = redis.client()
    await admin.config('SET', 'requirepass', ROTATED)
    const next = run.logs().length
    run.child.kill('SIGHUP')
    await run.waitFor('configuration reloaded', next)
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
    admin.disconnect()
    let status = 0
    for (let i = 0; i < 50 && status !== 202; i++) {
      // eslint-disable-next-line no-await-in-loop -- until the new connection is up
      status = (await post(run.url, ['after-rotation'])).status
      if (status !== 202) await sleep(100) // eslint-disable-line no-await-in-loop
    }

    assert.equal(status, 202, 'a new connection authenticated with the rotated password')
    const ids = new Set((await listed(ROTATED)).map((item) => item.transaction.id))
    for (const id of ['before', 'after-wrong', 'after-rotation']) assert.ok(ids.has(id), id)
    run.child.kill('SIGTERM')
    assert.equal(await run.exit, 0)
    outputs.push(logsOf(run))
  })
})
