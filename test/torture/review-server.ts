/**
 * The server attacks of issue 11's hostile reviews, against the real `apm-server run` (a secret token from
 * the keystore, RUM on, so anonymous access is on; loopback only), each with the figure that shows its
 * bound: a 119-byte request of deep nesting (item 1), a 446-byte request whose events repeat 300 KB of
 * metadata (item 5), hundreds of small gzip requests held one byte short of their end (item 7), client
 * text echoed into the log and responses (item 8), and SIGTERM after gzip bombs whose clients were killed
 * (item 12). `npm run torture` runs them at full size (`--only=review-server`); test/torture/review-server.test.ts
 * runs each at the fast size.
 */
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {promises as fs} from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {createGzip, deflateSync, gzipSync} from 'node:zlib'

import {
  ANONYMOUS_DECODED_RATE_EXCEEDED,
  ANONYMOUS_METADATA_MAX_BYTES,
  ANONYMOUS_METADATA_TOO_LARGE,
  LINE_TOO_COMPLEX,
  MEMORY_BUDGET_BYTES,
  OUTPUT_LIMIT_EXCEEDED,
  OUTPUT_MULTIPLE,
  QUEUE_FULL,
  REQUEST_DECODED_MAX_BYTES,
  REQUEST_DECODED_TOO_LARGE,
  TOO_MANY_REJECTED_LINES,
} from '../../src/server/limits.js'
import {HEADERS_TIMEOUT_MS, UNAUTHENTICATED_IDLE_MS} from '../../src/server/connections.js'
import {DEFAULT_SHUTDOWN_TIMEOUT_MS, SHUTDOWN_GRACE_MS} from '../../src/server/shutdown.js'
import {pbkdf2Key, pem} from '../helpers/der.js'
import {CheckResult, cli, fail, newResult, pool, sleep, tempDir} from './lib.js'
import {launch, Launched, LaunchOptions, METADATA, Reply, request, safeJson} from './server.js'

export type Scale = 'fast' | 'full'

function sizes(scale: Scale) {
  const full = scale === 'full'
  return {
    bombs: full ? 600 : 150,
    bombSeconds: full ? 10 : 1,
    heldAnonymous: full ? 400 : 100,
    heldToken: full ? 1600 : 200,
    logRequests: full ? 900 : 40,
  }
}

const RUM = ['-E', 'apm-server.rum.enabled=true']
/**
 * RUM with anonymous allowances far above what the check sends (fix-net finding 7 charges an anonymous
 * address for its decoded bytes, 8 KiB a second per event of event_limit): for checks of what one request
 * holds or logs, which the allowance would otherwise end with a 429 before the bound under test is met.
 */
const RUM_UNLIMITED = [...RUM, '-E', 'apm-server.auth.anonymous.rate_limit.event_limit=1000000']
const RUM_METADATA = (extra = '') => `{"metadata":{"service":{"name":"web","agent":{"name":"rum-js","version":"5.16.0"}}${extra}}}`
const ndjsonHeaders = {'Content-Type': 'application/x-ndjson'}
const MiB = 1024 * 1024

/** Runs `body` against a fresh server (its own memory baseline and log), and always stops it. */
async function withServer(extra: string[], body: (server: Launched) => Promise<void>, options: Omit<LaunchOptions, 'extra'> = {}): Promise<void> {
  const server = await launch({...options, extra})
  try {
    await body(server)
  } finally {
    await server.stop()
    server.home.cleanup()
  }
}

/** The server still runs and answers `GET /`. */
async function alive(server: Launched): Promise<boolean> {
  if (server.child.exitCode !== null) return false
  const reply = await request(server.url, {method: 'GET', path: '/', timeoutMs: 30_000}).catch(() => undefined)
  return reply?.status === 200
}

function errorsOf(reply: Reply): string[] {
  return ((safeJson(reply.body) as {errors?: Array<{message: string}>})?.errors ?? []).map((error) => error.message)
}

function acceptedOf(reply: Reply): number | undefined {
  return (safeJson(reply.body) as {accepted?: number})?.accepted
}

/** Bytes in the output directory now (every rotated file included). */
async function outputBytes(server: Launched): Promise<number> {
  const dir = path.join(server.home.dir, 'data', 'apm-server')
  let total = 0
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) total += (await fs.stat(path.join(dir, name))).size // eslint-disable-line no-await-in-loop
  return total
}

/** Item 1: lines nested 6,000 deep (119 bytes gzipped), chunked or with a length, anonymous or with the token. */
export async function checkNesting(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const depth = 6000
  const deep = `${'['.repeat(depth)}${']'.repeat(depth)}`
  const deepMetadata = Buffer.from(`${RUM_METADATA(`,"x":${deep}`)}\n`)
  const deepEvent = Buffer.from(`${RUM_METADATA()}\n{"transaction":{"id":"t","x":${deep}}}\n`)
  const wide = `[${Array.from({length: 100_000}, () => '[]').join(',')}]`
  await withServer(RUM, async (server) => {
    const chunked = (data: Buffer) => async function* () {
      yield data
    }

    const auth = {Authorization: `Bearer ${server.token}`}
    const gzipped = {...ndjsonHeaders, 'Content-Encoding': 'gzip'}
    // Anonymous metadata this long is refused for its size first (ANONYMOUS_METADATA_MAX_BYTES): either answer is right.
    const refusals = [LINE_TOO_COMPLEX, ANONYMOUS_METADATA_TOO_LARGE]
    const cases: Array<[string, Parameters<typeof request>[1], string[]]> = [
      [`anonymous, gzip, chunked: metadata nested ${depth} deep (${gzipSync(deepMetadata).length} bytes)`, {body: chunked(gzipSync(deepMetadata)), headers: gzipped}, refusals],
      ['anonymous, gzip, with a length: the same', {body: gzipSync(deepMetadata), headers: gzipped}, refusals],
      ['with the token, gzip, chunked: the same', {body: chunked(gzipSync(deepMetadata)), headers: {...gzipped, ...auth}}, [LINE_TOO_COMPLEX]],
      [`RUM endpoint, plain, chunked: an event nested ${depth} deep (${deepEvent.length} bytes)`, {body: chunked(deepEvent), headers: ndjsonHeaders, path: '/intake/v2/rum/events'}, [LINE_TOO_COMPLEX]],
      ['with the token (the fast path): the same event', {body: chunked(Buffer.from(`${METADATA}\n{"span":{"id":"s","x":${deep}}}\n`)), headers: {...ndjsonHeaders, ...auth}}, [LINE_TOO_COMPLEX]],
      ...(scale === 'full'
        ? ([['with the token: an event of 100,002 arrays in 300,000 bytes', {body: Buffer.from(`${METADATA}\n{"span":{"x":${wide}}}\n`), headers: {...ndjsonHeaders, ...auth}}, [LINE_TOO_COMPLEX]]] as Array<
            [string, Parameters<typeof request>[1], string[]]
          >)
        : []),
    ]
    let ok = 0
    for (const [label, options, messages] of cases) {
      // eslint-disable-next-line no-await-in-loop -- one at a time: a crash is pinned on its case
      const reply = await request(server.url, options).catch((error: Error) => ({body: error.message, headers: {}, status: 0}))
      // eslint-disable-next-line no-await-in-loop
      const up = await alive(server)
      if (reply.status === 400 && errorsOf(reply).some((message) => messages.includes(message)) && up) ok++
      else fail(result, `nesting: ${label}: status ${reply.status}, ${reply.body.slice(0, 200)}; server ${up ? 'up' : `DOWN (exit ${server.child.exitCode}): ${server.logs().slice(-300)}`}`)
      if (!up) break
    }

    result.figures.push({check: 'server review', figure: `deep or wide lines (${cases.map(([label]) => label).join('; ')})`, value: `${ok}/${cases.length} answered 400 (nesting bound, or the anonymous metadata bound), server up after each`})
  })
  return result
}

