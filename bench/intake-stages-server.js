#!/usr/bin/env node
/**
 * The intake decomposition (bench/cases/server.js, group `intake-stages`): one server per stage, each
 * adding one cost of `apm-server run` to the raw server's "gunzip, count lines, 202", so the ratios
 * between neighbours show what each piece costs. Runs the TypeScript sources (node --import tsx), so
 * it measures the working tree, not a build.
 *
 *   node --import tsx bench/intake-stages-server.js STAGE [OUTPUT_DIR]
 *
 * Stages (each includes the ones before it, except where said):
 *   split     raw's gunzip pipe, lines cut by intake's LineSplitter (a Buffer per line)
 *   scan      + each event line checked by the byte scanner, the metadata line parsed
 *   ingest    intake's ingest() (its own body reading, validation), output discarded
 *   output    + the file output (OUTPUT_DIR), as the server writes it
 *   server    startServer(): + routing, Bearer auth, response; logging at warning (no request log)
 *   log       + the per-request log line at info, on stderr (the harness drains it)
 *
 * Logs "listening http://127.0.0.1:PORT" on stderr, like the raw server. BENCH_INTAKE_TOKEN is the
 * Bearer token of the server stages; BENCH_ROTATE_KB the output stage's rotate_every_kb (default 10240).
 */
import {mkdtempSync, rmSync} from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'

import {eventMembers} from '../src/server/intake/json-scan.ts'
import {LineSplitter} from '../src/server/intake/line-splitter.ts'
import {ingest} from '../src/server/intake/v2.ts'
import {createLogger} from '../src/server/logger.ts'
import {FileOutput} from '../src/server/outputs/file.ts'
import {startServer} from '../src/server/server.ts'

const [stage, outputArg] = process.argv.slice(2)
const STAGES = ['split', 'scan', 'ingest', 'output', 'server', 'log']
if (!STAGES.includes(stage)) {
  process.stderr.write(`error: unknown stage ${stage}; use one of ${STAGES.join(', ')}\n`)
  process.exit(2)
}

const MAX_EVENT_SIZE = 300 * 1024
const TOKEN = process.env.BENCH_INTAKE_TOKEN ?? 'bench-token'
const outputDir = outputArg ?? mkdtempSync(path.join(os.tmpdir(), 'intake-stages-'))
const discard = {congested: false, failures: 0, flush: () => Promise.resolve(), write() {}}

let stop
if (stage === 'server' || stage === 'log') {
  const config = {
    anonymous: {allowAgent: [], allowService: [], enabled: false, rateLimit: {eventLimit: 300, ipLimit: 1000}},
    host: '127.0.0.1:0',
    maxEventSize: MAX_EVENT_SIZE,
    output: {filename: 'apm-server', numberOfFiles: 7, path: outputDir, rotateEveryKb: 10 * 1024},
    paths: {config: outputDir, data: outputDir, home: outputDir, logs: outputDir},
    rum: {allowOrigins: ['*'], enabled: false},
    secretToken: TOKEN,
    secretTokenGracePeriodMs: 0,
    ssl: {enabled: false},
  }
  const logger = createLogger({level: stage === 'log' ? 'info' : 'warning'})
  const server = await startServer(config, logger)
  process.stderr.write(`listening ${server.url}\n`)
  stop = () => server.close()
} else {
  const output = stage === 'output' ? await FileOutput.open({filename: 'apm-server', numberOfFiles: 7, path: outputDir, rotateEveryKb: Number(process.env.BENCH_ROTATE_KB ?? 10 * 1024)}) : discard
  const server = http.createServer((req, res) => {
    if (stage === 'ingest' || stage === 'output') {
      ingest(req, req.headers['content-encoding'], {contentLength: Number(req.headers['content-length']), maxEventSize: MAX_EVENT_SIZE, output}).then((result) => {
        res.writeHead(result.status).end()
      })
      return
    }

    let lines = 0
    let metadata = false
    const splitter = new LineSplitter(MAX_EVENT_SIZE, (line) => {
      if (stage === 'scan') {
        if (metadata) eventMembers(line)
        else JSON.parse(line.toString('utf8'))
        metadata = true
      }

      lines++
      return true
    })
    const body = req.headers['content-encoding'] === 'gzip' ? req.pipe(zlib.createGunzip()) : req
    body.on('data', (chunk) => splitter.push(chunk))
    body.on('end', () => {
      splitter.end()
      res.writeHead(lines > 0 ? 202 : 400).end()
    })
  })
  await new Promise((resolve) => {
    server.listen(0, '127.0.0.1', resolve)
  })
  process.stderr.write(`listening http://127.0.0.1:${server.address().port}\n`)
  stop = async () => {
    server.closeAllConnections()
    await new Promise((resolve) => {
      server.close(resolve)
    })
    if (output !== discard) await output.close()
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    try {
      await stop()
    } finally {
      if (!outputArg) rmSync(outputDir, {force: true, recursive: true})
    }

    process.exit(0)
  })
}
