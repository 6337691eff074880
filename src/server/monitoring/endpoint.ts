/**
 * The local monitoring endpoint (Beats' libbeat/api, `http.enabled`): a plain-HTTP listener apart from
 * the intake, answering `GET /` (./documents.ts beatInfo) and `GET /stats` (statsDocument), `?pretty`
 * indented. It has no authentication, as in Beats, so it shows counts and names only, never a setting's
 * value, a token, a password or a header, and it listens on a loopback address unless `http.host` was
 * set: the default `localhost` is resolved first and refused when it names any other address (a hosts
 * file that maps it elsewhere), and the listener binds the address checked, not a second lookup of it.
 *
 * Requests are bounded like the intake's: no body is read (a request with one gets 405 or 404 and its
 * connection closed), headers and whole requests time out, and connections are capped.
 */
import {promises as dns} from 'node:dns'
import http from 'node:http'
import net, {AddressInfo} from 'node:net'

import {KeystoreError} from '../../core/errors.js'
import type {MonitoringConfig} from '../config/server-config.js'
import type {Logger} from '../logger.js'

/** Open connections at once: a monitoring tool needs one or two. */
export const MONITORING_MAX_CONNECTIONS = 32
/** How long a request's headers (and the whole request) may take to arrive. */
const REQUEST_TIMEOUT_MS = 10_000

export interface MonitoringEndpoint {
  /** where it listens, e.g. http://127.0.0.1:5066 */
  url: string
  close(): Promise<void>
}

const LOOPBACK = new net.BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6')

/** Whether `address` (an IP address) is a loopback address. */
export function isLoopback(address: string): boolean {
  const family = net.isIP(address)
  return family !== 0 && LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6')
}

/** The address to bind `config.host` to; ECONFIG when it cannot be resolved, or names a non-loopback address by default. */
export async function monitoringAddress(config: MonitoringConfig, lookup = dns.lookup): Promise<string> {
  const host = config.host.startsWith('[') && config.host.endsWith(']') ? config.host.slice(1, -1) : config.host
  let addresses: Array<{address: string; family: number}>
  try {
    addresses = net.isIP(host) === 0 ? await lookup(host, {all: true}) : [{address: host, family: net.isIP(host)}]
  } catch (error) {
    throw new KeystoreError('ECONFIG', `cannot resolve http.host "${config.host}" for the monitoring endpoint: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}; set http.host to a name that resolves, or an IP address`)
  }

  const outside = addresses.filter(({address}) => !isLoopback(address))
  if (!config.hostSet && (outside.length > 0 || addresses.length === 0)) {
    const shown = outside.map(({address}) => address).join(', ') || 'no address'
    throw new KeystoreError('ECONFIG', `the monitoring endpoint's default host "${config.host}" resolves to ${shown} here, not a loopback address, and the endpoint has no authentication; make ${config.host} resolve to 127.0.0.1 or ::1 (/etc/hosts), or set http.host explicitly`)
  }

  // IPv4 first: a host without IPv6 cannot bind ::1, and clients of "localhost" try both.
  return (addresses.find(({family}) => family === 4) ?? addresses[0]).address
}

/** Starts the endpoint; `documents` answers a path (undefined: 404). ECONFIG when it cannot listen. */
export async function startMonitoring(config: MonitoringConfig, documents: (path: string) => unknown, logger: Logger): Promise<MonitoringEndpoint> {
  const address = await monitoringAddress(config)
  const server = http.createServer({headersTimeout: REQUEST_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS}, (req, res) => answer(req, res, documents))
  server.maxConnections = MONITORING_MAX_CONNECTIONS
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'the address is in use' : (error.code ?? error.message)
      reject(new KeystoreError('ECONFIG', `cannot listen on ${config.host}:${config.port} for the monitoring endpoint: ${reason}; stop the other process, or change http.port (or set http.enabled: false)`))
    })
    server.listen(config.port, address, () => resolve())
  })
  server.on('error', (error: Error) => logger.error({'error.message': error.message}, 'monitoring endpoint error'))
  const bound = server.address() as AddressInfo
  const url = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`
  if (!isLoopback(bound.address)) {
    logger.warn({url}, `the monitoring endpoint listens on ${bound.address}, reachable from the network without authentication (http.host is "${config.host}"); it shows counts, never a secret; set http.host to localhost unless a firewall guards the port`)
  }

  let closed: Promise<void> | undefined
  return {
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closed
    },
    url,
  }
}

/** One request: GET (or HEAD) of a known path, else 404 or 405; a request with a body closes its connection unread. */
function answer(req: http.IncomingMessage, res: http.ServerResponse, documents: (path: string) => unknown): void {
  const hasBody = req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0'
  if (hasBody || req.headers['transfer-encoding'] !== undefined) res.setHeader('Connection', 'close')
  // Split by hand: new URL() throws on targets a client may send (//host:99999), and a throw here ends the process.
  const target = req.url ?? '/'
  const query = target.indexOf('?')
  const document = documents(query === -1 ? target : target.slice(0, query))
  if (document === undefined) return reply(res, 404, {error: 'not found: the monitoring endpoint serves GET / and GET /stats'})
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD')
    return reply(res, 405, {error: 'only GET requests are supported'})
  }

  reply(res, 200, document, query !== -1 && new URLSearchParams(target.slice(query + 1)).has('pretty'))
}

function reply(res: http.ServerResponse, status: number, body: unknown, pretty = false): void {
  const text = `${JSON.stringify(body, null, pretty ? 2 : undefined)}\n`
  res.writeHead(status, {'Cache-Control': 'no-store', 'Content-Length': String(Buffer.byteLength(text)), 'Content-Type': 'application/json; charset=utf-8'})
  res.end(res.req.method === 'HEAD' ? undefined : text)
}
