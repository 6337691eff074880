/**
 * The Redis output over connections that break (a real redis-server, test/helpers/redis.ts): a
 * connection that is cut after a few KiB every time (a proxy, a load balancer) still gets every event
 * through, in pieces; a batch sent while the connection is closing is sent again, not given up.
 */
import assert from 'node:assert/strict'
import net from 'node:net'

import type {RedisOutputConfig} from '../../../src/server/config/server-config.js'
import {createLogger} from '../../../src/server/logger.js'
import {RedisOutput} from '../../../src/server/outputs/redis.js'
import {RedisLink} from '../../../src/server/outputs/redis-link.js'
import {RedisInstance, redisOutputConfig, startRedis, stopAllRedis} from '../../helpers/redis.js'

const PASSWORD = 'redis-Pa55-word'
const HEAD = Buffer.from('{"metadata":{"service":{"agent":{"name":"nodejs","version":"4.18.0"},"name":"svc"}},')

function config(port: number, overrides: Partial<RedisOutputConfig> = {}): RedisOutputConfig {
  return redisOutputConfig(port, PASSWORD, overrides)
}

const line = (id: string) => [HEAD, Buffer.from(`"transaction":{"id":"${id}","name":"${'x'.repeat(900)}"}}`)]

/**
 * A TCP server on a free loopback port; `track` registers a socket (errors ignored) that close() ends
 * with the server.
 */
async function trackingServer(onConnection: (socket: net.Socket, track: (socket: net.Socket) => void) => void, options: net.ServerOpts = {}): Promise<{port: number; close: () => Promise<void>}> {
  const sockets = new Set<net.Socket>()
  const track = (socket: net.Socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  }

  const server = net.createServer(options, (socket) => onConnection(socket, track))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
    port: (server.address() as net.AddressInfo).port,
  }
}

/**
 * A proxy to `port` that closes each connection once `budget` bytes went through it (both ways), or
 * with `rpush` set, as soon as the client sends an RPUSH (a link that carries none).
 */
async function cuttingProxy(port: number, budget: number, rpush = false): Promise<{port: number; connections: () => number; close: () => Promise<void>}> {
  let connections = 0
  const server = await trackingServer((client, track) => {
    connections++
    const upstream = net.connect(port, '127.0.0.1')
    track(client)
    track(upstream)

    let left = budget
    const pass = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk: Buffer) => {
        left -= rpush && from === client && chunk.includes('RPUSH') ? Infinity : chunk.length
        to.write(left <= 0 ? chunk.subarray(0, chunk.length + left) : chunk)
        if (left <= 0) {
          client.destroy()
          upstream.destroy()
        }
      })
    pass(client, upstream)
    pass(upstream, client)
  })
  return {...server, connections: () => connections}
}

/**
 * A proxy to `port` that stops forwarding what the client sends from the first RPUSH holding `marker`
 * on (a Redis that stalls, a link that black-holes): everything before it goes through and is answered.
 */
async function stallingProxy(port: number, marker: string): Promise<{port: number; close: () => Promise<void>}> {
  return trackingServer((client, track) => {
    const upstream = net.connect(port, '127.0.0.1')
    track(client)
    track(upstream)

    let stalled = false
    client.on('data', (chunk: Buffer) => {
      if (stalled) return
      const at = chunk.indexOf(marker)
      if (at !== -1) {
        stalled = true
        chunk = chunk.subarray(0, chunk.lastIndexOf('*3\r\n$5\r\nRPUSH', at))
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => client.write(chunk))
  })
}

/**
 * A "Redis" that answers INFO and every other command with `:1` until `turn()` is called; from then
 * on, it answers the next command with a bulk string that never ends.
 */
async function turningRedis(): Promise<{port: number; turn: () => void; close: () => Promise<void>}> {
  let turned = false
  // allowHalfOpen: the client's FIN does not stop it (a hostile server streams on until it is reset).
  const server = await trackingServer(
    (socket, track) => {
      track(socket)
      let pending = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk])
        // Whole commands: *<n>, then n bulk strings.
        for (;;) {
          const args: string[] = []
          let at = pending.indexOf('\r\n')
          if (pending[0] !== 0x2a || at === -1) return
          const count = Number(pending.subarray(1, at).toString())
          at += 2
          for (let index = 0; index < count; index++) {
            const end = pending.indexOf('\r\n', at)
            if (end === -1) return
            const length = Number(pending.subarray(at + 1, end).toString())
            if (pending.length < end + 2 + length + 2) return
            args.push(pending.subarray(end + 2, end + 2 + length).toString())
            at = end + 2 + length + 2
          }

          pending = pending.subarray(at)
          if (!turned) {
            socket.write(args[0].toUpperCase() === 'INFO' ? '$11\r\nloading:0\r\n\r\n' : ':1\r\n')
            continue
          }

          socket.write('$2000000000\r\n')
          const chunk64 = Buffer.alloc(64 * 1024, 0x61)
          const pump = () => {
            while (!socket.destroyed && socket.write(chunk64));
          }
          socket.on('drain', pump)
          pump()
          return
        }
      })
    },
    {allowHalfOpen: true},
  )
  return {
    ...server,
    turn: () => {
      turned = true
    },
  }
}