/** Item 5: 300 KB of metadata and 900 `{"span":{}}` (~450 bytes gzipped), anonymous and with the token; then a burst of anonymous requests. */
export async function checkAmplification(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  await withServer(RUM, async (server) => {
    const auth = {Authorization: `Bearer ${server.token}`}
    const marker = `marker-${randomBytes(6).toString('hex')}`
    const before = await request(server.url, {body: `${METADATA}\n{"transaction":{"id":"${marker}"}}\n`, headers: {...ndjsonHeaders, ...auth}})
    if (before.status !== 202) fail(result, `amplification: the marker event got ${before.status}`)
    const spans = (count: number) => '{"span":{}}\n'.repeat(count)
    // 300,000 bytes of metadata: inside max_event_size (300 KiB), as in the review.
    const big = `${RUM_METADATA(`,"labels":{"pad":"${'x'.repeat(300_000)}"}`)}\n${spans(900)}`
    const nearMetadata = RUM_METADATA(`,"labels":{"pad":"${'x'.repeat(ANONYMOUS_METADATA_MAX_BYTES - 200)}"}`)
    const nearBound = `${nearMetadata}\n${spans(5000)}`
    const cases: Array<[string, string, string, Record<string, string>, (reply: Reply) => boolean]> = [
      ['anonymous (RUM): 300 KB of metadata, 900 empty spans', '/intake/v2/rum/events', big, {}, (r) => r.status === 400 && acceptedOf(r) === 0],
      [`anonymous (RUM): ${nearMetadata.length.toLocaleString('en')} bytes of metadata, 5,000 empty spans`, '/intake/v2/rum/events', nearBound, {}, (r) => r.status === 400 && errorsOf(r).includes(OUTPUT_LIMIT_EXCEEDED)],
      ['with the token: 300 KB of metadata, 900 empty spans', '/intake/v2/events', big.replace('rum-js', 'nodejs'), auth, (r) => r.status === 400 && errorsOf(r).includes(OUTPUT_LIMIT_EXCEEDED)],
    ]
    for (const [label, route, body, headers, expected] of cases) {
      const data = gzipSync(body)
      // eslint-disable-next-line no-await-in-loop -- one at a time: each one's output is measured
      const outputBefore = await outputBytes(server)
      // eslint-disable-next-line no-await-in-loop
      const reply = await request(server.url, {body: data, headers: {...ndjsonHeaders, ...headers, 'Content-Encoding': 'gzip'}, path: route})
      // eslint-disable-next-line no-await-in-loop
      const written = (await outputBytes(server)) - outputBefore
      const bound = OUTPUT_MULTIPLE * Buffer.byteLength(body)
      // eslint-disable-next-line no-await-in-loop -- a full set of files means rotation dropped one: `written` is then unknown
      const full = (await fs.readdir(path.join(server.home.dir, 'data', 'apm-server'))).length >= 7
      const good = expected(reply) && written <= bound && !full
      if (!good) fail(result, `amplification: ${label}: status ${reply.status} ${reply.body.slice(0, 200)}, wrote ${written} bytes (bound ${bound})${full ? ', and rotated output files away' : ''}`)
      result.figures.push({
        check: 'server review',
        figure: `${label}: ${data.length} bytes gzipped, ${Buffer.byteLength(body).toLocaleString('en')} decoded`,
        value: `${reply.status}, ${acceptedOf(reply)} accepted (${errorsOf(reply).join('; ').slice(0, 90)}); wrote ${written.toLocaleString('en')} bytes, bound ${bound.toLocaleString('en')} (${OUTPUT_MULTIPLE}x decoded)${good ? '' : ' — OVER'}`,
      })
    }

    // A burst of anonymous requests each within its own bound (events of 50 KB): the address's output is bounded over time.
    const requests = scale === 'full' ? 200 : 40
    const burstBody = gzipSync(`${RUM_METADATA(`,"labels":{"pad":"${'y'.repeat(4096)}"}`)}\n${`{"span":{"name":"${'n'.repeat(50_000)}"}}\n`.repeat(10)}`)
    const outputBefore = await outputBytes(server)
    const t0 = Date.now()
    const statuses = new Map<number, number>()
    for (let i = 0; i < requests; i++) {
      // eslint-disable-next-line no-await-in-loop -- one client, one request after another
      const reply = await request(server.url, {body: burstBody, headers: {...ndjsonHeaders, 'Content-Encoding': 'gzip'}, path: '/intake/v2/rum/events'})
      statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1)
    }

    const seconds = (Date.now() - t0) / 1000
    const written = (await outputBytes(server)) - outputBefore
    // event_limit 300 by default: 300 x 8 KiB a second, a burst of three seconds' worth, plus one line.
    const windowBound = 300 * 8192 * (3 + seconds) + 8192 + 100
    if (written > windowBound) fail(result, `amplification: ${requests} anonymous requests in ${seconds.toFixed(1)} s wrote ${written} bytes, over ${Math.round(windowBound)}`)
    result.figures.push({
      check: 'server review',
      figure: `one anonymous address, ${requests} requests of 4 KiB metadata and 10 spans of 50 KB, one after another`,
      value: `${[...statuses].map(([status, n]) => `${n} × ${status}`).join(', ')} in ${seconds.toFixed(2)} s; wrote ${(written / MiB).toFixed(1)} MiB, bound ${(windowBound / MiB).toFixed(1)} MiB (2.4 MiB a second, a 7.2 MiB burst)`,
    })
    const dir = path.join(server.home.dir, 'data', 'apm-server')
    const files = await fs.readdir(dir)
    const kept = await Promise.all(files.map(async (name) => (await fs.readFile(path.join(dir, name), 'utf8')).includes(marker)))
    if (!kept.includes(true)) fail(result, `amplification: the event written before the attacks is in none of the ${files.length} output files (rotated away)`)
  })
  return result
}

interface Held {
  socket: net.Socket
  release: () => void
  reply: Promise<number>
}

/** A request sent whole but for its last byte over a raw socket; release() sends the byte; reply is the status (0: none). */
function holdRequest(port: number, head: string, body: Buffer): Promise<Held> {
  return new Promise((resolve, reject) => {
    let response = ''
    const socket = net.connect(port, '127.0.0.1')
    const reply = new Promise<number>((done) => {
      socket.on('data', (chunk: Buffer) => {
        response += chunk.toString('latin1')
      })
      socket.on('close', () => done(Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0)))
      socket.setTimeout(300_000, () => socket.destroy())
    })
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.off('error', reject)
      socket.on('error', () => {})
      socket.write(`${head}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`)
      socket.write(body.subarray(0, -1), () => resolve({release: () => socket.write(body.subarray(-1)), reply, socket}))
    })
  })
}

