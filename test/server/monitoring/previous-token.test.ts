/**
 * Rotation telemetry (../../../src/server/monitoring/previous-token.ts) with a fake clock: the summary of
 * each minute of a grace period and the one at its end, exact as an operator reads them, and the bounds
 * on what clients name (services, agents, addresses): however many and however long, the counts, the
 * stats and the log lines stay small and printable.
 */
import assert from 'node:assert/strict'

import {createLogger} from '../../../src/server/logger.js'
import {LATE_MS, MINUTE_MS, PreviousTokenUses} from '../../../src/server/monitoring/previous-token.js'
import {MAX_NAMES} from '../../../src/server/monitoring/tally.js'

interface Line {
  'log.level': string
  message: string
  'apm-server.previous_token'?: {requests: number; services: {count: number; top: unknown[]}; addresses: {count: number; top: unknown[]}}
}

describe('previous-token telemetry', () => {
  let clock: number
  let lines: Line[]
  let uses: PreviousTokenUses
  const start = 1_800_000_000_000
  beforeEach(() => {
    clock = start
    lines = []
    // A check period far longer than any test: the test calls check() itself.
    uses = new PreviousTokenUses(createLogger({destination: {write: (line: string) => lines.push(JSON.parse(line) as Line)}}), () => clock, 3_600_000)
  })
  afterEach(() => uses.close())

  const request = (address: string, service = '', agent = '') => uses.use(address)(service === '' ? undefined : {agent, service})
  const messages = () => lines.map((line) => line.message)

  it('logs each minute of the grace period: requests, services (with their agents) and addresses, most first', () => {
    uses.watch(start + 5 * MINUTE_MS)
    for (let i = 0; i < 8; i++) request('10.0.0.5', 'checkout', 'nodejs')
    for (let i = 0; i < 3; i++) request('10.0.0.6', 'cart', 'python')
    request('10.0.0.6')
    clock += MINUTE_MS - 1
    uses.check()
    assert.deepEqual(lines, [], 'nothing before the minute is over')
    clock += 1
    uses.check()
    assert.deepEqual(messages(), ['previous secret token: 12 requests from 2 services in the last minute: checkout (nodejs) 8, cart (python) 3; 1 request named no service; addresses: 10.0.0.5 8, 10.0.0.6 4'])
    assert.equal(lines[0]['log.level'], 'info')
    assert.deepEqual(lines[0]['apm-server.previous_token'], {
      addresses: {count: 2, other_requests: 0, top: [{address: '10.0.0.5', requests: 8}, {address: '10.0.0.6', requests: 4}]},
      requests: 12,
      services: {count: 2, other_requests: 0, top: [{agent: 'nodejs', requests: 8, service: 'checkout'}, {agent: 'python', requests: 3, service: 'cart'}]},
      without_service: 1,
    })
    clock += MINUTE_MS
    uses.check()
    assert.equal(messages()[1], 'previous secret token: 0 requests in the last minute', 'a quiet minute is said too: the sign that the grace period may end')
  })

  it('ends with "grace period over" over its last 5 minutes: info when nobody used the token, a warning naming them when some did', () => {
    uses.watch(start + 7 * MINUTE_MS)
    request('10.0.0.5', 'checkout', 'nodejs')
    for (let minute = 1; minute <= 7; minute++) {
      clock = start + minute * MINUTE_MS
      uses.check()
    }

    const last = lines.at(-1)!
    assert.equal(last.message, 'grace period over: 0 requests used the previous token in its last 5 minutes')
    assert.equal(last['log.level'], 'info')
    assert.equal(lines.filter((line) => line.message.startsWith('previous secret token')).length, 6, 'one line a minute, the last minute in the end line')

    clock += 1000
    uses.watch(clock + 90_000)
    clock += 89_000
    request('10.0.0.7', 'legacy', 'java')
    clock += 1000
    uses.check()
    assert.deepEqual(lines.at(-1), {...lines.at(-1), 'log.level': 'warn', message: 'grace period over: 1 request used the previous token in its last 1 minute 30 s: legacy (java) 1; addresses: 10.0.0.7 1'})
  })

  it('counts a request still running when the grace period ends, waiting for it at most LATE_MS', () => {
    uses.watch(start + MINUTE_MS)
    clock += MINUTE_MS - 10
    const ended = uses.use('10.0.0.9')
    clock += 10
    uses.check()
    assert.deepEqual(lines, [], 'the end waits for the request let in before it')
    clock += 2000
    ended({agent: 'go', service: 'slow'})
    assert.equal(messages().at(-1), 'grace period over: 1 request used the previous token in its last 1 minute: slow (go) 1; addresses: 10.0.0.9 1')

    uses.watch(clock + MINUTE_MS)
    clock += MINUTE_MS - 10
    uses.use('10.0.0.9') // never ends
    clock += 10 + LATE_MS
    uses.check()
    assert.equal(messages().at(-1), 'grace period over: 0 requests used the previous token in its last 1 minute')
  })

  it('a new rotation ends the running grace period with a summary of all of it', () => {
    uses.watch(start + 10 * MINUTE_MS)
    request('10.0.0.5', 'checkout', 'nodejs')
    clock += 150_000
    uses.watch(clock + 10 * MINUTE_MS)
    assert.equal(lines.at(-1)!.message, 'grace period over: a new rotation ended it after 2 minutes 30 s; 1 request used the previous token during it: checkout (nodejs) 1; addresses: 10.0.0.5 1')
    assert.equal(uses.stats().requests, 0, 'the new grace period counts afresh')
  })

  it('bounds what clients name: at most MAX_NAMES names a tally, each cut to 128 characters and made printable; log lines and stats stay small', () => {
    uses.watch(start + 5 * MINUTE_MS)
    const long = 'x'.repeat(100_000)
    for (let i = 0; i < 3 * MAX_NAMES; i++) {
      request(`10.1.${i >> 8}.${i & 255}`, `svc-${i}\u001B[31m\u202E\n${long}`, `agent\r\n${long}`)
    }

    request('10.0.0.1', 'checkout', 'nodejs')
    const stats = uses.stats()
    assert.equal(stats.requests, 3 * MAX_NAMES + 1)
    assert.equal(stats.services.count, MAX_NAMES)
    assert.equal(stats.addresses.count, MAX_NAMES)
    assert.equal(stats.services.top.length, 10)
    assert.equal(stats.services.other_requests, 3 * MAX_NAMES + 1 - 10)
    for (const {agent, service} of stats.services.top) {
      assert.ok(service.length < 150 && agent.length < 150, `${service.length} ${agent.length}`)
      assert.doesNotMatch(service + agent, /[\u0000-\u001F\u007F\u202E]/)
    }

    assert.ok(JSON.stringify(stats).length < 6000, `stats of ${JSON.stringify(stats).length} characters`)
    clock += MINUTE_MS
    uses.check()
    const line = lines.at(-1)!
    assert.match(line.message, /^previous secret token: 1501 requests from more than 500 services in the last minute: svc-0\?\[31m\?\?x{116}…\(99884 more\) \(agent\?\?x{121}…\(99879 more\)\) 1, /)
    assert.match(line.message, /, and more than 495 more services \(1496 requests\); addresses: 10\.1\.0\.0 1, 10\.1\.0\.1 1, 10\.1\.0\.2 1, others 1498$/)
    assert.ok(JSON.stringify(line).length < 8000, `a log line of ${JSON.stringify(line).length} characters`)
  })

  it('outside a grace period counts nothing, and the stats keep the latest grace period', () => {
    request('10.0.0.5', 'checkout', 'nodejs')
    assert.deepEqual(uses.stats(), {accepted_until: null, addresses: {count: 0, other_requests: 0, top: []}, requests: 0, services: {count: 0, other_requests: 0, top: []}, without_service: 0})
    uses.watch(start + MINUTE_MS)
    assert.equal(uses.stats().accepted_until, new Date(start + MINUTE_MS).toISOString())
    request('10.0.0.5', 'checkout', 'nodejs')
    clock += MINUTE_MS
    uses.check()
    assert.equal(uses.stats().accepted_until, null)
    assert.equal(uses.stats().requests, 1)
  })
})
