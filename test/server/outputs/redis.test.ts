/**
 * The Redis output against real redis-server instances (test/helpers/redis.ts), through the server
 * in-process: what lands in the list or on the channel, at least once (202 only after Redis has the
 * events), 503 `queue is full` while Redis is down or silent, reconnection, load balancing, the
 * credentials (ACL user, TLS, a refused password, a rotated one), and the shutdown bound.
 */
import assert from 'node:assert/strict'
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {RedisOutputConfig, ServerConfig} from '../../../src/server/config/server-config.js'
import {createLogger} from '../../../src/server/logger.js'
import {RunningServer, startServer} from '../../../src/server/server.js'
import {makeTempDir} from '../../helpers/cli.js'
import {makeRedisCertificate, RedisInstance, startRedis, stopAllRedis} from '../../helpers/redis.js'
import {send} from '../../helpers/run-server.js'

const TOKEN = 'redis-test-token'
const PASSWORD = 'redis-Pa55-word'
const METADATA = JSON.stringify({metadata: {service: {agent: {name: 'nodejs', version: '4.18.0'}, name: 'svc'}}})
const event = (id: string) => JSON.stringify({transaction: {id, name: `GET /${id}`}})
const body = (ids: string[]) => [METADATA, ...ids.map(event)].map((line) => `${line}\n`).join('')
const post = (server: RunningServer, ids: string[]) =>
  send(server.url, {body: body(ids), headers: {Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/x-ndjson'}, path: '/intake/v2/events'})

function redisConfig(instances: RedisInstance[], overrides: Partial<RedisOutputConfig> = {}): RedisOutputConfig {
  return {
    backoff: {initMs: 100, maxMs: 400},
    bulkMaxSize: 2048,
    datatype: 'list',
    db: 0,
    hosts: instances.map((instance) => ({host: '127.0.0.1', label: `127.0.0.1:${instance.port}`, port: instance.port})),
    key: 'apm-server',
    loadbalance: true,
    maxRetries: 3,
    password: PASSWORD,
    ssl: {certificateAuthorities: [], enabled: false, verificationMode: 'full'},
    timeoutMs: 1500,
    ...overrides,
  }
}

function serverConfig(dir: string, redis?: RedisOutputConfig): ServerConfig {
  return {
    anonymous: {allowAgent: ['rum-js', 'js-base'], allowService: [], enabled: false, rateLimit: {eventLimit: 300, ipLimit: 1000}},
    host: '127.0.0.1:0',
    maxEventSize: 307_200,
    output: {filename: 'apm-server', numberOfFiles: 7, path: path.join(dir, 'out'), rotateEveryKb: 10_240, ...(redis ? {redis} : {})},
    paths: {config: dir, data: dir, home: dir, logs: dir},
    rum: {allowOrigins: ['*'], enabled: false},
    secretToken: TOKEN,
    secretTokenGracePeriodMs: 0,
    ssl: {enabled: false},
  }
}

function quietLogger() {
  const lines: string[] = []
  return {lines, logger: createLogger({destination: {write: (line: string) => lines.push(line)}, level: 'debug'})}
}

/** The transaction ids in a list (each element one event document). */
async function idsIn(instance: RedisInstance, key = 'apm-server', password = PASSWORD): Promise<string[]> {
  const client = instance.client(password)
  try {
    return (await client.lrange(key, 0, -1)).map((element) => (JSON.parse(element) as {transaction: {id: string}}).transaction.id)
  } finally {
    client.disconnect()
  }
}

describe('outputs/redis (real redis-server)', function () {
  this.timeout(60_000)
  let tmp: ReturnType<typeof makeTempDir>
  let server: RunningServer | undefined
  let log: ReturnType<typeof quietLogger>
  beforeEach(() => {
    tmp = makeTempDir('apm-redis-output-')
    log = quietLogger()
  })
  afterEach(async () => {
    await server?.close()
    server = undefined
    await stopAllRedis()
    tmp.cleanup()
    assert.equal(log.lines.join('').includes(PASSWORD), false, 'the password is in the log')
  })

  it('list: each event is one element, the very line the file output writes, in Redis when the 202 comes', async () => {
    const redis = await startRedis({password: PASSWORD})
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis])), log.logger)
    assert.equal((await post(server, ['a1', 'a2', 'a3'])).status, 202)
    const client = redis.client()
    const elements = await client.lrange('apm-server', 0, -1)
    client.disconnect()
    await server.close()
    server = await startServer(serverConfig(tmp.dir), log.logger)
    assert.equal((await post(server, ['a1', 'a2', 'a3'])).status, 202)
    await server.close()
    server = undefined
    const lines = (await fs.readFile(path.join(tmp.dir, 'out', 'apm-server'), 'utf8')).slice(0, -1).split('\n')
    assert.deepEqual(elements, lines)
  })

  it('channel: a subscriber receives every event (PUBLISH)', async () => {
    const redis = await startRedis({password: PASSWORD})
    const subscriber = redis.client()
    const received: string[] = []
    subscriber.on('message', (_channel: string, message: string) => received.push((JSON.parse(message) as {transaction: {id: string}}).transaction.id))
    await subscriber.subscribe('apm-channel')
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis], {datatype: 'channel', key: 'apm-channel'})), log.logger)
    assert.equal((await post(server, ['c1', 'c2'])).status, 202)
    for (let i = 0; i < 50 && received.length < 2; i++) await sleep(20)
    subscriber.disconnect()
    assert.deepEqual(received, ['c1', 'c2'])
  })

  it('refuses to start with a wrong password, naming the host and the setting, never the password', async () => {
    const redis = await startRedis({password: PASSWORD})
    const wrong = 'not-the-Redis-password'
    await assert.rejects(startServer(serverConfig(tmp.dir, redisConfig([redis], {password: wrong})), log.logger), (error: Error & {code?: string}) => {
      assert.equal(error.code, 'ECONFIG')
      assert.match(error.message, new RegExp(`^redis host 127\\.0\\.0\\.1:${redis.port}: the credentials were refused: WRONGPASS .*; check output\\.redis\\.password`))
      assert.ok(!error.message.includes(wrong))
      return true
    })
    assert.ok(!log.lines.join('').includes(wrong))
  })

  it('an ACL user: username and password; a user without the right to RPUSH gets 503, not 202', async () => {
    const acl = ['user default off', 'user apm on >apm-Pa55 ~apm-* &* +@connection +info +rpush', 'user reader on >reader-Pa55 ~* &* +@connection +info +lrange']
    const redis = await startRedis({acl})
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis], {key: 'apm-events', password: 'apm-Pa55', username: 'apm'})), log.logger)
    assert.equal((await post(server, ['u1'])).status, 202)
    await server.close()
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis], {key: 'apm-events', maxRetries: 0, password: 'reader-Pa55', username: 'reader'})), log.logger)
    const refused = await post(server, ['u2'])
    assert.equal(refused.status, 503)
    assert.match(refused.body, /queue is full/)
    const client = new (await import('ioredis')).Redis({host: '127.0.0.1', password: 'reader-Pa55', port: redis.port, username: 'reader'})
    assert.deepEqual(await client.lrange('apm-events', 0, -1).then((items) => items.map((item) => (JSON.parse(item) as {transaction: {id: string}}).transaction.id)), ['u1'])
    client.disconnect()
  })

  it('a database Redis refuses (out of range, or SELECT not granted to the ACL user) stops the start, where it used to run on db 0', async () => {
    const acl = ['user apm on >apm-Pa55 ~* &* +rpush +ping +info +hello +auth']
    const redis = await startRedis({acl, password: PASSWORD})
    for (const [overrides, reply] of [
      [{db: 20}, /ERR DB index is out of range/],
      [{db: 3, password: 'apm-Pa55', username: 'apm'}, /NOPERM/],
    ] as const) {
      // eslint-disable-next-line no-await-in-loop -- one start after the other
      await assert.rejects(startServer(serverConfig(tmp.dir, redisConfig([redis], overrides)), log.logger), (error: Error & {code?: string}) => {
        assert.equal(error.code, 'ECONFIG')
        assert.match(error.message, new RegExp(`^redis host 127\\.0\\.0\\.1:${redis.port}: Redis answered: ${reply.source}.*; check output\\.redis\\.db and the ACL rules$`))
        return true
      })
    }

    server = await startServer(serverConfig(tmp.dir, redisConfig([redis], {db: 3})), log.logger)
    assert.equal((await post(server, ['in-db-3'])).status, 202)
    const client = redis.client()
    try {
      await client.select(3)
      assert.deepEqual(await client.lrange('apm-server', 0, -1).then((items) => items.map((item) => (JSON.parse(item) as {transaction: {id: string}}).transaction.id)), ['in-db-3'])
    } finally {
      client.disconnect()
    }
  })

  it('TLS: rediss:// with the certificate authority; an unknown CA fails the start check as a TLS error, without the password', async () => {
    const certificate = makeRedisCertificate(tmp.dir)
    const redis = await startRedis({password: PASSWORD, tls: certificate})
    const hosts = [{host: '127.0.0.1', label: `rediss://127.0.0.1:${redis.port}`, port: redis.port, tls: true}]
    const ssl = {certificateAuthorities: [], enabled: false, verificationMode: 'full' as const}
    // Without the CA: the system's, which do not know this certificate. Not a credential problem, so the server starts and retries.
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis], {hosts, ssl})), log.logger, {shutdownTimeoutMs: 100})
    const early = await post(server, ['t0'])
    assert.equal(early.status, 503)
    assert.match(log.lines.join(''), /TLS failed \((SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)/)
    await server.close()
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis], {hosts, ssl: {...ssl, certificateAuthorities: [certificate.cert]}})), log.logger)
    assert.equal((await post(server, ['t1'])).status, 202)
    assert.ok((await idsIn(redis)).includes('t1'))
  })

  it('Redis killed and started again: 503 queue is full while it is down, other routes answer, and every event answered 202 is in the list', async () => {
    const redis = await startRedis({durable: true, password: PASSWORD})
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis])), log.logger)
    const accepted: string[] = []
    const statuses: number[] = []
    const sendOne = async (id: string) => {
      const reply = await post(server!, [id])
      statuses.push(reply.status)
      if (reply.status === 202) accepted.push(id)
      else assert.match(reply.body, /queue is full/)
    }

    await sendOne('before')
    await redis.kill()
    await Promise.all([sendOne('down-1'), sendOne('down-2')])
    assert.equal((await send(server.url, {path: '/'})).status, 200, 'GET / answers while Redis is down')
    await redis.start()
    for (let i = 0; i < 40 && !accepted.some((id) => id.startsWith('after')); i++) {
      await sendOne(`after-${i}`)
      await sleep(100)
    }

    assert.ok(statuses.includes(503), `no 503 while Redis was down: ${statuses.join(',')}`)
    assert.ok(accepted.some((id) => id.startsWith('after')), 'events flow again once Redis is back')
    const stored = await idsIn(redis)
    for (const id of accepted) assert.ok(stored.includes(id), `${id} was answered 202 but is not in Redis`)
  })

  it('two hosts with loadbalance, one killed: events keep flowing to the other, each answered one in one of them', async () => {
    const [one, two] = [await startRedis({durable: true, password: PASSWORD}), await startRedis({durable: true, password: PASSWORD})]
    server = await startServer(serverConfig(tmp.dir, redisConfig([one, two])), log.logger)
    const accepted: string[] = []
    for (let i = 0; i < 20; i++) if ((await post(server, [`lb${i}`])).status === 202) accepted.push(`lb${i}`)
    await one.kill()
    for (let i = 20; i < 40; i++) if ((await post(server, [`lb${i}`])).status === 202) accepted.push(`lb${i}`)
    assert.ok(accepted.filter((id) => Number(id.slice(2)) >= 30).length === 10, `after the kill: ${accepted.join(',')}`)
    await one.start()
    const stored = new Set([...(await idsIn(one)), ...(await idsIn(two))])
    for (const id of accepted) assert.ok(stored.has(id), `${id} answered 202 but in neither host`)
    const perHost = server.stats().output!.hosts!
    assert.ok(Object.values(perHost).every((host) => host.acknowledged > 0), 'both hosts took events before the kill')
  })

  it('a Redis that stops answering (SIGSTOP): 503 within the timeout, and nothing 202 is lost when it resumes', async () => {
    const redis = await startRedis({password: PASSWORD})
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis], {timeoutMs: 800})), log.logger)
    assert.equal((await post(server, ['s0'])).status, 202)
    const {pid} = redis
    process.kill(pid, 'SIGSTOP')
    try {
      const started = Date.now()
      const reply = await post(server, ['s1'])
      assert.equal(reply.status, 503)
      assert.ok(Date.now() - started < 5000, 'the request waited past the bound')
    } finally {
      process.kill(pid, 'SIGCONT')
    }

    for (let i = 0; i < 50 && (await post(server, ['s2'])).status !== 202; i++) await sleep(100)
    assert.ok((await idsIn(redis)).includes('s0'))
  })

  it('a reload takes a rotated password after trying it; a wrong one is refused and the running connection goes on', async () => {
    const redis = await startRedis({password: PASSWORD})
    const config = serverConfig(tmp.dir, redisConfig([redis]))
    server = await startServer(config, log.logger)
    const admin = redis.client()
    await admin.config('SET', 'requirepass', 'rotated-Pa55')
    await assert.rejects(server.reload(serverConfig(tmp.dir, redisConfig([redis], {password: 'wrong-Pa55'}))), /the credentials were refused: WRONGPASS.*not taken/)
    assert.equal((await post(server, ['r1'])).status, 202, 'the running connection still works')
    await server.reload(serverConfig(tmp.dir, redisConfig([redis], {password: 'rotated-Pa55'})))
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
    admin.disconnect()
    let status = 0
    for (let i = 0; i < 50 && status !== 202; i++) {
      status = (await post(server, ['r2'])).status
      if (status !== 202) await sleep(100)
    }

    assert.equal(status, 202, 'a new connection with the rotated password')
    assert.deepEqual(new Set(await idsIn(redis, 'apm-server', 'rotated-Pa55')), new Set(['r1', 'r2']))
    assert.ok(!log.lines.join('').includes('rotated-Pa55') && !log.lines.join('').includes('wrong-Pa55'))
  })

  it('a batch Redis refuses (WRONGTYPE) is retried max_retries times then dropped: 503, counted as failed, never 202', async () => {
    const redis = await startRedis({password: PASSWORD})
    const admin = redis.client()
    await admin.set('apm-server', 'not a list')
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis], {backoff: {initMs: 50, maxMs: 50}, maxRetries: 1})), log.logger)
    const reply = await post(server, ['w1'])
    assert.equal(reply.status, 503)
    assert.equal(server.stats().output!.failed, 1)
    await admin.del('apm-server')
    admin.disconnect()
    let status = 0
    for (let i = 0; i < 30 && status !== 202; i++) {
      status = (await post(server, ['w2'])).status
      if (status !== 202) await sleep(100)
    }

    assert.equal(status, 202)
    // w2 may be there more than once (a 503'd try can still land: at least once); w1 was given up.
    assert.deepEqual(new Set(await idsIn(redis)), new Set(['w2']))
  })

  it('shutdown: what Redis did not acknowledge is retried until the deadline, then counted in the log; acknowledged events are never sent twice', async () => {
    const redis = await startRedis({durable: true, password: PASSWORD})
    server = await startServer(serverConfig(tmp.dir, redisConfig([redis])), log.logger, {shutdownTimeoutMs: 500})
    for (let i = 0; i < 5; i++) assert.equal((await post(server, [`k${i}`])).status, 202)
    await redis.kill()
    const lostReply = await post(server, ["lost"]); assert.equal(lostReply.status, 503, lostReply.body)
    await server.close()
    server = undefined
    const closed = log.lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => /were not acknowledged/.test(String(line.message)))
    assert.equal(closed?.['events.unacknowledged'], 1)
    await redis.start()
    assert.deepEqual(await idsIn(redis), ['k0', 'k1', 'k2', 'k3', 'k4'])
  })
})