/** `GET /` every 100 ms until stopped: the slowest answer, and the failures. */
function probeRoot(url: string): {stop: () => Promise<{slowestMs: number; failed: number; count: number}>} {
  let running = true
  let slowestMs = 0
  let failed = 0
  let count = 0
  const loop = (async () => {
    while (running) {
      const t0 = Date.now()
      // eslint-disable-next-line no-await-in-loop -- one probe at a time
      const reply = await request(url, {agent: false, method: 'GET', path: '/', timeoutMs: 60_000}).catch(() => undefined)
      count++
      slowestMs = Math.max(slowestMs, Date.now() - t0)
      if (reply?.status !== 200) failed++
      await sleep(100) // eslint-disable-line no-await-in-loop
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return {count, failed, slowestMs}
    },
  }
}

/** Item 7: small gzip requests (a 4 MiB line of `a`, 4,099 bytes) held one byte short of their end, then released at once. */
export async function checkHeldMemory(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const size = sizes(scale)
  const body = gzipSync(Buffer.alloc(4 * MiB, 0x61))
  // What the budget lets the server hold, plus the server's own growth under ~2,000 connections.
  const boundMiB = MEMORY_BUDGET_BYTES / MiB + 192
  await withServer(RUM_UNLIMITED, async (server) => {
    const {port} = new URL(server.url)
    const runs: Array<[string, number, string, string]> = [
      ['anonymous (RUM)', size.heldAnonymous, '/intake/v2/rum/events', ''],
      ['with the token', size.heldToken, '/intake/v2/events', `Authorization: Bearer ${server.token}\r\n`],
    ]
    for (const [label, count, route, auth] of runs) {
      const head = `POST ${route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n${auth}`
      // eslint-disable-next-line no-await-in-loop -- one run after the other, memory measured each
      const held = await pool(Array.from({length: count}, (_, i) => i), 100, () => holdRequest(Number(port), head, body))
      await sleep(500) // eslint-disable-line no-await-in-loop -- every request read up to its last byte
      const rssHeld = server.peakSinceMark()
      const probe = probeRoot(server.url)
      const t0 = Date.now()
      for (const request_ of held) request_.release()
      // eslint-disable-next-line no-await-in-loop
      const statuses = await Promise.all(held.map((request_) => request_.reply))
      const answeredMs = Date.now() - t0
      // eslint-disable-next-line no-await-in-loop
      const root = await probe.stop()
      const peak = server.peakSinceMark()
      const counts = new Map<number, number>()
      for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1)
      const grown = peak - server.baseline
      if (grown > boundMiB) fail(result, `held requests (${label}): RSS grew ${grown} MiB over the ${server.baseline} MiB baseline, bound ${boundMiB} MiB`)
      if (statuses.some((status) => status !== 400 && status !== 503)) fail(result, `held requests (${label}): statuses ${[...counts].join(' ')}, expected 400 (the line is too long) or 503 (${QUEUE_FULL})`)
      if (root.failed > 0 || root.slowestMs > 5000) fail(result, `held requests (${label}): GET / failed ${root.failed} of ${root.count} times, slowest ${root.slowestMs} ms`)
      result.figures.push({
        check: 'server review',
        figure: `${count.toLocaleString('en')} gzip requests ${label} (${body.length.toLocaleString('en')} bytes, a 4 MiB line), held one byte short, then released at once`,
        value: `RSS ${server.baseline} MiB at start, ${rssHeld} MiB held, peak ${peak} MiB (bound +${boundMiB}); ${[...counts].map(([status, n]) => `${n} × ${status}`).join(', ')} in ${(answeredMs / 1000).toFixed(1)} s; GET / ${root.count} probes, slowest ${root.slowestMs} ms`,
      })
      if (!(await alive(server))) break // eslint-disable-line no-await-in-loop
    }
  })
  return result
}

