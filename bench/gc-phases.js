#!/usr/bin/env node
/**
 * The server's speed phases (issue 17), watched: one `apm-server run` (the built CLI, auth off) under the
 * intake benchmark's load for a while, its CPU per request second by second (/proc) and its garbage
 * collections (bench/lib/gc-sampler.cjs, preloaded); with --baseline, another built checkout's server
 * the same way, the two alternating, so that both see the same machine.
 *
 *   node bench/gc-phases.js [--seconds=60] [--pairs=1] [--baseline=DIR] [--v8=FLAG]... [--out=DIR]
 *
 * Prints one line per run: mark-compacts, seconds with two or more of them (a slow phase), and the
 * CPU per request per second (p10 / median / p90 / mean), the first 3 s (warm-up) left out. --v8 passes
 * a V8 flag to every server (e.g. --v8=--trace-gc-verbose, whose lines go to --out); --out keeps each
 * run's per-second samples and the server's stdout (V8's traces) in DIR.
 */
import {spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'

import autocannon from 'autocannon'

import {cleanEnv, NODE, ROOT} from './lib/proc.js'
import {intakeBody} from './lib/servers.js'

const WARMUP_SECONDS = 3
const SAMPLER = path.join(ROOT, 'bench', 'lib', 'gc-sampler.cjs')
const CLOCK_TICKS = 100

function parseArgs(argv) {
  const options = {baseline: undefined, out: undefined, pairs: 1, seconds: 60, v8: []}
  for (const arg of argv) {
    const [name, value] = arg.split(/=(.*)/s)
    if (name === '--seconds') options.seconds = Number(value)
    else if (name === '--pairs') options.pairs = Number(value)
    else if (name === '--baseline') options.baseline = path.resolve(value)
    else if (name === '--v8') options.v8.push(value)
    else if (name === '--out') options.out = path.resolve(value)
    else {
      process.stderr.write(`error: unknown argument ${arg}; see the comment at the top of bench/gc-phases.js\n`)
      process.exit(2)
    }
  }

  if (!(options.seconds > WARMUP_SECONDS) || !(options.pairs >= 1)) {
    process.stderr.write(`error: --seconds must be over ${WARMUP_SECONDS} and --pairs at least 1\n`)
    process.exit(2)
  }

  return options
}

/** Starts the server of checkout `root`; resolves with its URL and the lines it wrote on stdout so far (a live array). */
function start(root, config, v8Flags) {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [...v8Flags, '--require', SAMPLER, path.join(root, 'bin', 'run.js'), 'run', '-c', config], {env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe']})
    const stdout = []
    let log = ''
    let url
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => stdout.push(chunk))
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => {
      if (url) return
      log += chunk
      const line = log.split('\n').find((candidate) => /listening/.test(candidate) && /https?:\/\/[^\s"]+/.test(candidate))
      if (!line) return
      url = /https?:\/\/[^\s"]+/.exec(line)[0]
      resolve({child, stdout, url})
    })
    child.once('exit', (code) => url || reject(new Error(`${root}: apm-server run exited (${code}) before listening: ${log.slice(-500)}`)))
  })
}

function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS
}

/** One run: the server under load for `seconds`; per-second CPU per request and GC samples. */
async function watch(root, config, {seconds, v8}, body) {
  const server = await start(root, config, v8)
  const perSecond = []
  let answered = 0
  try {
    const load = autocannon({
      body,
      connections: 10,
      duration: seconds,
      headers: {'Content-Encoding': 'gzip', 'Content-Type': 'application/x-ndjson'},
      method: 'POST',
      url: new URL('/intake/v2/events', server.url).href,
    })
    load.on('response', () => answered++)
    let cpu = cpuMs(server.child.pid)
    let count = 0
    const timer = setInterval(() => {
      const now = cpuMs(server.child.pid)
      perSecond.push(answered > count ? ((now - cpu) * 1000) / (answered - count) : Number.NaN)
      cpu = now
      count = answered
    }, 1000)
    const result = await load
    clearInterval(timer)
    if (result.non2xx > 0 || result.errors > 0) throw new Error(`${root}: ${result.non2xx} non-2xx answers, ${result.errors} errors`)
  } finally {
    const exited = new Promise((resolve) => server.child.once('exit', resolve))
    server.child.kill('SIGTERM')
    await exited
  }

  const stdout = server.stdout.join('')
  const samples = stdout
    .split('\n')
    .filter((line) => line.startsWith('{"arrayBuffersMiB"'))
    .map((line) => JSON.parse(line))
  return {samples: samples.slice(WARMUP_SECONDS), cpu: perSecond.slice(WARMUP_SECONDS), stdout}
}

function quantile(values, q) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

function summary(name, {cpu, samples}) {
  const majors = samples.reduce((sum, sample) => sum + sample.majors, 0)
  const slow = samples.filter((sample) => sample.majors >= 2).length
  const finite = cpu.filter(Number.isFinite)
  const mean = finite.reduce((sum, value) => sum + value, 0) / finite.length
  const peak = Math.max(...samples.map((sample) => sample.arrayBuffersMiB))
  const cells = [name, majors, `${slow}/${samples.length}`, ...[0.1, 0.5, 0.9].map((q) => Math.round(quantile(cpu, q))), Math.round(mean), peak.toFixed(1)]
  return `| ${cells.join(' | ')} |`
}

async function main() {
  const options = parseArgs(process.argv.slice(2))
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'gc-phases-'))
  try {
    const config = path.join(scratch, 'apm-server.yml')
    mkdirSync(path.join(scratch, 'out'))
    writeFileSync(config, `apm-server:\n  host: "127.0.0.1:0"\noutput.file:\n  path: "${path.join(scratch, 'out')}"\n`)
    const body = zlib.gzipSync(intakeBody(100))
    const trees = options.baseline ? [['baseline', options.baseline], ['current', ROOT]] : [['current', ROOT]]
    const rows = []
    for (let pair = 1; pair <= options.pairs; pair++) {
      for (const [name, root] of trees) {
        process.stderr.write(`${name} ${pair}/${options.pairs}: ${options.seconds} s\n`)
        // eslint-disable-next-line no-await-in-loop -- one server at a time
        const run = await watch(root, config, options, body)
        rows.push(summary(`${name} ${pair}`, run))
        if (options.out) {
          mkdirSync(options.out, {recursive: true})
          writeFileSync(path.join(options.out, `${name}-${pair}.json`), JSON.stringify({cpu: run.cpu, samples: run.samples}))
          writeFileSync(path.join(options.out, `${name}-${pair}.stdout`), run.stdout)
        }
      }
    }

    const head = ['run', 'mark-compacts', 's with ≥ 2', 'CPU/request p10 (µs)', 'median', 'p90', 'mean', 'ArrayBuffers peak (MiB)']
    process.stdout.write(`${[`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows].join('\n')}\n`)
  } finally {
    rmSync(scratch, {force: true, recursive: true})
  }
}

await main()
