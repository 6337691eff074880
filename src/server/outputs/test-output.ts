/**
 * `apm-server test output`: reach the configured output the way the server will, step by step, and say
 * what worked, as Beats' `test output` does. For Redis, each host: parse host, dns lookup, dial up, TLS,
 * talk to server (authenticate, select the database, PING); the first failing step ends that host's
 * checks. For the file output: whether its directory can be written. Nothing is written to the output.
 * No message holds a credential (./redis-link.ts scrubs what Redis answers).
 */
import {constants, promises as fs} from 'node:fs'
import {lookup} from 'node:dns/promises'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'

import type {RedisOutputConfig, ServerConfig} from '../config/server-config.js'
import {hostCredentials, RedisLink, RedisLinkError} from './redis-link.js'
import {readTlsOptions} from './redis-tls.js'

export interface OutputTestStep {
  name: string
  status: 'error' | 'ok' | 'warn'
  /** what was found (addresses), or why it failed; '' when there is nothing to add */
  detail: string
}

export interface OutputTestResult {
  ok: boolean
  output: 'file' | 'redis'
  /** one per Redis host (its label, never its credentials), or the file output's directory */
  hosts: Array<{host: string; ok: boolean; steps: OutputTestStep[]}>
}

export async function testOutput(config: ServerConfig['output']): Promise<OutputTestResult> {
  if (!config.redis) {
    const steps = [await testDirectory(config.path)]
    const ok = steps.every((step) => step.status !== 'error')
    return {hosts: [{host: config.path, ok, steps}], ok, output: 'file'}
  }

  const {redis} = config
  const tlsByHost = readTlsOptions(redis)
  const hosts = await Promise.all(redis.hosts.map((host, index) => testRedisHost(redis, index, tlsByHost[index])))
  return {hosts, ok: hosts.every((host) => host.ok), output: 'redis'}
}

async function testDirectory(directory: string): Promise<OutputTestStep> {
  // The nearest directory that exists must be writable: the output creates the rest.
  for (let dir = directory; ; dir = path.dirname(dir)) {
    try {
      // eslint-disable-next-line no-await-in-loop -- up the tree until one exists
      await fs.access(dir, constants.W_OK | constants.X_OK)
      return {detail: dir === directory ? '' : `${dir} (the output creates the rest)`, name: 'writable directory', status: 'ok'}
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' || dir === path.dirname(dir)) return {detail: `${dir}: ${code}; check output.file.path and its permissions`, name: 'writable directory', status: 'error'}
    }
  }
}

async function testRedisHost(config: RedisOutputConfig, index: number, tlsOptions: tls.ConnectionOptions | undefined): Promise<OutputTestResult['hosts'][number]> {
  const host = config.hosts[index]
  const steps: OutputTestStep[] = [{detail: '', name: 'parse host', status: 'ok'}]
  const result = {host: host.label, ok: false, steps}
  const fail = (name: string, detail: string) => {
    steps.push({detail, name, status: 'error'})
    return result
  }

  let address: string
  try {
    const addresses = await lookup(host.host, {all: true})
    address = addresses[0].address
    steps.push({detail: '', name: 'dns lookup', status: 'ok'}, {detail: addresses.map((entry) => entry.address).join(', '), name: 'addresses', status: 'ok'})
  } catch (error) {
    return fail('dns lookup', `${(error as NodeJS.ErrnoException).code ?? 'failed'}; check the host name`)
  }

  const dialed = await dial(() => net.connect({host: address, port: host.port}), 'connect', config.timeoutMs)
  if (dialed) return fail('dial up', dialed)
  steps.push({detail: '', name: 'dial up', status: 'ok'})
  if (tlsOptions) {
    const failed = await dial(() => tls.connect({...tlsOptions, host: address, port: host.port}), 'secureConnect', config.timeoutMs)
    if (failed) return fail('TLS', `${failed}; check output.redis.ssl (certificate_authorities, verification_mode)`)
    steps.push({detail: '', name: 'TLS', status: 'ok'})
  } else {
    steps.push({detail: 'secure connection disabled', name: 'TLS', status: 'warn'})
  }

  try {
    const link = await RedisLink.open({
      db: config.db,
      host: host.host,
      port: host.port,
      timeoutMs: config.timeoutMs,
      ...hostCredentials(host, config),
      ...(tlsOptions === undefined ? {} : {tls: tlsOptions}),
    })
    link.close()
  } catch (error) {
    const reason = error instanceof RedisLinkError ? error.message : 'failed'
    return fail('talk to server', error instanceof RedisLinkError && error.kind === 'auth' ? `${reason}; check output.redis.password (and username)` : reason)
  }

  steps.push({detail: '', name: 'talk to server', status: 'ok'})
  result.ok = true
  return result
}

/** Opens a socket and closes it once `event` fired; the reason when it failed, or undefined. */
function dial(open: () => net.Socket, event: 'connect' | 'secureConnect', timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = open()
    const timer = setTimeout(() => done(`no answer within ${timeoutMs / 1000} s`), timeoutMs)
    const done = (reason?: string) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(reason)
    }

    socket.once(event, () => done())
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message.split('\n')[0]))
  })
}
