/**
 * Long-running servers for the server cases: start, wait for the "listening" log line, read the URL
 * from it, sample memory from /proc, stop.
 */
import {spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import http from 'node:http'
import zlib from 'node:zlib'

import {cleanEnv, describe} from './proc.js'

/**
 * Starts `spec` and resolves once stderr shows a URL on a "listening" line. stderr keeps being drained
 * (the server logs every request) so a full pipe never slows the server down.
 */
export function startServer(spec, {timeoutMs = 30_000} = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(spec.cmd, spec.args ?? [], {cwd: spec.cwd, env: spec.env ?? cleanEnv(), stdio: ['ignore', 'ignore', 'pipe']})
    let log = ''
    let ready = false
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${describe(spec)} did not log "listening" within ${timeoutMs} ms: ${log.slice(-500)}`))
    }, timeoutMs)
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => {
      if (ready) return
      log += chunk
      const line = log.split('\n').find((candidate) => /listening/.test(candidate) && /https?:\/\/[^\s"]+/.test(candidate))
      if (!line) return
      ready = true
      clearTimeout(timer)
      const url = /https?:\/\/[^\s"]+/.exec(line)[0]
      const exited = new Promise((done) => child.once('exit', done))
      resolve({
        child,
        pid: child.pid,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
          const stopTimer = setTimeout(() => child.kill('SIGKILL'), 10_000)
          await exited
          clearTimeout(stopTimer)
        },
        url,
      })
    })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (!ready) {
        clearTimeout(timer)
        reject(new Error(`${describe(spec)} exited (${code ?? signal}) before listening: ${log.slice(-800)}`))
      }
    })
  })
}

/** Resident set size of a process, in MiB. */
export function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s*(\d+)\s*kB/m.exec(status)[1]) / 1024
}

/** One POST, whole body; resolves to {status, body}. */
export function post(url, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {agent: false, headers: {...headers, 'Content-Length': body.length}, method: 'POST'}, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({body: Buffer.concat(chunks).toString('utf8'), status: res.statusCode}))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * `count` agents that each open a streamed intake request (chunked, gzip), send the metadata line and
 * keep the body open, as an APM agent does between flushes. Resolves once every request has been
 * written; `close()` ends them all.
 */
export async function holdAgents(url, count, headers, {batch = 100} = {}) {
  // One gzip prefix (metadata line, sync-flushed) shared by every connection: a valid, unfinished stream.
  const prefix = zlib.gzipSync(Buffer.from(`${JSON.stringify(METADATA)}\n`), {finishFlush: zlib.constants.Z_SYNC_FLUSH})
  const requests = []
  const target = new URL('/intake/v2/events', url)
  const closedEarly = new Set()
  for (let first = 0; first < count; first += batch) {
    const opened = []
    for (let i = first; i < Math.min(count, first + batch); i++) {
      opened.push(
        new Promise((resolve, reject) => {
          const req = http.request(target, {
            agent: false,
            headers: {...headers, 'Content-Encoding': 'gzip', 'Content-Type': 'application/x-ndjson', 'Transfer-Encoding': 'chunked'},
            method: 'POST',
          })
          req.on('response', (res) => {
            closedEarly.add(req)
            res.resume()
          })
          req.on('error', (error) => {
            if (!req.closing) reject(error)
          })
          req.on('close', () => {
            if (!req.closing) closedEarly.add(req)
          })
          req.write(prefix, (error) => (error ? reject(error) : resolve(req)))
          requests.push(req)
        }),
      )
    }

    // eslint-disable-next-line no-await-in-loop -- batches keep the accept backlog from overflowing
    await Promise.all(opened)
  }

  return {
    /** requests the server answered or closed while they should still be open */
    get closedEarly() {
      return closedEarly.size
    },
    close() {
      for (const req of requests) {
        req.closing = true
        req.destroy()
      }
    },
  }
}

/** What elastic-apm-node sends first; the events that follow are small transactions and spans. */
export const METADATA = {
  metadata: {
    process: {argv: ['node', 'app.js'], pid: 4242, title: 'node'},
    service: {
      agent: {activation_method: 'require', name: 'nodejs', version: '4.18.0'},
      environment: 'bench',
      framework: {name: 'express', version: '4.21.2'},
      language: {name: 'javascript'},
      name: 'bench-service',
      runtime: {name: 'node', version: '20.20.2'},
      version: '1.0.0',
    },
    system: {architecture: 'x64', detected_hostname: 'bench-host', platform: 'linux'},
  },
}

function hex(bytes, seed) {
  return (seed.toString(16).padStart(bytes * 2, '0') + 'a1b2c3d4e5f60718293a4b5c6d7e8f90').slice(0, bytes * 2)
}

/** metadata + `events` events (half transactions, half spans), as ndjson. */
export function intakeBody(events) {
  const lines = [JSON.stringify(METADATA)]
  const now = Date.now() * 1000
  for (let i = 0; i < events; i++) {
    const trace = hex(16, i + 1)
    if (i % 2 === 0) {
      lines.push(
        JSON.stringify({
          transaction: {
            context: {request: {headers: {'user-agent': 'bench'}, method: 'GET', url: {full: `http://bench/items/${i}`, pathname: `/items/${i}`}}, response: {status_code: 200}},
            duration: 12.5,
            id: hex(8, i + 1),
            name: 'GET /items/:id',
            outcome: 'success',
            result: 'HTTP 2xx',
            sampled: true,
            span_count: {dropped: 0, started: 1},
            timestamp: now + i,
            trace_id: trace,
            type: 'request',
          },
        }),
      )
    } else {
      lines.push(
        JSON.stringify({
          span: {
            action: 'query',
            context: {db: {statement: 'SELECT * FROM items WHERE id = $1', type: 'sql'}},
            duration: 3.2,
            id: hex(8, i + 1000),
            name: 'SELECT FROM items',
            outcome: 'success',
            parent_id: hex(8, i),
            subtype: 'postgresql',
            timestamp: now + i,
            trace_id: trace,
            transaction_id: hex(8, i),
            type: 'db',
          },
        }),
      )
    }
  }

  return Buffer.from(`${lines.join('\n')}\n`)
}