/** Item 8: client text in the log and in responses, cut and counted, whatever its size. */
export async function checkLogAmplification(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const size = sizes(scale)
  await withServer(RUM_UNLIMITED, async (server) => {
    const {port} = new URL(server.url)
    const line = `{"${'A'.repeat(300_000)}":{}}\n`
    const body = deflateSync(`${RUM_METADATA()}\n${line.repeat(5)}`)
    const logBefore = server.logs().length
    let largestReply = 0
    let ok = 0
    await pool(Array.from({length: size.logRequests}, (_, i) => i), 10, async () => {
      const reply = await request(server.url, {body, headers: {...ndjsonHeaders, 'Content-Encoding': 'deflate'}, path: '/intake/v2/rum/events'})
      largestReply = Math.max(largestReply, reply.body.length)
      if (reply.status === 400) ok++
    })
    await sleep(200) // the last log lines
    const perRequest = (server.logs().length - logBefore) / size.logRequests
    if (ok !== size.logRequests) fail(result, `log amplification: ${ok} of ${size.logRequests} unknown-type requests answered 400`)
    if (perRequest > 4096 || largestReply > 8192) fail(result, `log amplification: ${Math.round(perRequest)} log bytes a request, a response of ${largestReply} bytes`)
    result.figures.push({
      check: 'server review',
      figure: `${size.logRequests} anonymous deflate requests of ${body.length.toLocaleString('en')} bytes, 5 lines \`{"AAA…300,000…":{}}\` each`,
      value: `${ok} × 400; ${Math.round(perRequest).toLocaleString('en')} log bytes a request, largest response ${largestReply.toLocaleString('en')} bytes (before the fix: ~1.5 MB each)`,
    })

    // Every other client string a log line or a response could carry, 8-16 KiB of it.
    const long = 'z'.repeat(15_000)
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const chunks: Buffer[] = []
        const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(text))
        socket.on('data', (chunk: Buffer) => chunks.push(chunk))
        socket.on('error', () => {})
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
      })
    const metadataBody = `${RUM_METADATA().replace('rum-js', 'r'.repeat(ANONYMOUS_METADATA_MAX_BYTES - 200))}\n{"span":{}}\n`
    const probes: Array<[string, () => Promise<string>]> = [
      ['Content-Type', async () => (await request(server.url, {body: `${METADATA}\n`, headers: {Authorization: `Bearer ${server.token}`, 'Content-Type': long}})).body],
      ['URL path', () => raw(`GET /${'p'.repeat(8000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)],
      ['Authorization scheme', async () => (await request(server.url, {headers: {Authorization: `${long} token`}, method: 'GET', path: '/config/v1/agents'})).body],
      ['anonymous agent name (refused)', async () => (await request(server.url, {body: metadataBody, headers: ndjsonHeaders, path: '/intake/v2/rum/events'})).body],
    ]
    for (const [label, probe] of probes) {
      const logAt = server.logs().length
      // eslint-disable-next-line no-await-in-loop -- one at a time, its log line measured
      const reply = await probe()
      await sleep(100) // eslint-disable-line no-await-in-loop
      const logged = server.logs().length - logAt
      if (reply.length > 2048 || logged > 2048) fail(result, `log amplification: ${label}: a response of ${reply.length} bytes, ${logged} log bytes`)
      result.figures.push({check: 'server review', figure: `client text of 8-15 KB: ${label}`, value: `response ${reply.length} bytes, log ${logged} bytes`})
    }
  })
  return result
}

/**
 * Item 12: gzip bombs (4 Mi empty lines in 4 KiB, each request sent whole) from clients killed while the
 * server still reads them, then SIGTERM: nothing is left to wait for, so the server stops at once, far
 * inside its shutdown bound. At full size also with the clients still connected: the server stops
 * within its bound (30 s, then 1 s of grace), cutting what is left.
 */
export async function checkShutdownAfterBombs(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const size = sizes(scale)
  const bomb = gzipSync(Buffer.concat([Buffer.from(`${METADATA}\n`), Buffer.alloc(4 * MiB, 0x0a)]))
  const bound = DEFAULT_SHUTDOWN_TIMEOUT_MS + SHUTDOWN_GRACE_MS
  const runs: Array<[string, boolean]> = [['clients killed while they are read, then SIGTERM', true], ...(scale === 'full' ? [['clients still connected at SIGTERM', false] as [string, boolean]] : [])]
  for (const [label, kill] of runs) {
    // eslint-disable-next-line no-await-in-loop -- one server a run
    const server = await launch({})
    try {
      const {port} = new URL(server.url)
      const head = `POST /intake/v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nAuthorization: Bearer ${server.token}\r\nContent-Encoding: gzip\r\n`
      // eslint-disable-next-line no-await-in-loop
      const sent = await pool(Array.from({length: size.bombs}, (_, i) => i), 50, async () => {
        const held = await holdRequest(Number(port), head, bomb)
        held.release()
        return held
      })
      await sleep(size.bombSeconds * 1000) // eslint-disable-line no-await-in-loop -- the server busy reading them
      if (kill) for (const held of sent) held.socket.destroy()
      // eslint-disable-next-line no-await-in-loop
      const stopped = await server.stop()
      for (const held of sent) held.socket.destroy()
      // Killed clients leave nothing in flight: the stop must not wait at all (before the fix: the
      // bombs' whole work, 0.2 s each); connected ones are cut at the bound.
      const limit = kill ? 5000 : bound + 10_000
      if (stopped.code !== 0 || stopped.ms > limit) fail(result, `shutdown after bombs, ${label}: exit ${stopped.code} in ${stopped.ms} ms, expected 0 within ${limit} ms`)
      result.figures.push({
        check: 'server review',
        figure: `${size.bombs} gzip bombs (${bomb.length.toLocaleString('en')} bytes, 4 Mi empty lines each), ${label}`,
        value: `exit ${stopped.code} in ${(stopped.ms / 1000).toFixed(1)} s (the bound: ${bound / 1000} s)`,
      })
    } finally {
      await server.stop() // eslint-disable-line no-await-in-loop
      server.home.cleanup()
    }
  }

  return result
}

export async function checkReviewServer(options: {scale: Scale}): Promise<CheckResult> {
  const all = newResult()
  for (const check of [checkNesting, checkAmplification, checkHeldMemory, checkLogAmplification, checkShutdownAfterBombs, checkChunkDrip, checkInspector, checkDecodedBounds, checkTornLine, checkRotationFifo, checkSlowKey, checkBigConfig, checkPlantedConfig, checkConnections]) {
    // eslint-disable-next-line no-await-in-loop -- one server at a time: memory is measured
    const one = await check(options.scale).catch((error: Error) => ({failures: [`${check.name} crashed: ${error.stack}`], figures: [], skipped: []}))
    all.figures.push(...one.figures)
    all.failures.push(...one.failures)
    all.skipped.push(...one.skipped)
  }

  return all
}

// ---------------------------------------------------------------------------------------------------
// The hostile reviews of issue 11's hardening (fix-net findings, /work/notes/fix-net-findings.md):
// each check below failed on the tree before its fix (main at ccb10b5).

/** Resolves with the first log line (text) matching `pattern` logged after `after` characters, or undefined after `ms`. */
async function logLine(server: Launched, pattern: RegExp, after = 0, ms = 20_000): Promise<string | undefined> {
  const deadline = Date.now() + ms
  for (;;) {
    const found = server
      .logs()
      .slice(after)
      .split('\n')
      .find((line) => pattern.test(line))
    if (found !== undefined || Date.now() > deadline || server.child.exitCode !== null) return found
    await sleep(50) // eslint-disable-line no-await-in-loop -- polling the log
  }
}

interface DripOptions {
  count: number
  bytes: number
  gzip: boolean
  addresses: string[]
  /** how long the server may take to read it all */
  timeoutMs: number
}

/** Sends `count` requests whose bodies never end, as 1-byte HTTP chunks; resolves once all is written (`taken`), or after the timeout. */
async function dripChunks(port: number, options: DripOptions): Promise<{sockets: net.Socket[]; taken: boolean}> {
  const line = options.gzip ? gzipSync(Buffer.from(`${RUM_METADATA()}\n${randomBytes(options.bytes).toString('base64').slice(0, options.bytes)}`)).subarray(0, -20) : Buffer.alloc(options.bytes, 0x61)
  const body = options.gzip ? line : Buffer.concat([Buffer.from(`${RUM_METADATA()}\n`), line])
  const framed = Buffer.concat(Array.from(body, (byte) => Buffer.from([0x31, 0x0d, 0x0a, byte, 0x0d, 0x0a])))
  const head = `POST /intake/v2/rum/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n${options.gzip ? 'Content-Encoding: gzip\r\n' : ''}Transfer-Encoding: chunked\r\n\r\n`
  const sockets: net.Socket[] = []
  const sent = pool(Array.from({length: options.count}, (_, i) => i), 20, (i) =>
    new Promise<void>((resolve, reject) => {
      const socket = net.connect({host: '127.0.0.1', localAddress: options.addresses[i % options.addresses.length], port})
      sockets.push(socket)
      socket.once('error', reject)
      socket.once('connect', () => {
        socket.off('error', reject)
        socket.on('error', () => {})
        socket.write(head)
        socket.write(framed, () => resolve())
      })
    }),
  )
  // A server that stopped reading (dying of its heap) never takes it all.
  const taken = await Promise.race([sent.then(() => true), sleep(options.timeoutMs).then(() => false)])
  if (!taken) for (const socket of sockets) socket.destroy()
  return {sockets, taken}
}

/** Waits until the server's CPU time (from /proc) stops growing: it has read what was sent. At most `ms`. */
async function settle(pid: number, ms = 120_000): Promise<void> {
  const cpu = async () => {
    const fields = (await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ') ?? []
    return Number(fields[11] ?? 0) + Number(fields[12] ?? 0)
  }

  const deadline = Date.now() + ms
  for (let last = -1, now = await cpu(); now !== last && Date.now() < deadline; last = now, now = await cpu()) await sleep(500) // eslint-disable-line no-await-in-loop
}

/**
 * Finding 1: lines that never end, sent as 1-byte HTTP chunks (plain and gzip), by anonymous clients
 * within their memory share, to a server whose V8 heap is capped: before the fix each chunk held ~200
 * bytes of heap against 1 byte charged, and the server died of "heap limit" (20 plain connections held
 * 2.4 GiB; 80 from 4 addresses crashed it). Now it lives on, its memory what the budget allows.
 */
export async function checkChunkDrip(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const full = scale === 'full'
  const heapMiB = full ? 256 : 128
  const addresses = full ? ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'] : ['127.0.0.1']
  const timeoutMs = full ? 300_000 : 60_000
  const runs: Array<[string, DripOptions]> = [
    ['plain', {addresses, bytes: full ? 300_000 : 100_000, count: full ? 80 : 16, gzip: false, timeoutMs}],
    ['gzip', {addresses, bytes: full ? 300_000 : 100_000, count: full ? 80 : 8, gzip: true, timeoutMs}],
  ]
  await withServer(RUM, async (server) => {
    const port = Number(new URL(server.url).port)
    for (const [label, options] of runs) {
      const t0 = Date.now()
      // eslint-disable-next-line no-await-in-loop -- one run after the other, memory measured each
      const {sockets, taken} = await dripChunks(port, options).catch((error: Error) => {
        fail(result, `chunk drip (${label}): could not send: ${error.message}`)
        return {sockets: [], taken: false}
      })
      if (taken) await settle(server.pid) // eslint-disable-line no-await-in-loop
      const peak = server.peakSinceMark()
      // eslint-disable-next-line no-await-in-loop
      const up = taken && (await alive(server))
      for (const socket of sockets) socket.destroy()
      const chunks = options.count * options.bytes
      if (!up) {
        const fatal = /FATAL ERROR[^\n]*/.exec(server.logs())?.[0]
        fail(result, `chunk drip (${label}): ${options.count} connections of ${options.bytes.toLocaleString('en')} 1-byte chunks: the server ${fatal ? `died: ${fatal}` : `did not read them within ${timeoutMs / 1000} s`}`)
        server.child.kill('SIGKILL')
      }

      result.figures.push({
        check: 'server review (fix-net)',
        figure: `finding 1: ${options.count} anonymous ${label} requests from ${options.addresses.length} address(es), ${options.bytes.toLocaleString('en')} bytes each as 1-byte chunks (${(chunks / 1e6).toFixed(1)} M chunks), V8 heap capped at ${heapMiB} MiB`,
        value: `${up ? 'server up' : 'server DIED'}; RSS ${server.baseline} MiB at start, peak ${peak} MiB; read in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      })
      if (!up) break
    }
  }, {env: {NODE_OPTIONS: `--max-old-space-size=${heapMiB}`}})
  return result
}

