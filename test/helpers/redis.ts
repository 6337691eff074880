/**
 * Real redis-server instances for tests (Debian's redis-server, installed by .ci/run): each on a free
 * loopback port in its own temp directory, configured through a redis.conf of mode 0600 (a password
 * never in argv), never the system service. They can be killed with SIGKILL and started again on the
 * same port and directory (with appendonly, the acknowledged data survives), and read through ioredis.
 */
import {ChildProcess, execFileSync, spawn} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'

import {Redis} from 'ioredis'

import type {RedisOutputConfig} from '../../src/server/config/server-config.js'

import {makeTempDir} from './cli.js'

export const REDIS_SERVER = '/usr/bin/redis-server'

export interface RedisOptions {
  /** requirepass */
  password?: string
  /** ACL lines, e.g. "user apm on >pw ~apm* +rpush +publish +ping +info +select +hello +auth" */
  acl?: string[]
  /** appendonly yes, appendfsync always: what was acknowledged survives a kill -9 */
  durable?: boolean
  /** serve TLS only (port 0 for plain), with this certificate and key (PEM files) */
  tls?: {cert: string; key: string}
}

export interface RedisInstance {
  port: number
  dir: string
  /** running now */
  readonly up: boolean
  /** the redis-server process (for SIGSTOP/SIGCONT) */
  readonly pid: number
  /** a client authenticated as the default user with `password` (for checks; the test closes it) */
  client(password?: string): Redis
  kill(): Promise<void>
  /** starts again on the same port and directory */
  start(): Promise<void>
  stop(): Promise<void>
}

const started = new Set<RedisInstance>()

/** SIGKILLs every instance still running and removes their directories (for after/afterEach). */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...started].map((instance) => instance.stop()))
  started.clear()
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Makes a self-signed certificate for 127.0.0.1 and localhost in `dir`; returns the paths (cert is also the CA). */
export function makeRedisCertificate(dir: string): {cert: string; key: string} {
  const cert = path.join(dir, 'redis-cert.pem')
  const key = path.join(dir, 'redis-key.pem')
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    {stdio: 'ignore'},
  )
  return {cert, key}
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisInstance> {
  const tmp = makeTempDir('apm-redis-')
  const port = await freePort()
  const conf = [
    'bind 127.0.0.1',
    `dir ${tmp.dir}`,
    'save ""',
    options.durable ? 'appendonly yes\nappendfsync always' : 'appendonly no',
    ...(options.tls ? ['port 0', `tls-port ${port}`, `tls-cert-file ${options.tls.cert}`, `tls-key-file ${options.tls.key}`, `tls-ca-cert-file ${options.tls.cert}`, 'tls-auth-clients no'] : [`port ${port}`]),
    ...(options.password ? [`requirepass ${options.password}`] : []),
    ...(options.acl ?? []),
    '',
  ].join('\n')
  writeFileSync(path.join(tmp.dir, 'redis.conf'), conf, {mode: 0o600})
  let child: ChildProcess | undefined
  const instance: RedisInstance = {
    client: (password = options.password) =>
      new Redis({host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 1, port, retryStrategy: () => null, ...(password ? {password} : {}), ...(options.tls ? {tls: {rejectUnauthorized: false}} : {})}),
    dir: tmp.dir,
    async kill() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((resolve) => child!.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
    },
    port,
    async start() {
      child = spawn(REDIS_SERVER, [path.join(tmp.dir, 'redis.conf')], {cwd: tmp.dir, stdio: ['ignore', 'pipe', 'pipe']})
      let output = ''
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
      const deadline = Date.now() + 20_000
      while (!output.includes('Ready to accept connections')) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start (install it: apt-get install redis-server):\n${output}`)
        // eslint-disable-next-line no-await-in-loop -- polling its log
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    async stop() {
      await instance.kill()
      tmp.cleanup()
      started.delete(instance)
    },
    get pid() {
      return child!.pid!
    },
    get up() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
  }
  started.add(instance)
  await instance.start()
  return instance
}

/**
 * An output.redis config for one host on 127.0.0.1:`port` with `password`, as the config loader makes
 * it (list datatype, default batch size and retries, no TLS), with `overrides` on top.
 */
export function redisOutputConfig(port: number, password: string, overrides: Partial<RedisOutputConfig> = {}): RedisOutputConfig {
  return {
    backoff: {initMs: 20, maxMs: 20},
    bulkMaxSize: 2048,
    datatype: 'list',
    db: 0,
    hosts: [{host: '127.0.0.1', label: `127.0.0.1:${port}`, port}],
    key: 'apm-server',
    loadbalance: true,
    maxRetries: 3,
    password,
    ssl: {certificateAuthorities: [], enabled: false, verificationMode: 'full'},
    timeoutMs: 10_000,
    ...overrides,
  }
}
