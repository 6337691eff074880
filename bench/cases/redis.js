/**
 * The Redis output against the file output (issue 15): `apm-server run` writing each event to a Redis
 * list on this machine (a redis-server started for the group, no persistence: the server is measured,
 * not Redis's disk) against the same server writing its output file, under the same load: events/s
 * with 10 connections (target ≥ 0.7x), and each request's latency at the median and p99 with one
 * connection, where what the Redis round trip adds is not hidden by queueing. The latency is timed
 * here, request after request on one kept-alive connection, in microseconds: autocannon's histogram
 * counts whole milliseconds, and a request of 100 events takes less than one. With --baseline, the
 * baseline checkout's `apm-server run` with output.redis is measured in the same rounds.
 */
import {spawn} from 'node:child_process'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import zlib from 'node:zlib'

import http from 'node:http'

import autocannon from 'autocannon'
import {Redis} from 'ioredis'

import {cliEnv, keyName} from '../lib/fixtures.js'
import {cli, NODE} from '../lib/proc.js'
import {intakeBody, post, startServer} from '../lib/servers.js'
import {quantile} from '../lib/stats.js'

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
    pid: child.pid,
    port,
    async stop() {
      client.disconnect()
      child.kill('SIGKILL')
    },
  }
}

function config(home, name, output, checkout) {
  const file = path.join(home, `${name}.yml`)
  writeFileSync(file, ['apm-server:', '  host: "127.0.0.1:0"', `  auth.secret_token: "\${${keyName(1)}}"`, ...output, ''].join('\n'))
  if (checkout) return {args: [path.join(checkout, 'bin', 'run.js'), 'run', '-c', file], cmd: NODE, cwd: home, env: cliEnv()}
  return cli(['run', '-c', file], {cwd: home, env: cliEnv()})
}

/** User + system CPU time of a process so far, in µs (USER_HZ is 100 on every Linux Node supports). */
function cpuMicros(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

/** Each request's latency, in ms: one request after another on one kept-alive connection for `seconds`. */
async function latencies(url, body, headers, seconds) {
  const agent = new http.Agent({keepAlive: true, maxSockets: 1})
  const options = {agent, headers: {...headers, 'Content-Length': body.length}, method: 'POST'}
  const samples = []
  const end = Date.now() + seconds * 1000
  try {
    while (Date.now() < end) {
      const began = process.hrtime.bigint()
      // eslint-disable-next-line no-await-in-loop -- one request at a time, as the latency is of one
      const status = await new Promise((resolve, reject) => {
        const request = http.request(url, options, (response) => {
          response.resume()
          response.on('end', () => resolve(response.statusCode))
        })
        request.on('error', reject)
        request.end(body)
      })
      if (status !== 202) throw new Error(`latency: answered ${status}`)
      samples.push(Number(process.hrtime.bigint() - began) / 1e6)
    }
  } finally {
    agent.destroy()
  }

  return {p50: quantile(samples, 0.5), p99: quantile(samples, 0.99)}
}

/** The redis group, for the server fixtures of cases/server.js. */
export function redisGroup({home, token}, runs, scale, baseline) {
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
        const cpuBefore = {redis: cpuMicros(redis.pid), server: cpuMicros(server.pid)}
        const throughput = await load(server, CONNECTIONS, duration)
        const events = throughput['2xx'] * EVENTS_PER_REQUEST
        const cpu = {redis: (cpuMicros(redis.pid) - cpuBefore.redis) / events, server: (cpuMicros(server.pid) - cpuBefore.server) / events}
        const single = await latencies(new URL('/intake/v2/events', server.url), body, headers, Math.max(2, duration / 2))
        return {
          extra: {[`${id}Cpu`]: cpu.server, [`${id}P50`]: single.p50, [`${id}P99`]: single.p99, ...(id === 'file' ? {} : {[`${id}RedisCpu`]: cpu.redis})},
          value: events / throughput.duration,
        }
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
      if (baseline) specs.baseline = config(home, 'bench-redis', ['output.redis:', `  hosts: ["127.0.0.1:${redis.port}"]`], baseline)
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
      {base: 'fileCpu', case: 'redisCpu'},
      ...(baseline
        ? [
            {base: 'baseline', case: 'redis'},
            {base: 'baselineCpu', case: 'redisCpu'},
            {base: 'baselineRedisCpu', case: 'redisRedisCpu'},
            {base: 'baselineP50', case: 'redisP50'},
            {base: 'baselineP99', case: 'redisP99'},
          ]
        : []),
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
      {id: 'fileCpu', label: 'server CPU per event, file output (10 connections)', unit: 'µs'},
      {id: 'redisCpu', label: 'server CPU per event, Redis output (10 connections)', unit: 'µs'},
      {id: 'redisRedisCpu', label: 'redis-server CPU per event, Redis output (10 connections)', unit: 'µs'},
      ...(baseline
        ? [
            {id: 'baselineCpu', label: `server CPU per event, baseline (${baseline}) Redis output`, unit: 'µs'},
            {id: 'baselineRedisCpu', label: `redis-server CPU per event, baseline (${baseline}) Redis output`, unit: 'µs'},
            {id: 'baselineP50', label: `latency, baseline (${baseline}) Redis output, median (1 connection)`, unit: 'ms'},
            {id: 'baselineP99', label: `latency, baseline (${baseline}) Redis output, p99 (1 connection)`, unit: 'ms'},
          ]
        : []),
    ],
    id: 'redis',
    note: `\`apm-server run\` with Bearer auth, once with output.file, once with output.redis to a redis-server on this machine (started for the group; no persistence, the list emptied after each measurement), each started afresh per measurement, checked with one request, warmed up ${WARMUP_SECONDS} s, then autocannon with ${CONNECTIONS} connections for ${duration} s (events/s: 2xx x ${EVENTS_PER_REQUEST} / duration; CPU per event: user + system time of the server and of redis-server over those seconds, from /proc, per event answered), then one request after another on 1 kept-alive connection for ${Math.max(2, duration / 2)} s (latency: each request timed in µs, median and p99). Each request is gzip ndjson of 1 metadata + ${EVENTS_PER_REQUEST} events; with Redis it is answered 202 only after Redis acknowledged the RPUSH of its events.`,
    runs,
    series: [
      series('file', '`apm-server run`, output.file'),
      series('redis', '`apm-server run`, output.redis (local redis-server)'),
      ...(baseline ? [series('baseline', `baseline \`apm-server run\` (${baseline}), output.redis`)] : []),
    ],
    title: 'Redis output vs file output: events/s and added latency',
    warmup: 0,
  }
}
