/**
 * The server attacks of issue 11's hostile reviews at their fast size, against the real `apm-server run`
 * (`npm run torture -- --only=review-server` runs them at full size): each failed on 94ba340.
 */
import assert from 'node:assert/strict'

import type {CheckResult} from './lib.js'
import * as review from './review-server.js'
import {checkAmplification, checkHeldMemory, checkLogAmplification, checkNesting, checkShutdownAfterBombs} from './review-server.js'

/** A check passes when it has no failures; the figures are printed when it does not. */
function assertPassed(result: CheckResult): void {
  assert.deepEqual(result.failures, [], result.figures.map((f) => `${f.figure}: ${f.value}`).join('\n'))
}

describe('server attacks of the hostile reviews (issue 11; fast versions)', function () {
  this.timeout(120_000)

  it('item 1: a 119-byte request nested 6,000 deep, chunked or not, anonymous or not, fast path or slow: 400, and the server lives on', async () => {
    assertPassed(await checkNesting('fast'))
  })

  it('item 5: 300 KB of metadata and 900 empty spans (446 bytes gzipped) writes at most 64 times its decoded size; an address is bounded over time', async () => {
    assertPassed(await checkAmplification('fast'))
  })

  it('item 7: 100 anonymous and 200 token gzip requests of a 4 MiB line, held one byte short then released: memory bounded, GET / answered', async () => {
    assertPassed(await checkHeldMemory('fast'))
  })

  it('item 8: 300,000-character type names, and long headers, paths and agent names, are cut in the log and in responses', async () => {
    assertPassed(await checkLogAmplification('fast'))
  })

  it('item 12: SIGTERM after 150 gzip bombs whose clients were killed stops at once', async () => {
    assertPassed(await checkShutdownAfterBombs('fast'))
  })
})

describe('server attacks of the reviews of the hardening (fix-net findings; fast versions)', function () {
  this.timeout(180_000)

  it('finding 1: lines that never end as 1-byte HTTP chunks (plain and gzip), anonymous, to a server with a 128 MiB heap: it lives on', async () => {
    assertPassed(await review.checkChunkDrip('fast'))
  })

  it('finding 2: SIGUSR1 is logged and ignored (no inspector), and the server does not start with the inspector open', async () => {
    assertPassed(await review.checkInspector('fast'))
  })

  it('finding 7: gzip bodies of newlines and of `x` lines, anonymous and with the token: ended by the decoded-size bound, the rejected-lines bound or the anonymous decoded allowance', async () => {
    assertPassed(await review.checkDecodedBounds('fast'))
  })

  it('finding 4: a write that fails part way (RLIMIT_FSIZE) leaves no torn line: the next event answered 202 is readable', async () => {
    assertPassed(await review.checkTornLine('fast'))
  })

  it('L1: a FIFO at the oldest rotation slot: the rotation replaces it without waiting; requests answered, SIGTERM stops', async () => {
    assertPassed(await review.checkRotationFifo('fast'))
  })

  it('finding 5: a TLS key of 20 million PBKDF2 iterations: the reload is refused at once, GET / answered throughout; the start refused', async () => {
    assertPassed(await review.checkSlowKey('fast'))
  })

  it('finding 6: a SIGHUP with a config file of 60,000 settings fails at once, GET / answered throughout, a few log lines; the start fails at once', async () => {
    assertPassed(await review.checkBigConfig('fast'))
  })

  it('L3: apm-server run refuses a config file others could have written (mode, owner), and an output path holding a keystore value', async () => {
    assertPassed(await review.checkPlantedConfig('fast'))
  })

  it('finding 8: 600 silent connections without a token, 256 open files: an agent with the token gets 202 on new connections, SIGHUP reloads, refusals logged; a body never sent is not waited for', async () => {
    assertPassed(await review.checkConnections('fast'))
  })
})