/**
 * Finding 2: SIGUSR1 made Node open its inspector on 127.0.0.1:9229, where any local user could run code
 * in the server and read the keystore password (a root server, user nobody). Now the server logs the
 * signal and ignores it; and it refuses to start with the inspector already open (NODE_OPTIONS=--inspect).
 */
export async function checkInspector(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const signals = scale === 'full' ? 20 : 3
  await withServer(RUM, async (server) => {
    const logAt = server.logs().length
    for (let i = 0; i < signals; i++) {
      server.child.kill('SIGUSR1')
      await sleep(100) // eslint-disable-line no-await-in-loop
    }

    const ignored = await logLine(server, /SIGUSR1 ignored/, logAt, 5000)
    await sleep(500)
    const opened = /Debugger listening[^\n]*/.exec(server.logs().slice(logAt))?.[0]
    const up = await alive(server)
    if (opened || !ignored || !up) fail(result, `SIGUSR1: ${opened ? `the inspector opened (${opened})` : 'no inspector'}; ${ignored ? 'logged as ignored' : 'NOT logged'}; server ${up ? 'up' : 'DOWN'}`)
    result.figures.push({check: 'server review (fix-net)', figure: `finding 2: ${signals} × SIGUSR1 to a running server`, value: `${opened ? 'inspector OPENED' : 'no inspector'}; "SIGUSR1 ignored" ${ignored ? 'logged' : 'NOT logged'}; GET / ${up ? '200' : 'failed'}`})
  })
  const refused = await launch({env: {NODE_OPTIONS: '--inspect=127.0.0.1:0'}}).then(
    async (server) => {
      await server.stop()
      server.home.cleanup()
      return 'started'
    },
    (error: Error) => error.message,
  )
  if (!/exited 1: [\s\S]*the Node\.js inspector is open/.test(refused)) fail(result, `NODE_OPTIONS=--inspect: expected exit 1 naming the inspector, got: ${refused.slice(-300)}`)
  result.figures.push({check: 'server review (fix-net)', figure: 'finding 2: NODE_OPTIONS=--inspect=127.0.0.1:0', value: refused === 'started' ? 'STARTED with the inspector open' : 'refused to start (exit 1), naming the inspector'})
  return result
}

/** A gzip body: `head`, then `mib` MiB of `unit` repeated. */
function gzipBomb(head: string, mib: number, unit: string): Promise<Buffer> {
  const gzip = createGzip({level: 9})
  const parts: Buffer[] = []
  gzip.on('data', (chunk: Buffer) => parts.push(chunk))
  gzip.write(head)
  const block = Buffer.alloc(MiB, unit)
  for (let i = 0; i < mib; i++) gzip.write(block)
  gzip.end()
  return new Promise((resolve) => {
    gzip.on('end', () => resolve(Buffer.concat(parts)))
  })
}

/** The server's CPU time so far, in seconds (/proc). */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ') ?? []
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100
}

/**
 * Finding 7: small gzip bodies that decode to gigabytes of newlines, or of `x` lines, cost a core for
 * minutes (1 GiB of newlines: 65 s; 0.125 GiB of `x` lines: 16 s) and were answered 202. Now a request
 * decodes at most REQUEST_DECODED_MAX_BYTES, ends after MAX_REJECTED_LINES invalid lines, and an
 * anonymous address is charged for what it sends decoded; empty lines are skipped at the cost of a scan.
 */
export async function checkDecodedBounds(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const full = scale === 'full'
  await withServer(RUM, async (server) => {
    const auth = {Authorization: `Bearer ${server.token}`}
    const cases: Array<[string, string, number, string, Record<string, string>, number, string]> = [
      ['anonymous, newlines', '/intake/v2/rum/events', full ? 1024 : 64, '\n', {}, 429, ANONYMOUS_DECODED_RATE_EXCEEDED],
      ['anonymous, `x` lines', '/intake/v2/rum/events', full ? 256 : 16, 'x\n', {}, 400, TOO_MANY_REJECTED_LINES],
      ['with the token, newlines', '/intake/v2/events', full ? 1024 : REQUEST_DECODED_MAX_BYTES / MiB + 16, '\n', auth, 400, REQUEST_DECODED_TOO_LARGE],
      ['with the token, `x` lines', '/intake/v2/events', full ? 256 : 16, 'x\n', auth, 400, TOO_MANY_REJECTED_LINES],
    ]
    for (const [label, route, mib, unit, headers, status, message] of cases) {
      const metadata = route.includes('rum') ? RUM_METADATA() : METADATA
      // eslint-disable-next-line no-await-in-loop -- one bomb at a time, its cost measured
      const body = await gzipBomb(`${metadata}\n`, mib, unit)
      const cpuBefore = await cpuSeconds(server.pid) // eslint-disable-line no-await-in-loop
      const t0 = Date.now()
      // eslint-disable-next-line no-await-in-loop
      const reply = await request(server.url, {body, headers: {...ndjsonHeaders, ...headers, 'Content-Encoding': 'gzip'}, path: route, timeoutMs: 600_000}).catch(
        (error: Error) => ({body: error.message, headers: {}, status: 0}),
      )
      const ms = Date.now() - t0
      const cpu = (await cpuSeconds(server.pid)) - cpuBefore // eslint-disable-line no-await-in-loop
      const good = reply.status === status && errorsOf(reply).includes(message)
      if (!good) fail(result, `decoded bounds: ${label} (${mib} MiB decoded, ${body.length.toLocaleString('en')} bytes sent): status ${reply.status}, ${reply.body.slice(0, 200)}; expected ${status} ${message}`)
      result.figures.push({
        check: 'server review (fix-net)',
        figure: `finding 7: ${label}: ${body.length.toLocaleString('en')} bytes of gzip decoding to ${mib} MiB`,
        value: `${reply.status} ${errorsOf(reply).at(-1)?.slice(0, 60) ?? ''} in ${(ms / 1000).toFixed(1)} s, ${cpu.toFixed(1)} s of server CPU`,
      })
      // eslint-disable-next-line no-await-in-loop
      if (!(await alive(server))) break
    }
  })
  return result
}

/** Every line of the output files, and the ones that do not parse as JSON. */
async function outputLines(server: Launched, dir = path.join(server.home.dir, 'data', 'apm-server')): Promise<{lines: string[]; unreadable: string[]}> {
  const lines: string[] = []
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    lines.push(...(await fs.readFile(path.join(dir, name), 'utf8')).split('\n').filter((line) => line !== '')) // eslint-disable-line no-await-in-loop
  }

  return {
    lines,
    unreadable: lines.filter((line) => {
      try {
        JSON.parse(line)
        return false
      } catch {
        return true
      }
    }),
  }
}

