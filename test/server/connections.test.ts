/**
 * The connection caps (fix-net finding 8: ~1,000 silent connections without a token exhausted the
 * server's descriptors; agents were reset and a reload failed with EMFILE).
 */
import assert from 'node:assert/strict'
import {EventEmitter} from 'node:events'
import http from 'node:http'
import net, {type Socket} from 'node:net'
import path from 'node:path'

import type {ServerConfig} from '../../src/server/config/server-config.js'

import {ADDRESS_SHARE, ConnectionGate, connectionCap, DESCRIPTOR_RESERVE, UNAUTHENTICATED_IDLE_MS, UNAUTHENTICATED_SHARE} from '../../src/server/connections.js'
import {createLogger} from '../../src/server/logger.js'
import {type RunningServer, startServer} from '../../src/server/server.js'
import {makeTempDir} from '../helpers/cli.js'

let port = 10_000
/** A stand-in for a connection from `address`: destroy() closes it, as a socket does. */
function connection(address: string): Socket & {destroyed: boolean; timeout?: number} {
  const socket = Object.assign(new EventEmitter(), {
    destroy() {
      socket.destroyed = true
      setImmediate(() => socket.emit('close'))
      return socket
    },
    destroyed: false,
    remoteAddress: address,
    setTimeout(ms: number) {
      socket.timeout = ms
      return socket
    },
    timeout: undefined as number | undefined,
    remotePort: port++,
  })
  return socket as unknown as Socket & {destroyed: boolean; timeout?: number}
}

function logged() {
  const lines: string[] = []
  const logger = createLogger({destination: {write: (line: string) => lines.push(line)}})
  return {lines, logger}
}

