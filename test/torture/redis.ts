/**
 * Hostile Redis: `apm-server run` (the real CLI) with output.redis pointed at a "Redis" that accepts
 * connections and never answers, one that answers garbage (random bytes, and a bulk string that never
 * ends), and a proxy to a real redis-server that closes every connection after 16 KiB to 4 MiB. Agents send
 * large bodies concurrently throughout. The server must never crash, answer 503 `queue is full` (not
 * hang, not 500), keep its resident memory bounded, answer GET / all along, stop with exit 0 on SIGTERM,
 * and every event it answered 202 must be in the real Redis; the Redis password is never in its log.
 */
import {randomBytes} from 'node:crypto'
import net from 'node:net'

import {Redis} from 'ioredis'

import {startRedis, stopAllRedis} from '../helpers/redis.js'
import {CheckResult, cli, fail, newResult, sleep} from './lib.js'
import {launch, Launched, METADATA, request} from './server.js'

export interface RedisTortureOptions {
  scale: 'fast' | 'full'
}

const PASSWORD = 'torture-Redis-Pa55-word'
/** Resident memory the server may reach under any of these: its memory budget (128 MiB, the queue inside), the heap and the code. */
const MEMORY_BOUND_MIB = 400

function sizes(scale: RedisTortureOptions['scale']) {
  const full = scale === 'full'
  return {eventsPerBody: full ? 1000 : 800, seconds: full ? 20 : 3, senders: full ? 32 : 16}
}

interface Fake {
  port: number
  /** connections accepted so far */
  connections: number
  close(): Promise<void>
}

/** A TCP server on a free loopback port doing `onSocket` to each connection. */
async function fakeServer(onSocket: (socket: net.Socket) => void, allowHalfOpen = false): Promise<Fake> {
  const sockets = new Set<net.Socket>()
  const fake = {close: async () => {}, connections: 0, port: 0}
  const server = net.createServer({allowHalfOpen}, (socket) => {
    fake.connections++
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    onSocket(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  fake.port = (server.address() as net.AddressInfo).port
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resolve())
    })
  return fake
}

/** A proxy to `port` that closes each connection once `limit()` bytes went through (either way). */
function closingProxy(port: number, limit: () => number): Promise<Fake> {
  return fakeServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    upstream.on('error', () => client.destroy())
    let budget = limit()
    const pass = (from: net.Socket, to: net.Socket) =>
      from.on('data', (chunk: Buffer) => {
        budget -= chunk.length
        if (budget <= 0) {
          to.write(chunk.subarray(0, chunk.length + budget))
          client.destroy()
          upstream.destroy()
        } else {
          to.write(chunk)
        }
      })
    pass(client, upstream)
    pass(upstream, client)
    client.on('close', () => upstream.destroy())
  })
}

/**
 * Senders posting big bodies for `seconds`: the ids of every event answered 202, and the statuses. With
 * `untilAccepted`, they go on (up to five times as long) until one request was answered 202: whether
 * anything gets through is the question, not how soon on a loaded machine.
 */
