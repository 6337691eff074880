/**
 * The cleartext port's first bytes (src/server/h2.ts sniffs them to tell HTTP/2 from HTTP/1.1): what a
 * client that resets or half-closes its connection does to the server (break-new findings 1 and 2).
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'

import type {ServerConfig} from '../../src/server/config/server-config.js'
import {createLogger} from '../../src/server/logger.js'
import {RunningServer, startServer} from '../../src/server/server.js'
import {makeTempDir} from '../helpers/cli.js'
import {testServerConfig} from '../helpers/server-config.js'
import {makeRedisCertificate} from '../helpers/redis.js'

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])

function config(dir: string): ServerConfig {
  return testServerConfig(dir)
}

function getRoot(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({agent: false, host: '127.0.0.1', path: '/', port}, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    }).on('error', reject)
  })
}

/** Connects, writes `first`, then resets the connection (SO_LINGER 0) once it was written. */
function resetAfter(port: number, first: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(first, () => {
        socket.resetAndDestroy()
        resolve()
      })
    })
    socket.on('error', () => resolve())
  })
}

/** Sends the HTTP/2 preface and an empty SETTINGS frame, closes its side, and resolves with how long the server took to close its own. */
function halfClose(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = net.connect(port, '127.0.0.1', () => socket.end(Buffer.concat([PREFACE, EMPTY_SETTINGS])))
    socket.resume()
    socket.on('error', reject)
    socket.on('close', () => resolve(Date.now() - started))
  })
}

describe('cleartext connections that reset or half-close (src/server/h2.ts)', function () {
  this.timeout(30_000)
  let tmp: ReturnType<typeof makeTempDir>
  let server: RunningServer
  let logLines: string[]

  beforeEach(async () => {
    tmp = makeTempDir('apm-h2-sockets-')
    logLines = []
    server = await startServer(config(tmp.dir), createLogger({destination: {write: (line: string) => logLines.push(line)}}))
  })

  afterEach(async () => {
    await server.close()
    tmp.cleanup()
  })

  it('a client that resets its connection before, during or after the first bytes leaves the server serving', async () => {
    const {port} = server.address
    const firsts = [Buffer.alloc(0), PREFACE.subarray(0, 10), Buffer.from('GET / HT'), Buffer.concat([PREFACE, EMPTY_SETTINGS])]
    for (let round = 0; round < 5; round++) {
      // eslint-disable-next-line no-await-in-loop -- rounds of resets, then a check
      await Promise.all(firsts.map((first) => resetAfter(port, first)))
    }

    // An unhandled socket 'error' would have ended the process (mocha reports it as this test's failure).
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(await getRoot(port), 200)
  })

  it('an HTTP/2 client that closes its side is closed by the server at once, not kept until the idle timeout', async () => {
    const waits = await Promise.all(Array.from({length: 20}, () => halfClose(server.address.port)))
    // The session's idle timeout is 45 s: a connection kept half-open would take that long.
    assert.ok(Math.max(...waits) < 5000, `the server took ${Math.max(...waits)} ms to close a connection its client had closed`)
  })

  it('gRPC calls reset or dropped by their clients at any moment are the clients\' doing: never logged as an internal error', async () => {
    const empty = Buffer.from([0, 0, 0, 0, 0])
    for (let round = 0; round < 60; round++) {
      const session = http2.connect(server.url)
      session.on('error', () => {})
      const calls: Promise<unknown>[] = []
      for (let i = 0; i < 16; i++) {
        const headers: http2.OutgoingHttpHeaders = {':method': 'POST', ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export', 'content-type': 'application/grpc', te: 'trailers'}
        if (i % 2) headers.authorization = 'Bearer a-token'
        const stream = session.request(headers)
        stream.on('error', () => {})
        stream.resume()
        const mode = (round + i) % 3
        if (mode === 0) {
          stream.end(empty)
          setImmediate(() => stream.close(http2.constants.NGHTTP2_CANCEL))
        } else if (mode === 1) {
          stream.write(Buffer.from([0, 0, 0, 0, 10, 1]))
          setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), (round * 7 + i) % 5)
        } else {
          stream.end(empty)
        }

        calls.push(new Promise((resolve) => stream.on('close', resolve)))
      }

      setTimeout(() => session.destroy(), round % 10)
      // eslint-disable-next-line no-await-in-loop -- one connection's calls at a time, as a client does
      await Promise.race([Promise.all(calls), new Promise((resolve) => setTimeout(resolve, 50))])
    }

    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(await getRoot(server.address.port), 200)
    assert.deepEqual(logLines.filter((line) => line.includes('internal error')), [])
  })
})

describe('a TLS connection that never starts its handshake', function () {
  this.timeout(60_000)

  it('is closed by the server within the headers\' 10 s, not kept for Node\'s 120 s handshake default', async () => {
    const tmp = makeTempDir('apm-tls-silent-')
    const {cert, key} = makeRedisCertificate(tmp.dir)
    const server = await startServer({...config(tmp.dir), ssl: {certificate: cert, enabled: true, key}}, createLogger({destination: {write: () => {}}}))
    try {
      const started = Date.now()
      const waited = await new Promise<number>((resolve, reject) => {
        const socket = net.connect(server.address.port, '127.0.0.1')
        socket.resume()
        socket.on('error', () => resolve(Date.now() - started))
        socket.on('close', () => resolve(Date.now() - started))
        setTimeout(() => reject(new Error('the server still held the silent connection after 30 s')), 30_000).unref()
      })
      assert.ok(waited < 15_000, `closed after ${waited} ms`)
    } finally {
      await server.close()
      tmp.cleanup()
    }
  })
})
