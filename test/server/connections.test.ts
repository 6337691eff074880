/**
 * The connection caps (fix-net finding 8: ~1,000 silent connections without a token exhausted the
 * server's descriptors; agents were reset and a reload failed with EMFILE).
 */
import assert from 'node:assert/strict'
import {EventEmitter} from 'node:events'
import type {Socket} from 'node:net'

import {ADDRESS_SHARE, ConnectionGate, connectionCap, DESCRIPTOR_RESERVE, UNAUTHENTICATED_IDLE_MS, UNAUTHENTICATED_SHARE} from '../../src/server/connections.js'
import {createLogger} from '../../src/server/logger.js'

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

  it(`one address holds at most a sixteenth of the cap without the token; past it a connection is refused`, () => {
    const {logger} = logged()
    const gate = new ConnectionGate(160, logger)
    const share = 160 * ADDRESS_SHARE
    const admitted = Array.from({length: share + 5}, () => gate.admit(connection('10.0.0.1')))
    assert.equal(admitted.filter(Boolean).length, share)
    assert.equal(gate.admit(connection('10.0.0.2')), true, 'another address is let in')
  })

  it('a connection that presented the token no longer counts: its address may open more', () => {
    const {logger} = logged()
    const gate = new ConnectionGate(160, logger)
    const sockets = Array.from({length: 10}, () => connection('10.0.0.1'))
    for (const socket of sockets) assert.equal(gate.admit(socket), true)
    assert.equal(gate.admit(connection('10.0.0.1')), false)
    gate.authenticated(sockets[0])
    assert.equal(gate.admit(connection('10.0.0.1')), true)
  })

  it(`past half the cap without the token, a new connection takes the place of the oldest one without it`, async () => {
    const {lines, logger} = logged()
    const gate = new ConnectionGate(64, logger)
    const half = 64 * UNAUTHENTICATED_SHARE
    // Silent connections from many addresses, each within its own share, fill the half.
    const silent = Array.from({length: half}, (_, i) => connection(`10.1.0.${i}`))
    for (const socket of silent) assert.equal(gate.admit(socket), true)
    const agent = connection('10.2.0.1')
    assert.equal(gate.admit(agent), true, 'an agent connecting then is let in')
    assert.deepEqual(
      silent.map((socket) => socket.destroyed),
      silent.map((_, i) => i === 0),
      'the oldest silent connection is closed for it',
    )
    gate.authenticated(agent)
    await new Promise((resolve) => {
      setImmediate(resolve)
    })
    assert.equal(gate.admit(connection('10.2.0.2')), true)
    assert.equal(silent[1].destroyed, false, 'the agent with the token no longer counts: there was room')
    assert.equal(lines.length, 1)
    assert.match(JSON.parse(lines[0]).message, /^refused or closed 1 connection past the connection caps \(64 in all/)
  })

  it('to make room, a connection of an address holding several goes before an older one alone from its address (an agent about to show its token)', () => {
    const {logger} = logged()
    const gate = new ConnectionGate(64, logger)
    const agent = connection('10.2.0.1')
    assert.equal(gate.admit(agent), true)
    // A flood from 8 addresses, 4 each (within their share), fills the half and goes on.
    const flood = Array.from({length: 64}, (_, i) => connection(`10.1.0.${i % 8}`))
    for (const socket of flood) assert.equal(gate.admit(socket), true)
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
})