async function load(server: Launched, size: ReturnType<typeof sizes>, prefix: string, untilAccepted = false): Promise<{accepted: Set<string>; statuses: Map<number, number>; rootFailures: number}> {
  const accepted = new Set<string>()
  const statuses = new Map<number, number>()
  const started = Date.now()
  const running = () => Date.now() < started + size.seconds * 1000 || (untilAccepted && accepted.size === 0 && Date.now() < started + 5 * size.seconds * 1000)
  let serial = 0
  let rootFailures = 0
  const filler = 'x'.repeat(800)
  const sender = async () => {
    while (running()) {
      // Bodies of half to all of eventsPerBody events (~0.9 KiB each): batches of many sizes.
      const ids = Array.from({length: Math.ceil(size.eventsPerBody * (0.5 + Math.random() / 2))}, () => `${prefix}${(serial++).toString(36)}`)
      const body = `${[METADATA, ...ids.map((id) => JSON.stringify({transaction: {id, name: filler}}))].join('\n')}\n`
      // eslint-disable-next-line no-await-in-loop -- one request after another per sender
      const reply = await request(server.url, {body, headers: {Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/x-ndjson'}, timeoutMs: 60_000}).catch(() => ({body: '', status: 0}))
      statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1)
      if (reply.status === 202) for (const id of ids) accepted.add(id)
    }
  }

  const root = async () => {
    while (running()) {
      // eslint-disable-next-line no-await-in-loop -- a probe a few times a second
      const reply = await request(server.url, {method: 'GET', path: '/', timeoutMs: 5000}).catch(() => ({status: 0}))
      if (reply.status !== 200) rootFailures++
      await sleep(200) // eslint-disable-line no-await-in-loop
    }
  }

  await Promise.all([...Array.from({length: size.senders}, sender), root()])
  return {accepted, rootFailures, statuses}
}

interface Scenario {
  name: string
  /** the host to point output.redis at; `real` is the redis-server behind it (to check what was acknowledged), if any */
  setUp: () => Promise<{host: number; close: () => Promise<void>; real?: number}>
}

function scenarios(): Scenario[] {
  return [
    {
      name: 'a "Redis" that accepts and never answers',
      setUp: async () => {
        const fake = await fakeServer((socket) => socket.resume())
        return {close: fake.close, host: fake.port}
      },
    },
    {
      name: 'a "Redis" that answers random bytes',
      setUp: async () => {
        const fake = await fakeServer((socket) => socket.on('data', (chunk: Buffer) => socket.write(randomBytes(chunk.length * 4))))
        return {close: fake.close, host: fake.port}
      },
    },
    {
      name: 'a "Redis" that answers one bulk string that never ends, deaf to the client\'s FIN',
      setUp: async () => {
        const chunk = Buffer.alloc(64 * 1024, 0x61)
        const fake = await fakeServer((socket) => {
          socket.once('data', () => {
            socket.write('$2000000000\r\n')
            const pump = () => {
              while (!socket.destroyed && socket.write(chunk));
            }
            socket.on('drain', pump)
            pump()
          })
          // Deaf to the client's FIN: it streams until the connection is reset.
        }, true)
        return {close: fake.close, host: fake.port}
      },
    },
    {
      name: 'a real Redis behind a proxy that closes every connection after 16 KiB to 4 MiB',
      setUp: async () => {
        const real = await startRedis({durable: false, password: PASSWORD})
        const proxy = await closingProxy(real.port, () => 16 * 1024 + Math.floor(Math.random() * 4 * 1024 * 1024))
        return {close: proxy.close, host: proxy.port, real: real.port}
      },
    },
  ]
}

export async function checkRedis(options: RedisTortureOptions): Promise<CheckResult> {
  const result = newResult()
  const size = sizes(options.scale)
  try {
    for (const scenario of scenarios()) {
      // eslint-disable-next-line no-await-in-loop -- one server at a time, memory measured each
      await runScenario(scenario, size, result)
    }
  } finally {
    await stopAllRedis()
  }

  return result
}

async function runScenario(scenario: Scenario, size: ReturnType<typeof sizes>, result: CheckResult): Promise<void> {
  const target = await scenario.setUp()
  const prepare = async (cwd: string) => {
    const added = await cli(['keystore', 'add', 'REDIS_PASSWORD', '--stdin'], {cwd, input: PASSWORD})
    if (added.code !== 0) throw new Error(added.stderr)
  }

  const extra = [`output.redis.hosts=["127.0.0.1:${target.host}"]`, 'output.redis.password=${REDIS_PASSWORD}', 'output.redis.timeout=1s', 'output.redis.backoff.init=100ms', 'output.redis.backoff.max=1s', 'apm-server.shutdown_timeout=2s']
  const server = await launch({extra: extra.flatMap((setting) => ['-E', setting]), prepare})
  try {
    const t0 = Date.now()
    const {accepted, rootFailures, statuses} = await load(server, size, `r${Math.random().toString(36).slice(2, 6)}-`, target.real !== undefined)
    const alive = server.child.exitCode === null
    const stopped = await server.stop()
    const missing = target.real === undefined ? [] : await missingFrom(target.real, accepted)
    const shown = [...statuses].map(([status, count]) => `${count}×${status}`).join(', ')
    if (!alive || stopped.code !== 0) fail(result, `redis: ${scenario.name}: the server exited (${server.child.exitCode}) or stopped with ${stopped.code}: ${server.logs().slice(-400)}`)
    if (![...statuses.keys()].every((status) => status === 202 || status === 503)) fail(result, `redis: ${scenario.name}: answers other than 202 and 503: ${shown}`)
    if (target.real === undefined && (statuses.get(503) ?? 0) === 0) fail(result, `redis: ${scenario.name}: no 503 from a Redis that never acknowledges: ${shown}`)
    if (target.real !== undefined && accepted.size === 0) fail(result, `redis: ${scenario.name}: nothing got through the connections that do stay up a while: ${shown}`)
    if (rootFailures > 0) fail(result, `redis: ${scenario.name}: GET / failed ${rootFailures} times`)
    if (missing.length > 0) fail(result, `redis: ${scenario.name}: ${missing.length} of ${accepted.size} events answered 202 are not in Redis (${missing.slice(0, 3).join(', ')})`)
    if (server.peak > MEMORY_BOUND_MIB) fail(result, `redis: ${scenario.name}: peak RSS ${server.peak} MiB, over ${MEMORY_BOUND_MIB} MiB`)
    if (server.logs().includes(PASSWORD)) fail(result, `redis: ${scenario.name}: the Redis password is in the server's log`)
    result.figures.push({
      check: 'redis',
      figure: scenario.name,
      value: `${size.senders} senders × ${size.eventsPerBody}-event bodies for ${size.seconds} s: ${shown}; ${accepted.size} events answered 202${target.real === undefined ? '' : `, ${accepted.size - missing.length} of them in Redis`}; GET / ok throughout: ${rootFailures === 0 ? 'yes' : 'NO'}; RSS ${server.baseline} → peak ${server.peak} MiB; SIGTERM → exit ${stopped.code} in ${stopped.ms} ms (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    })
  } finally {
    await server.stop()
    server.home.cleanup()
    await target.close()
  }
}

async function missingFrom(port: number, accepted: Set<string>): Promise<string[]> {
  const client = new Redis({host: '127.0.0.1', password: PASSWORD, port})
  try {
    const stored = new Set((await client.lrange('apm-server', 0, -1)).map((item) => (JSON.parse(item) as {transaction: {id: string}}).transaction.id))
    return [...accepted].filter((id) => !stored.has(id))
  } finally {
    client.disconnect()
  }
}