/**
 * Finding 4: a write that fails part way (a full disk writes what fits, then fails) left the start of a
 * line in the output file, and the next event answered 202 was glued to it, unreadable. Fast: the output
 * file limited by RLIMIT_FSIZE (prlimit: writes past it are short, then EFBIG). Full, as root: also on a
 * 256 KiB tmpfs filled to its last 20 KiB, then given space back, as the review did.
 */
export async function checkTornLine(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const limit = 64 * 1024
  interface Disk {
    /** the output directory, when not the default */
    dir?: string
    options: LaunchOptions
    /** gives space back */
    free: () => Promise<void>
    done: () => void
  }
  const runs: Array<[string, () => Promise<Disk>]> = [[`the output file limited to ${limit / 1024} KiB (RLIMIT_FSIZE)`, async () => ({done() {}, async free() {}, options: {wrap: ['prlimit', `--fsize=${limit}`]}})]]
  if (scale === 'full' && process.getuid?.() === 0) {
    runs.push([
      'a 256 KiB tmpfs, full to its last 20 KiB, then given space back',
      async () => {
        const mount = tempDir('apm-torture-tmpfs-')
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mount.dir])
        const dir = path.join(mount.dir, 'out')
        const free = Number(execFileSync('df', ['--output=avail', '-B1', mount.dir], {encoding: 'utf8'}).split('\n')[1])
        await fs.writeFile(path.join(mount.dir, 'filler'), Buffer.alloc(Math.max(0, free - 20_000))).catch(() => {})
        const done = () => {
          execFileSync('umount', [mount.dir])
          mount.cleanup()
        }

        return {dir, done, free: () => fs.rm(path.join(mount.dir, 'filler')), options: {extra: ['-E', `output.file.path=${dir}`]}}
      },
    ])
  }

  for (const [label, prepare] of runs) {
    // eslint-disable-next-line no-await-in-loop -- one server a run
    const disk = await prepare().catch((error: Error) => {
      result.skipped.push(`torn line (${label}): cannot set up: ${error.message}`)
    })
    if (!disk) continue
    try {
      // eslint-disable-next-line no-await-in-loop
      await withServer(
        [...RUM, ...(disk.options.extra ?? [])],
        async (server) => {
          const auth = {...ndjsonHeaders, Authorization: `Bearer ${server.token}`}
          const events = (prefix: string, count: number) => Array.from({length: count}, (_, i) => JSON.stringify({span: {id: `${prefix}-${i}`, pad: 'p'.repeat(150)}})).join('\n')
          const first = await request(server.url, {body: `${METADATA}\n${events('first', 10)}\n`, headers: auth})
          const big = await request(server.url, {body: `${METADATA}\n${events('big', 600)}\n`, headers: auth})
          await disk.free()
          const good = await request(server.url, {body: `${METADATA}\n{"span":{"id":"GOOD-EVENT-202"}}\n`, headers: auth})
          await server.stop()
          const {lines, unreadable} = await outputLines(server, disk.dir)
          const kept = lines.some((line) => line.includes('GOOD-EVENT-202') && !unreadable.includes(line))
          const statuses = `${first.status}, ${big.status}, ${good.status}`
          if (first.status !== 202 || big.status !== 500 || good.status !== 202 || !kept || unreadable.length > 0) {
            fail(result, `torn line (${label}): statuses ${statuses} (expected 202, 500, 202); ${unreadable.length} unreadable lines (${unreadable.map((line) => line.slice(0, 60)).join(' | ')}); the 202'd event ${kept ? 'readable' : 'NOT readable'}`)
          }

          result.figures.push({
            check: 'server review (fix-net)',
            figure: `finding 4: ${label}: 10 events, then 600 that do not fit, then one more`,
            value: `${statuses}; ${lines.length} lines in the output, ${unreadable.length} unreadable; the last event ${kept ? 'readable' : 'NOT readable'}`,
          })
        },
        {wrap: disk.options.wrap},
      )
    } finally {
      disk.done()
    }
  }

  return result
}

/**
 * L1: another user who can write the output directory put a FIFO at the oldest rotation slot (and empty
 * files below it): the rotation opened it to hold it, blocking in open(2) for good, so no request was
 * answered and SIGTERM did nothing. Now the rotation replaces it without waiting.
 */
export async function checkRotationFifo(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const rotations = scale === 'full' ? 50 : 3
  const extra = ['-E', 'output.file.rotate_every_kb=1', '-E', 'output.file.number_of_files=4']
  await withServer(extra, async (server) => {
    const dir = path.join(server.home.dir, 'data', 'apm-server')
    await fs.writeFile(path.join(dir, 'apm-server.1'), '')
    await fs.writeFile(path.join(dir, 'apm-server.2'), '')
    execFileSync('mkfifo', [path.join(dir, 'apm-server.3')])
    const auth = {...ndjsonHeaders, Authorization: `Bearer ${server.token}`}
    const body = `${METADATA}\n${Array.from({length: 10}, (_, i) => JSON.stringify({span: {id: `s${i}`, pad: 'p'.repeat(200)}})).join('\n')}\n`
    const statuses: number[] = []
    for (let i = 0; i < rotations; i++) {
      // eslint-disable-next-line no-await-in-loop -- one after another: each rotates
      statuses.push((await request(server.url, {body, headers: auth, timeoutMs: 5000}).catch(() => ({status: 0}))).status)
    }

    const up = await Promise.race([alive(server), sleep(5000).then(() => false)])
    if (!up) server.child.kill('SIGKILL')
    const stopped = await server.stop()
    const ok = up && statuses.every((status) => status === 202) && stopped.code === 0
    if (!ok) fail(result, `rotation onto a FIFO: statuses ${statuses.join(' ')}, GET / ${up ? 'answered' : 'NOT answered within 5 s (killed)'}, stop: exit ${stopped.code}`)
    result.figures.push({
      check: 'server review (fix-net)',
      figure: `L1: a FIFO at the oldest of 4 rotation slots, empty files below it; ${rotations} batches that rotate`,
      value: `${statuses.filter((status) => status === 202).length}/${rotations} × 202; GET / ${up ? 'answered' : 'NOT answered'}; SIGTERM: exit ${stopped.code} in ${stopped.ms} ms`,
    })
  })
  return result
}

/** `GET /` every 100 ms while `body` runs (HTTPS with `ca`): the slowest answer, and the failures. */
async function probedWhile<T>(server: Launched, body: () => Promise<T>): Promise<{value: T; slowestMs: number; failed: number}> {
  let running = true
  let slowestMs = 0
  let failed = 0
  const loop = (async () => {
    while (running) {
      const t0 = Date.now()
      // eslint-disable-next-line no-await-in-loop -- one probe at a time
      const reply = await request(server.url, {agent: false, ca: server.ca, method: 'GET', path: '/', timeoutMs: 120_000}).catch(() => undefined)
      slowestMs = Math.max(slowestMs, Date.now() - t0)
      if (reply?.status !== 200) failed++
      await sleep(100) // eslint-disable-line no-await-in-loop
    }
  })()
  const value = await body()
  running = false
  await loop
  return {failed, slowestMs, value}
}

/**
 * Finding 5: a TLS key encrypted with a huge PBKDF2 iteration count (random ciphertext: OpenSSL runs the
 * whole derivation before it can tell) froze the server at a reload, 35 s for 100 million, past the 30 s
 * reload bound, SIGTERM waiting; and the start. Now the cost is read from the key file first: over the
 * bound, the reload fails at once and the server answers throughout; the start fails at once.
 */