describe('server/connections', () => {
  it(`takes the open-files limit less ${DESCRIPTOR_RESERVE} descriptors for the server's own files`, () => {
    assert.equal(connectionCap(1024), 1024 - DESCRIPTOR_RESERVE)
    assert.equal(connectionCap(20_000), 20_000 - DESCRIPTOR_RESERVE)
    assert.equal(connectionCap(100), 16, 'never below 16')
    assert.equal(connectionCap(10_000_000), 65_536)
  })

  it(`one address holds at most a sixteenth of the cap without the token; past it a new connection takes the place of that address's oldest (break-new2 finding 1)`, () => {
    const {logger} = logged()
    const gate = new ConnectionGate(160, logger)
    const share = 160 * ADDRESS_SHARE
    const other = connection('10.0.0.2')
    gate.admit(other)
    const held = Array.from({length: share}, () => connection('10.0.0.1'))
    for (const socket of held) gate.admit(socket)
    assert.equal(held.some((socket) => socket.destroyed), false, 'its share is let in')
    // An agent from the same address (behind the same proxy, NAT or host) has not shown its token yet.
    const agent = connection('10.0.0.1')
    gate.admit(agent)
    assert.equal(agent.destroyed, false, 'the new connection is kept: it may be an agent about to show its token')
    assert.deepEqual(
      held.map((socket) => socket.destroyed),
      held.map((_, i) => i === 0),
      "the address's oldest connection without the token is closed for it",
    )
    assert.equal(gate.pending(held[0]), false)
    assert.equal(gate.authenticated(agent), true)
    for (let i = 0; i < 3 * share; i++) gate.admit(connection('10.0.0.1'))
    assert.equal(agent.destroyed, false, 'a connection that presented the token is never closed to make room')
    assert.equal(other.destroyed, false, "another address's connection is not touched")
  })

  it('a connection that presented the token no longer counts: its address may open more without closing any', () => {
    const {logger} = logged()
    const gate = new ConnectionGate(160, logger)
    const sockets = Array.from({length: 10}, () => connection('10.0.0.1'))
    for (const socket of sockets) gate.admit(socket)
    gate.authenticated(sockets[0])
    gate.admit(connection('10.0.0.1'))
    assert.deepEqual(
      sockets.map((socket) => socket.destroyed),
      sockets.map(() => false),
    )
  })

  it(`past half the cap without the token, a new connection takes the place of the oldest one without it`, async () => {
    const {lines, logger} = logged()
    const gate = new ConnectionGate(64, logger)
    const half = 64 * UNAUTHENTICATED_SHARE
    // Silent connections from many addresses, each within its own share, fill the half.
    const silent = Array.from({length: half}, (_, i) => connection(`10.1.0.${i}`))
    for (const socket of silent) gate.admit(socket)
    const agent = connection('10.2.0.1')
    gate.admit(agent)
    assert.equal(agent.destroyed, false, 'an agent connecting then is let in')
    assert.deepEqual(
      silent.map((socket) => socket.destroyed),
      silent.map((_, i) => i === 0),
      'the oldest silent connection is closed for it',
    )
    gate.authenticated(agent)
    await new Promise((resolve) => {
      setImmediate(resolve)
    })
    gate.admit(connection('10.2.0.2'))
    assert.equal(silent[1].destroyed, false, 'the agent with the token no longer counts: there was room')
    assert.equal(lines.length, 1)
    assert.match(JSON.parse(lines[0]).message, /^refused or closed 1 connection past the connection caps \(64 in all/)
  })

  it('to make room, a connection of an address holding several goes before an older one alone from its address (an agent about to show its token)', () => {
    const {logger} = logged()
    const gate = new ConnectionGate(64, logger)
    const agent = connection('10.2.0.1')
    gate.admit(agent)
    // A flood from 8 addresses, 4 each (within their share), fills the half and goes on.
    const flood = Array.from({length: 64}, (_, i) => connection(`10.1.0.${i % 8}`))
    for (const socket of flood) gate.admit(socket)
    assert.equal(agent.destroyed, false, 'the agent is still open')
    assert.equal(flood.filter((socket) => socket.destroyed).length, 64 - 31, 'the flood made room among its own')
  })

  it(`an idle connection without the token is kept ${UNAUTHENTICATED_IDLE_MS} ms, one with it keeps Node's keep-alive`, () => {
    const {logger} = logged()
    const gate = new ConnectionGate(160, logger)
    const [anonymous, agent, busy] = ['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((address) => connection(address))
    for (const socket of [anonymous, agent, busy]) gate.admit(socket)
    gate.authenticated(agent)
    anonymous.setTimeout(46_000)
    agent.setTimeout(46_000)
    for (const socket of [anonymous, agent, busy]) gate.answered(socket)
    assert.equal(anonymous.timeout, UNAUTHENTICATED_IDLE_MS)
    assert.equal(agent.timeout, 46_000)
    assert.equal(busy.timeout, undefined, 'no keep-alive timeout set (another request under way): none is set')
  })

  it('logs the first refusal at once, counted by reason (the rest of the next 10 s go into one line)', () => {
    const {lines, logger} = logged()
    const gate = new ConnectionGate(16, logger)
    for (let i = 0; i < 100; i++) gate.admit(connection('10.0.0.1'))
    gate.dropped()
    assert.equal(lines.length, 1)
    assert.deepEqual(JSON.parse(lines[0]).refused, {'per address': 1})
  })

  describe('an address shared by agents and a client without the token (break-new2 finding 1)', function () {
    this.timeout(30_000)
    const TOKEN = 'a-token'
    // A cap of 32: 16 connections without the token, 2 per address; every client here is 127.0.0.1.
    const CAP = 32
    const SHARE = CAP * ADDRESS_SHARE
    let tmp: ReturnType<typeof makeTempDir>
    let server: RunningServer
    let port: number
    const opened = new Set<Socket>()

    beforeEach(async () => {
      tmp = makeTempDir('apm-connections-')
      const config: ServerConfig = {
        anonymous: {allowAgent: ['rum-js', 'js-base'], allowService: [], enabled: false, rateLimit: {eventLimit: 300, ipLimit: 1000}},
        host: '127.0.0.1:0',
        maxEventSize: 307_200,
        output: {filename: 'apm-server', numberOfFiles: 7, path: path.join(tmp.dir, 'out'), rotateEveryKb: 10_240},
        paths: {config: tmp.dir, data: tmp.dir, home: tmp.dir, logs: tmp.dir},
        rum: {allowOrigins: ['*'], enabled: false},
        secretToken: TOKEN,
        secretTokenGracePeriodMs: 0,
        ssl: {enabled: false},
      }
      server = await startServer(config, createLogger({destination: {write() {}}}), {connectionCap: CAP})
      port = server.address.port
    })

    afterEach(async () => {
      for (const socket of opened) socket.destroy()
      opened.clear()
      await server.close()
      tmp.cleanup()
    })

    /** A connection that sends nothing; `closed` resolves with how long it was open when the server closed it. */
    const silent = (end = false) => {
      const started = Date.now()
      const socket = net.connect(port, '127.0.0.1', () => (end ? socket.end() : undefined))
      opened.add(socket)
      socket.resume()
      socket.on('error', () => {})
      const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - started)))
      const connected = new Promise((resolve) => socket.once('connect', resolve))
      return {closed, connected, socket}
    }

    /** An agent's intake request with the token: its status, or the error code of its connection. */
    const agentRequest = (agent: http.Agent | false = false) =>
      new Promise<number | string>((resolve) => {
        const body = '{"metadata":{"service":{"name":"svc","agent":{"name":"nodejs","version":"1"}}}}\n'
        const req = http.request(
          {agent, headers: {Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/x-ndjson'}, host: '127.0.0.1', method: 'POST', path: '/intake/v2/events', port},
          (res) => {
            res.resume()
            res.on('end', () => resolve(res.statusCode!))
          },
        )
        req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
        req.end(body)
      })

    it("an address holding its whole share of silent connections: a new connection with the token is served 202, the address's oldest silent one closed", async () => {
      const held = Array.from({length: SHARE}, () => silent())
      await Promise.all(held.map(({connected}) => connected))
      await new Promise((resolve) => {
        setTimeout(resolve, 200)
      }) // the server has taken them
      assert.equal(await agentRequest(), 202, 'the agent sharing the address is served')
      assert.ok((await held[0].closed) < 5000, 'the oldest silent connection was closed to make room')
      assert.equal(held[1].socket.destroyed, false)
      // Once its request showed the token, an agent's kept-alive connection is not closed for new silent ones.
      const keepAlive = new http.Agent({keepAlive: true, maxSockets: 1})
      assert.equal(await agentRequest(keepAlive), 202)
      const [kept] = Object.values(keepAlive.freeSockets).flat()
      const more = Array.from({length: 3 * SHARE}, () => silent())
      await Promise.all(more.map(({connected}) => connected))
      await new Promise((resolve) => {
        setTimeout(resolve, 200)
      })
      assert.equal(kept?.destroyed, false, "the agent's connection with the token is kept")
      assert.equal(await agentRequest(keepAlive), 202)
      keepAlive.destroy()
    })

    it('connections the client closes (FIN) before sending anything are closed by the server at once, not kept 10 s holding the share', async () => {
      const burst = Array.from({length: 4 * SHARE}, () => silent(true))
      const closedAfter = await Promise.all(burst.map(({closed}) => closed))
      assert.ok(Math.max(...closedAfter) < 3000, `closed after ${Math.max(...closedAfter)} ms`)
      assert.equal(await agentRequest(), 202)
    })
  })
})
