/**
 * How the Redis output cuts its batches, against a real redis-server (test/helpers/redis.ts): a flush
 * sends what was written before it, a request bigger than bulk_max_size spans several RPUSHes, and a
 * refusal in the middle of a stream leaves exactly the acknowledged events in the list, each once.
 * Every line is given as the intake gives it: the metadata head and the event's bytes, two parts.
 */
import assert from 'node:assert/strict'

import type {RedisOutputConfig} from '../../../src/server/config/server-config.js'
import {createLogger} from '../../../src/server/logger.js'
import {RedisOutput} from '../../../src/server/outputs/redis.js'
import {RedisInstance, redisOutputConfig, startRedis, stopAllRedis} from '../../helpers/redis.js'

const PASSWORD = 'redis-Pa55-word'
const HEAD = Buffer.from('{"metadata":{"service":{"agent":{"name":"nodejs","version":"4.18.0"},"name":"svc"}},')

function config(redis: RedisInstance, overrides: Partial<RedisOutputConfig> = {}): RedisOutputConfig {
  return redisOutputConfig(redis.port, PASSWORD, {backoff: {initMs: 50, maxMs: 50}, timeoutMs: 5000, ...overrides})
}

/** One event line as the intake writes it: the metadata head, then the event's own bytes (a buffer of its own). */
const line = (id: string, padding = 0) => [HEAD, Buffer.from(`"transaction":{"id":"${id}","name":"${'x'.repeat(padding)}"}}`)]

describe('outputs/redis: batches (real redis-server)', function () {
  this.timeout(60_000)
  let output: RedisOutput | undefined
  let redis: RedisInstance
  const logger = createLogger({destination: {write: () => {}}, level: 'error'})
  beforeEach(async () => {
    redis = await startRedis({password: PASSWORD})
  })
  afterEach(async () => {
    await output?.close(Date.now())
    output = undefined
    await stopAllRedis()
  })

  /** Redis's own view: the transaction ids in the list, in order, and how many RPUSHes it ran. */
  async function inRedis(): Promise<{ids: string[]; rpushes: number}> {
    const client = redis.client()
    try {
      const elements = await client.lrange('apm-server', 0, -1)
      const stats = await client.info('commandstats')
      return {
        ids: elements.map((element) => (JSON.parse(element) as {transaction: {id: string}}).transaction.id),
        rpushes: Number(/cmdstat_rpush:calls=(\d+)/.exec(stats)?.[1] ?? 0),
      }
    } finally {
      client.disconnect()
    }
  }

  it("a streamed request's lines go with the batch another request's flush sends; each flush resolves once its own events are in the list", async () => {
    output = await RedisOutput.open(config(redis), logger)
    output.write(line('a1'))
    output.write(line('a2'))
    output.write(line('b1'))
    await output.flush()
    assert.deepEqual(await inRedis(), {ids: ['a1', 'a2', 'b1'], rpushes: 1})
    output.write(line('a3'))
    await output.flush()
    assert.deepEqual(await inRedis(), {ids: ['a1', 'a2', 'b1', 'a3'], rpushes: 2})
  })

  it('a request bigger than bulk_max_size is cut into RPUSHes of bulk_max_size, and its flush waits for the last', async () => {
    output = await RedisOutput.open(config(redis, {bulkMaxSize: 3}), logger)
    const ids = Array.from({length: 8}, (_unused, index) => `big${index}`)
    for (const id of ids) output.write(line(id))
    await output.flush()
    assert.deepEqual(await inRedis(), {ids, rpushes: 3})
  })

  it('Redis refusing in the middle of a stream (OOM): exactly the acknowledged events are in the list, each once; every resolved flush has all of its events there', async () => {
    const admin = redis.client()
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1])
    await admin.config('SET', 'maxmemory-policy', 'noeviction')
    await admin.config('SET', 'maxmemory', String(used + 400_000))
    // Batches of 2 lines, requests of 3 written two at a time: batches span requests, requests span batches.
    output = await RedisOutput.open(config(redis, {bulkMaxSize: 2, maxRetries: 0}), logger)
    const resolved: string[][] = []
    let rejected = 0
    for (let pair = 0; pair < 40 && rejected === 0; pair++) {
      const requests = [0, 1].map((request) => ['a', 'b', 'c'].map((letter) => `${pair}-${request}${letter}`))
      const flushes = requests.map((ids) => {
        for (const id of ids) output!.write(line(id, 20_000))
        return output!.flush()
      })
      // eslint-disable-next-line no-await-in-loop -- one pair of requests after the other, until Redis is full
      const results = await Promise.allSettled(flushes)
      for (const [index, result] of results.entries()) {
        if (result.status === 'fulfilled') resolved.push(requests[index])
        else rejected++
      }
    }

    assert.ok(resolved.length > 0 && rejected > 0, `the stream should have met the limit (${resolved.length} resolved, ${rejected} rejected)`)
    const {ids} = await inRedis()
    assert.equal(new Set(ids).size, ids.length, 'an event is in the list twice')
    assert.equal(ids.length, output.stats().published, 'the list holds exactly the acknowledged events')
    for (const request of resolved) for (const id of request) assert.ok(ids.includes(id), `${id}: its flush resolved, but it is not in the list`)
    // Room again: what comes next lands, and nothing acknowledged before is sent again.
    await admin.config('SET', 'maxmemory', '0')
    admin.disconnect()
    let landed = false
    for (let attempt = 0; attempt < 50 && !landed; attempt++) {
      output.write(line(`after${attempt}`))
      // eslint-disable-next-line no-await-in-loop -- until the host has reconnected after its backoff
      landed = await output.flush().then(
        () => true,
        () => false,
      )
    }

    assert.ok(landed)
    const after = (await inRedis()).ids
    assert.deepEqual(after.slice(0, ids.length), ids, 'the acknowledged events were sent again')
    assert.equal(new Set(after).size, after.length)
  })
})