export async function checkSlowKey(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const iterations = scale === 'full' ? 2n ** 31n - 1n : 20_000_000n
  const slowKey = pem(pbkdf2Key(iterations))
  const server = await launch({extra: ['-E', 'apm-server.ssl.key_passphrase=pass'], tls: true})
  try {
    const keyFile = path.join(server.home.dir, 'key.pem')
    await fs.writeFile(keyFile, slowKey)
    const logAt = server.logs().length
    const t0 = Date.now()
    const {slowestMs, value: outcome} = await probedWhile(server, async () => {
      server.child.kill('SIGHUP')
      return logLine(server, /reload failed|configuration reloaded/, logAt, 120_000)
    })
    const ms = Date.now() - t0
    const refused = /reload failed/.test(outcome ?? '') && /PBKDF2 iterations, over the/.test(outcome ?? '')
    if (!refused || slowestMs > 5000) fail(result, `slow key at a reload: ${outcome?.slice(0, 300) ?? 'no outcome'} after ${ms} ms; GET / slowest ${slowestMs} ms`)
    result.figures.push({
      check: 'server review (fix-net)',
      figure: `finding 5: SIGHUP with a TLS key of ${iterations.toLocaleString('en')} PBKDF2 iterations`,
      value: `${refused ? 'reload refused, naming the iteration count' : 'NOT refused for its cost'} after ${ms} ms; GET / slowest ${slowestMs} ms`,
    })
    await server.stop()
    const t1 = Date.now()
    const args = ['run', '-E', 'apm-server.host=127.0.0.1:0', '-E', 'apm-server.auth.secret_token=${APM_TOKEN}', '-E', 'apm-server.ssl.key_passphrase=pass']
    args.push('-E', `apm-server.ssl.certificate=${path.join(server.home.dir, 'cert.pem')}`, '-E', `apm-server.ssl.key=${keyFile}`)
    const started = await cli(args, {cwd: server.home.dir, timeoutMs: 60_000})
    const startMs = Date.now() - t1
    const startRefused = started.code === 1 && /PBKDF2 iterations, over the/.test(started.stderr)
    if (!startRefused) fail(result, `slow key at start: exit ${started.code} after ${startMs} ms: ${started.stderr.slice(-300)}`)
    result.figures.push({
      check: 'server review (fix-net)',
      figure: `finding 5: apm-server run with that key`,
      value: `exit ${started.code} after ${startMs} ms${startRefused ? ', naming the iteration count' : ''}`,
    })
  } finally {
    await server.stop()
    server.home.cleanup()
  }

  return result
}

/**
 * Finding 6 (and break-local F4): a config file of 60,000 settings (589 KB, under the old 4 MiB cap)
 * loaded in quadratic time: a SIGHUP froze the server for 63 s (no answer, SIGTERM waiting), and each
 * reload logged 60,000 warning lines. Now the load is linear, a file holds at most MAX_SETTINGS settings
 * and MAX_CONFIG_BYTES, and warnings are counted past the first few: the reload fails at once, the server
 * answering throughout; the start fails at once.
 */
export async function checkBigConfig(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const counts = scale === 'full' ? [60_000, 100_000, 400_000] : [60_000]
  await withServer(RUM, async (server) => {
    const file = path.join(server.home.dir, 'apm-server.yml')
    for (const count of counts) {
      const lines = Array.from({length: count}, (_, i) => `x${i}: 1\n`).join('')
      await fs.writeFile(file, `apm-server.rum.enabled: true\n${lines}`, {mode: 0o600}) // eslint-disable-line no-await-in-loop
      const bytes = (await fs.stat(file)).size // eslint-disable-line no-await-in-loop
      const logAt = server.logs().length
      const t0 = Date.now()
      // eslint-disable-next-line no-await-in-loop
      const {slowestMs, value: outcome} = await probedWhile(server, async () => {
        server.child.kill('SIGHUP')
        return logLine(server, /reload failed|configuration reloaded/, logAt, 300_000)
      })
      const ms = Date.now() - t0
      const logged = server.logs().length - logAt
      const refused = /reload failed/.test(outcome ?? '') && /settings, over the|is over 1 MiB/.test(outcome ?? '')
      if (!refused || slowestMs > 5000 || logged > 4096) fail(result, `big config (${count} settings, ${bytes} bytes): ${outcome?.slice(0, 200) ?? 'no outcome'} after ${ms} ms; GET / slowest ${slowestMs} ms; ${logged} log bytes`)
      result.figures.push({
        check: 'server review (fix-net)',
        figure: `finding 6: SIGHUP with a config file of ${count.toLocaleString('en')} settings (${bytes.toLocaleString('en')} bytes)`,
        value: `${refused ? 'reload refused' : 'NOT refused'} after ${ms} ms (${/is over 1 MiB/.test(outcome ?? '') ? 'over the size cap, unread' : 'over the settings cap'}); GET / slowest ${slowestMs} ms; ${logged.toLocaleString('en')} log bytes`,
      })
    }

    const stopped = await server.stop()
    const t1 = Date.now()
    const started = await cli(['run', '-E', 'apm-server.host=127.0.0.1:0'], {cwd: server.home.dir, timeoutMs: 120_000})
    const startMs = Date.now() - t1
    if (started.code !== 1 || started.stderr.length > 4096) fail(result, `big config at start: exit ${started.code} after ${startMs} ms, ${started.stderr.length} bytes of stderr`)
    result.figures.push({check: 'server review (fix-net)', figure: `finding 6: apm-server run with the last of them; SIGTERM before it`, value: `exit ${started.code} after ${startMs} ms, ${started.stderr.length} bytes of stderr; the stop before: exit ${stopped.code} in ${stopped.ms} ms`})
  })
  return result
}

/**
 * L3 (server part): a planted ./apm-server.yml (another user, in a directory they can write) was trusted
 * by `apm-server run`: it could run the server without authentication, and point output.file.path at
 * `<shared>/loot/${APM_SECRET_TOKEN}`, leaking the token as a directory name. Now a config file must be
 * owned by the user or root and writable by nobody else (strict perms), and the output's names never take
 * a value from the keystore.
 */
export async function checkPlantedConfig(_scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const home = tempDir('apm-torture-planted-')
  try {
    const token = `TOKEN${randomBytes(8).toString('hex')}`
    await cli(['keystore', 'create'], {cwd: home.dir})
    await cli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin'], {cwd: home.dir, input: token})
    const config = path.join(home.dir, 'apm-server.yml')
    const loot = path.join(home.dir, 'loot')
    await fs.mkdir(loot, {mode: 0o777})
    const root = process.getuid?.() === 0
    const cases: Array<[string, string, number, number | undefined, RegExp]> = [
      ['a config file of mode 0666 (anyone could have written it), without a token', 'apm-server.host: "127.0.0.1:0"\n', 0o666, undefined, /has mode 0666, writable by group or others/],
      ...(root ? [['a config file owned by another user (uid 12345), without a token', 'apm-server.host: "127.0.0.1:0"\n', 0o644, 12_345, /owned by uid 12345/] as [string, string, number, number, RegExp]] : []),
      [
        'output.file.path of <shared>/loot/${APM_SECRET_TOKEN}',
        `apm-server.host: "127.0.0.1:0"\napm-server.auth.secret_token: "\${APM_SECRET_TOKEN}"\noutput.file.path: ${loot}/\${APM_SECRET_TOKEN}\n`,
        0o600,
        undefined,
        /output\.file\.path: takes a value from the keystore/,
      ],
    ]
    if (!root) result.skipped.push('planted config: the file of another user needs root (chown)')
    for (const [label, text, mode, owner, refusal] of cases) {
      await fs.rm(config, {force: true}) // eslint-disable-line no-await-in-loop
      await fs.writeFile(config, text) // eslint-disable-line no-await-in-loop
      await fs.chmod(config, mode) // eslint-disable-line no-await-in-loop
      if (owner !== undefined) await fs.chown(config, owner, owner) // eslint-disable-line no-await-in-loop
      // A server that starts would serve: stopped after 3 s (refused ones end at once).
      const run = await cli(['run'], {cwd: home.dir, timeoutMs: 3000}) // eslint-disable-line no-await-in-loop
      const leaked = (await fs.readdir(loot)).filter((name) => name.includes(token)) // eslint-disable-line no-await-in-loop
      const ok = run.code === 1 && refusal.test(run.stderr) && leaked.length === 0 && !run.stderr.includes(token)
      if (!ok) fail(result, `planted config: ${label}: exit ${run.code ?? run.signal}, ${leaked.length} names holding the token in the shared directory: ${run.stderr.slice(0, 300)}`)
      result.figures.push({
        check: 'server review (fix-net)',
        figure: `L3: apm-server run with ${label}`,
        value: `${run.code === 1 ? 'refused (exit 1)' : `exit ${run.code ?? run.signal}`}${refusal.test(run.stderr) ? ', naming why and the fix' : ''}; the token in ${leaked.length} names others can list`,
      })
    }
  } finally {
    home.cleanup()
  }

  return result
}

