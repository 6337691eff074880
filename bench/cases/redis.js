/**
 * The Redis output against the file output (issue 15): `apm-server run` writing each event to a Redis
 * list on this machine (a redis-server started for the group, no persistence: the server is measured,
 * not Redis's disk) against the same server writing its output file, under the same load: events/s
 * with 10 connections (target ≥ 0.7x), and each request's latency at the median and p99 with one
 * connection, where what the Redis round trip adds is not hidden by queueing.
 */
import {spawn} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import zlib from 'node:zlib'

import autocannon from 'autocannon'
import {Redis} from 'ioredis'

import {cliEnv, keyName} from '../lib/fixtures.js'
import {cli} from '../lib/proc.js'
import {intakeBody, post, startServer} from '../lib/servers.js'

const EVENTS_PER_REQUEST = 100
const CONNECTIONS = 10
const WARMUP_SECONDS = 2
const REDIS_SERVER = '/usr/bin/redis-server'

async function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** A redis-server on a free port in `dir`; resolves once it accepts connections. */
async function startRedis(dir) {
  const port = await freePort()
  mkdirSync(dir, {recursive: true})
  writeFileSync(path.join(dir, 'redis.conf'), `bind 127.0.0.1\nport ${port}\ndir ${dir}\nsave ""\nappendonly no\n`)
  const child = spawn(REDIS_SERVER, [path.join(dir, 'redis.conf')], {stdio: ['ignore', 'pipe', 'pipe']})
  let output = ''
  await new Promise((resolve, reject) => {
    child.on('error', reject)
    child.stdout.on('data', (chunk) => {
      output += chunk
      if (output.includes('Ready to accept connections')) resolve()
    })
    child.on('exit', () => reject(new Error(`redis-server exited: ${output.slice(-300)}`)))
  })
  const client = new Redis({host: '127.0.0.1', port})
  return {
    clear: () => client.del('apm-server'),
    length: () => client.llen('apm-server'),
    port,
    async stop() {
      client.disconnect()
      child.kill('SIGKILL')
    },
  }
}

function config(home, name, output) {
  const file = path.join(home, `${name}.yml`)
  writeFileSync(file, ['apm-server:', '  host: "127.0.0.1:0"', `  auth.secret_token: "\${${keyName(1)}}"`, ...output, ''].join('\n'))
  return cli(['run', '-c', file], {cwd: home, env: cliEnv()})
}

/** The redis group, for the server fixtures of cases/server.js. */
export function redisGroup({home, token}, runs, scale) {
  const duration = scale < 1 ? 2 : 5
  const body = zlib.gzipSync(intakeBody(EVENTS_PER_REQUEST))
  const headers = {Authorization: `Bearer ${token}`, 'Content-Encoding': 'gzip', 'Content-Type': 'application/x-ndjson'}
  const specs = {}
  let redis
  const load = async (server, connections, seconds) => {
    const result = await autocannon({body, connections, duration: seconds, headers, method: 'POST', url: new URL('/intake/v2/events', server.url).href})
    if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) throw new Error(`${result.non2xx} non-2xx answers, ${result.errors} errors, ${result.timeouts} timeouts`)
    return result
  }

  const series = (id, label) => ({
    id,
    label,
    async measure() {
      const server = await startServer(specs[id])
      try {
        const answer = await post(new URL('/intake/v2/events?verbose', server.url), body, headers)
        if (answer.status !== 202) throw new Error(`intake check against ${id}: ${answer.status} ${answer.body.slice(0, 200)}`)
        await load(server, CONNECTIONS, WARMUP_SECONDS)
        const throughput = await load(server, CONNECTIONS, duration)
        const single = await load(server, 1, Math.max(2, duration / 2))
        return {extra: {[`${id}P50`]: single.latency.p50, [`${id}P99`]: single.latency.p99}, value: (throughput['2xx'] * EVENTS_PER_REQUEST) / throughput.duration}
      } finally {
        await server.stop()
        await redis.clear()
      }
    },
    unit: 'events/s',
  })
  return {
    async after() {
      await redis?.stop()
    },
    async before() {
      redis = await startRedis(path.join(home, 'redis'))
      specs.file = config(home, 'bench-file', ['output.file:', `  path: "${path.join(home, 'out-redis-bench')}"`])
      specs.redis = config(home, 'bench-redis', ['output.redis:', `  hosts: ["127.0.0.1:${redis.port}"]`])
      // The Redis series must really reach Redis: one request, then the list's length.
      const server = await startServer(specs.redis)
      await post(new URL('/intake/v2/events', server.url), body, headers)
      await server.stop()
      if ((await redis.length()) !== EVENTS_PER_REQUEST) throw new Error('the Redis output did not put the events in the list')
      await redis.clear()
    },
    comparisons: [
      {base: 'file', case: 'redis', target: {op: '>=', ratio: 0.7}},
      {base: 'fileP50', case: 'redisP50'},
      {base: 'fileP99', case: 'redisP99'},
    ],
    derived: [
      {from: (round) => round.redisP50 - round.fileP50, id: 'addedP50', label: 'latency Redis adds per request, median (1 connection)', unit: 'ms'},
      {from: (round) => round.redisP99 - round.fileP99, id: 'addedP99', label: 'latency Redis adds per request, p99 (1 connection)', unit: 'ms'},
    ],
    extra: [
      {id: 'fileP50', label: 'latency, file output, median (1 connection)', unit: 'ms'},
      {id: 'fileP99', label: 'latency, file output, p99 (1 connection)', unit: 'ms'},
      {id: 'redisP50', label: 'latency, Redis output, median (1 connection)', unit: 'ms'},
      {id: 'redisP99', label: 'latency, Redis output, p99 (1 connection)', unit: 'ms'},
    ],
    id: 'redis',
    note: `\`apm-server run\` with Bearer auth, once with output.file, once with output.redis to a redis-server on this machine (started for the group; no persistence, the list emptied after each measurement), each started afresh per measurement, checked with one request, warmed up ${WARMUP_SECONDS} s, then autocannon with ${CONNECTIONS} connections for ${duration} s (events/s: 2xx x ${EVENTS_PER_REQUEST} / duration), then 1 connection for ${Math.max(2, duration / 2)} s (latency: autocannon's median and p99). Each request is gzip ndjson of 1 metadata + ${EVENTS_PER_REQUEST} events; with Redis it is answered 202 only after Redis acknowledged the RPUSH of its events.`,
    runs,
    series: [series('file', '`apm-server run`, output.file'), series('redis', '`apm-server run`, output.redis (local redis-server)')],
    title: 'Redis output vs file output: events/s and added latency',
    warmup: 0,
  }
}
