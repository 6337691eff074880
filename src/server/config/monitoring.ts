/**
 * The monitoring endpoint's settings, as Beats names them (libbeat/api): `http.enabled` (default false),
 * `http.host` (default localhost) and `http.port` (default 5066), read into {@link MonitoringConfig}.
 * A host is a name or an IP address, without a port or a scheme: Beats' unix:// and npipe:// sockets
 * are not supported. Whether http.host was set is kept: only then may the endpoint listen on an address
 * that is not a loopback one (../monitoring/endpoint.ts).
 */
import net from 'node:net'

import type {SettingReader} from './build.js'
import type {MonitoringConfig} from './server-config.js'

export const MONITORING_DEFAULTS = {enabled: false, host: 'localhost', port: 5066} as const

const HOST_NAME = /^(?=.{1,253}$)[a-z\d](?:[a-z\d_-]{0,61}[a-z\d])?(?:\.[a-z\d](?:[a-z\d_-]{0,61}[a-z\d])?)*\.?$/i

/** Why `host` cannot be http.host, or undefined when it can. */
export function monitoringHostProblem(host: string): string | undefined {
  if (/^(unix|npipe):\/\//.test(host)) return 'unix sockets and named pipes are not supported; give a host name or an IP address, e.g. localhost'
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  if (net.isIP(bare) !== 0 || HOST_NAME.test(bare)) return undefined
  if (/:\d+$/.test(host)) return 'must be a host name or an IP address without a port; set the port with http.port'
  return 'must be a host name or an IP address, e.g. localhost or 127.0.0.1'
}

/** http.*, or undefined when none of them is set (the endpoint is then off). */
export function readMonitoring(read: SettingReader): MonitoringConfig | undefined {
  if (!['http.enabled', 'http.host', 'http.port'].some((name) => read.raw(name) !== undefined || read.failed(name))) return undefined
  const enabled = read.bool('http.enabled', MONITORING_DEFAULTS.enabled)
  const port = read.int('http.port', MONITORING_DEFAULTS.port)
  const host = read.string('http.host')
  const problem = host === undefined ? undefined : monitoringHostProblem(host)
  if (problem) read.bad('http.host', problem)
  const hostSet = host !== undefined && problem === undefined
  return {enabled, host: hostSet ? host : MONITORING_DEFAULTS.host, hostSet, port}
}