describe('outputs/redis: connections that break (real redis-server)', function () {
  this.timeout(60_000)
  let output: RedisOutput | undefined
  let redis: RedisInstance
  const logger = createLogger({destination: {write: () => {}}, level: 'error'})
  beforeEach(async () => {
    redis = await startRedis({password: PASSWORD})
  })
  /** proxies of throughCuts, closed after the output */
  const proxies: Array<{close: () => Promise<void>}> = []
  afterEach(async () => {
    await output?.close(Date.now())
    output = undefined
    for (const proxy of proxies.splice(0)) await proxy.close() // eslint-disable-line no-await-in-loop
    await stopAllRedis()
  })

  async function idsInRedis(): Promise<Set<string>> {
    const client = redis.client()
    try {
      return new Set((await client.lrange('apm-server', 0, -1)).map((element) => (JSON.parse(element) as {transaction: {id: string}}).transaction.id))
    } finally {
      client.disconnect()
    }
  }

  /**
   * Writes `count` events (ids `<prefix>-<n>`) through a proxy that cuts every connection after 64 KiB,
   * flushes, and returns the ids not in the list, with the proxy; the output stays open in `output`
   * for the test's own checks (afterEach closes it, then the proxy).
   */
  async function throughCuts(count: number, prefix: string, overrides: Partial<RedisOutputConfig> = {}): Promise<{missing: string[]; proxy: Awaited<ReturnType<typeof cuttingProxy>>}> {
    const proxy = await cuttingProxy(redis.port, 64 * 1024)
    proxies.push(proxy)
    output = await RedisOutput.open(config(proxy.port, overrides), logger)
    const ids = Array.from({length: count}, (_, index) => `${prefix}-${index}`)
    for (const id of ids) output.write(line(id))
    await output.flush()
    const stored = await idsInRedis()
    return {missing: ids.filter((id) => !stored.has(id)), proxy}
  }

  it('a link cut after 64 KiB every time: a flush of a 300 KiB batch resolves, every event in the list (max_retries 3)', async () => {
    const {missing, proxy} = await throughCuts(300, 'cut')
    assert.deepEqual(missing, [])
    assert.ok(proxy.connections() > 2, 'the proxy did cut connections')
  })

  it('a link cut after 64 KiB every time, 8 batches of 40 KiB in flight: every flush resolves, every event in the list (max_retries 2)', async () => {
    const {missing} = await throughCuts(320, 'many', {bulkMaxSize: 40, maxRetries: 2})
    assert.deepEqual(missing, [])
  })

  it('a link cut after 64 KiB every time: three 200 KiB batches (bulk_max_size 200) all get through, none given up behind the first (max_retries 3)', async () => {
    const {missing} = await throughCuts(600, 'many', {bulkMaxSize: 200})
    assert.deepEqual(missing, [])
    assert.equal(output!.stats().failed, 0)
  })

  it('a link cut after 64 KiB every time: retried counts the events of the sends that failed, not the parts of a batch waiting their turn', async () => {
    const {missing, proxy} = await throughCuts(300, 'count')
    assert.deepEqual(missing, [])
    const stats = output!.stats()
    const host = stats.hosts![`127.0.0.1:${proxy.port}`]
    // Every event sent and not acknowledged was in a failed send and sent again (none was given up).
    assert.equal(stats.failed, 0)
    assert.equal(stats.published, 300)
    assert.equal(stats.retried, host.published - host.acknowledged)
    assert.equal(host.acknowledged, 300)
    // The host sent those events again: its own retried says so too (halves and rests included).
    assert.equal(host.retried, stats.retried)
  })

  it('a link cut after 64 KiB every time: one 1 MiB batch (bulk_max_size 2048) gets through, halved as often as it takes (max_retries 3)', async () => {
    const {missing} = await throughCuts(1000, 'big')
    assert.deepEqual(missing, [])
  })

  it('a link that cuts every RPUSH: a 1000-event batch is given up after its halvings and max_retries, the flush rejects', async () => {
    const proxy = await cuttingProxy(redis.port, 64 * 1024, true)
    try {
      output = await RedisOutput.open(config(proxy.port), logger)
      for (let index = 0; index < 1000; index++) output.write(line(`dead-${index}`))
      await assert.rejects(output.flush(), /Redis did not acknowledge 1000 events after 4 sends/)
      // log2(1000) halvings, then max_retries 3 + 1 sends of one event: about 14 connections, not endless.
      assert.ok(proxy.connections() <= 16, `${proxy.connections()} connections`)
      assert.equal(output.stats().failed, 1000)
    } finally {
      await output?.close(Date.now())
      output = undefined
      await proxy.close()
    }
  })

  it('a batch sent while the connection is closing (no longer writable, not yet closed) is sent again on the next one, not given up (max_retries 0)', async () => {
    output = await RedisOutput.open(config(redis.port, {maxRetries: 0}), logger)
    // The moment a peer's close makes: the socket's writable side ended, ioredis not told yet.
    const host = (output as unknown as {hosts: Array<{link: {client: {stream: net.Socket}}}>}).hosts[0]
    host.link.client.stream.end()
    output.write(line('closing-1'))
    await output.flush()
    assert.deepEqual([...(await idsInRedis())], ['closing-1'])
  })
  it('a flush waits for the events written before it, not for a batch written after it that Redis does not answer', async () => {
    const proxy = await stallingProxy(redis.port, 'stalled-')
    try {
      output = await RedisOutput.open(config(proxy.port, {timeoutMs: 2000}), logger)
      output.write(line('first-1'))
      const flushed = output.flush()
      // Another request's event, written in the same tick, goes in the next batch, to a Redis that stalls.
      output.write(line('stalled-2'))
      await flushed
      assert.deepEqual([...(await idsInRedis())], ['first-1'])
    } finally {
      await output?.close(Date.now())
      output = undefined
      await proxy.close()
    }
  })
  it('a stop while a host waits out a long backoff: Redis is back, the queued events are sent before the shutdown deadline, not dropped at it', async () => {
    output = await RedisOutput.open(config(redis.port, {backoff: {initMs: 60_000, maxMs: 60_000}}), logger)
    await redis.kill()
    output.write(line('queued-1'))
    const flushed = output.flush().catch(() => {})
    // The connection is lost: the host reconnects in 60 s (backoff.max), longer than the shutdown timeout.
    await new Promise((resolve) => setTimeout(resolve, 200))
    await redis.start()
    await output.close(Date.now() + 3000)
    await flushed
    assert.deepEqual([...(await idsInRedis())], ['queued-1'])
    assert.equal(output.stats().failed, 0)
  })
  it('datatype channel, a link cut after 64 KiB every time: a flush of 300 KiB of PUBLISHes resolves, every event published (max_retries 3)', async () => {
    const proxy = await cuttingProxy(redis.port, 64 * 1024)
    const subscriber = redis.client()
    try {
      const received = new Set<string>()
      await subscriber.subscribe('apm-server')
      subscriber.on('message', (_channel: string, message: string) => received.add((JSON.parse(message) as {transaction: {id: string}}).transaction.id))
      output = await RedisOutput.open(config(proxy.port, {datatype: 'channel'}), logger)
      const ids = Array.from({length: 300}, (_, index) => `pub-${index}`)
      for (const id of ids) output.write(line(id))
      await output.flush()
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.deepEqual(
        ids.filter((id) => !received.has(id)),
        [],
      )
      assert.equal(output.stats().failed, 0)
    } finally {
      subscriber.disconnect()
      await output?.close(Date.now())
      output = undefined
      await proxy.close()
    }
  })
  it('a "Redis" that answers 10,000 commands, then one reply that never ends: the connection is cut within the reply bound, not after what the earlier replies left unused', async () => {
    const fake = await turningRedis()
    try {
      const link = await RedisLink.open({db: 0, host: '127.0.0.1', port: fake.port, timeoutMs: 10_000})
      const command = Buffer.from('*3\r\n$7\r\nPUBLISH\r\n$1\r\nk\r\n$1\r\nv\r\n')
      for (let index = 0; index < 100; index++) {
        // eslint-disable-next-line no-await-in-loop -- one pipeline after the other, as a long-lived connection sends them
        assert.deepEqual(await link.send('publish', Array.from({length: 100}, () => command)), Array.from({length: 100}, () => undefined))
      }

      const received = () => (link as unknown as {received: number}).received
      const before = received()
      fake.turn()
      const [result] = await link.send('publish', [command])
      assert.match(result!.message, /is it Redis\?/)
      await new Promise((resolve) => setTimeout(resolve, 300))
      // What the endless reply got into the client before the cut: the reply guard's 256 KiB (and the
      // chunk that crossed it), not 10,000 commands' worth (~600 KiB) of allowance the short replies left.
      const taken = received() - before
      assert.ok(taken <= 256 * 1024 + 128 * 1024, `${taken} bytes of the endless reply read before the connection was cut`)
    } finally {
      await fake.close()
    }
  })
})