/**
 * Finding 8: no connection cap: ~1,000 silent connections without a token (kept 90-300 s each) exhausted
 * the server's descriptors; agents got ECONNRESET with nothing in the log, and a reload failed with
 * EMFILE. Now connections without the token hold at most half the cap (one address a sixteenth), the
 * newest taking the place of the oldest (of its address, past the address's share: break-new2 finding 1), silent ones are closed after 10 s, idle ones after 5 s, an answer to a request whose
 * body is still to come closes its connection, and the refusals are logged.
 */
export async function checkConnections(scale: Scale): Promise<CheckResult> {
  const result = newResult()
  const full = scale === 'full'
  const files = full ? 1024 : 256
  const silentCount = full ? 1100 : 600
  const seconds = full ? 25 : 4
  await withServer(
    RUM,
    async (server) => {
      const port = Number(new URL(server.url).port)
      let open = 0
      let closedByServer = 0
      let running = true
      const sockets = new Set<net.Socket>()
      const one = (i: number) => {
        const socket = net.connect({host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 16)}`, port})
        sockets.add(socket)
        socket.on('connect', () => open++)
        socket.on('error', () => {})
        socket.on('close', () => {
          sockets.delete(socket)
          closedByServer++
          if (running) setTimeout(() => one(i), 100)
        })
      }

      for (let i = 0; i < silentCount; i++) one(i)
      await sleep(1000)
      const auth = {...ndjsonHeaders, Authorization: `Bearer ${server.token}`}
      const statuses = new Map<string, number>()
      const deadline = Date.now() + seconds * 1000
      let reload: string | undefined
      while (Date.now() < deadline) {
        // eslint-disable-next-line no-await-in-loop -- an agent, one request at a time, each on a new connection
        const reply = await request(server.url, {agent: false, body: `${METADATA}\n{"span":{"id":"agent"}}\n`, headers: auth, timeoutMs: 10_000}).catch((error: NodeJS.ErrnoException) => ({status: error.code ?? error.message}))
        statuses.set(String(reply.status), (statuses.get(String(reply.status)) ?? 0) + 1)
        if (reload === undefined) {
          const logAt = server.logs().length
          server.child.kill('SIGHUP')
          reload = (await logLine(server, /reload failed|configuration reloaded/, logAt, 30_000)) ?? 'no outcome' // eslint-disable-line no-await-in-loop
        }

        await sleep(200) // eslint-disable-line no-await-in-loop
      }

      running = false
      // A request with a wrong token declaring a body it never sends: answered, and its connection closed.
      const t0 = Date.now()
      const unread = await new Promise<string>((resolve) => {
        const socket = net.connect({host: '127.0.0.1', localAddress: '127.0.0.200', port}, () => socket.write('POST /intake/v2/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 1000000000\r\n\r\n'))
        let answer = ''
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')))
        socket.on('error', () => {})
        socket.on('close', () => resolve(`${answer.split('\r\n')[0]}, closed after ${Date.now() - t0} ms`))
        setTimeout(() => socket.destroy(), 20_000)
      })
      for (const socket of sockets) socket.destroy()
      await sleep(1000) // the server has seen the silent connections close
      // An anonymous (RUM) request on a kept-alive connection: the idle connection is closed after 5 s, not 45 s.
      const t2 = Date.now()
      const idleFor = await new Promise<string>((resolve) => {
        const body = `${RUM_METADATA()}\n`
        const socket = net.connect({host: '127.0.0.1', localAddress: '127.0.0.202', port}, () =>
          socket.write(`POST /intake/v2/rum/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
        )
        let answer = ''
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')))
        socket.on('error', () => {})
        socket.on('close', () => resolve(`${answer.split('\r\n')[0]}, closed after ${Date.now() - t2} ms`))
        setTimeout(() => socket.destroy(), 20_000)
      })
      // Full size: how long one silent connection is kept (before: 90 s, headersTimeout 60 s checked every 30 s).
      if (full) await sleep(2000) // the server has seen the others close
      const silentFor = full
        ? await new Promise<number>((resolve) => {
            const t1 = Date.now()
            const socket = net.connect({host: '127.0.0.1', localAddress: '127.0.0.201', port})
            socket.on('error', () => {})
            socket.on('close', () => resolve(Date.now() - t1))
            setTimeout(() => socket.destroy(), 120_000)
          })
        : undefined
      if (silentFor !== undefined && silentFor > HEADERS_TIMEOUT_MS + 5000) fail(result, `connections: a silent connection was kept ${silentFor} ms`)
      const refusals = /refused or closed \d+ connections? past the connection caps/.test(server.logs())
      const agentOk = [...statuses.keys()].every((status) => status === '202')
      const reloaded = /configuration reloaded/.test(reload ?? '')
      const unreadClosed = /^HTTP\/1\.1 401/.test(unread) && Number(/after (\d+) ms/.exec(unread)?.[1]) < 5000
      const idleMs = Number(/after (\d+) ms/.exec(idleFor)?.[1])
      const idleClosed = /^HTTP\/1\.1 202/.test(idleFor) && idleMs >= UNAUTHENTICATED_IDLE_MS - 500 && idleMs < UNAUTHENTICATED_IDLE_MS + 3000
      if (!agentOk || !reloaded || !refusals || !unreadClosed || !idleClosed) {
        fail(result, `connections: agent ${[...statuses].map(([status, n]) => `${n} × ${status}`).join(', ')}; reload: ${reload?.slice(0, 200)}; refusals logged: ${refusals}; unread body: ${unread}; anonymous idle: ${idleFor}`)
      }

      result.figures.push({
        check: 'server review (fix-net)',
        figure: `finding 8: ${silentCount.toLocaleString('en')} silent connections from 16 addresses, reopened as closed, ${seconds} s, open files limited to ${files}`,
        value: `agent with the token ${[...statuses].map(([status, n]) => `${n} × ${status}`).join(', ')}; SIGHUP: ${reloaded ? 'reloaded' : 'FAILED'}; ${closedByServer.toLocaleString('en')} silent connections refused or closed, refusals ${refusals ? 'logged' : 'NOT logged'}; a wrong token and a 1 GB body never sent: ${unread}; an idle anonymous connection: ${idleFor}${silentFor === undefined ? '' : `; a silent connection closed after ${(silentFor / 1000).toFixed(1)} s`}`,
      })
    },
    {wrap: ['prlimit', `--nofile=${files}:${files}`]},
  )
  return result
}
