#!/usr/bin/env node
/**
 * Writes the shipped V8 code caches of the CLI bundle (src/cli/compile-cache.ts), `<file>.cache` for
 * each bundle file given: runs `keystore list` on a fresh passwordless keystore of two keys, in this
 * process, and saves the bytecode of every function that run compiled into the cache of dist/cli.cjs, the
 * start file: `keystore list` is the start-up that file's cache is tuned for (bench/RESULTS.md), and a
 * cache holding more functions takes longer to load. Then `apm-server run` starts, in this process, with
 * a config holding a `${KEY}` reference, until it accepts a connection, and stops (SIGTERM): the caches
 * of the files it loaded (the server, the config loader, YAML) hold what its start-up and stop compiled,
 * instead of each function being compiled from source on every start (about 5 ms of it). Functions other
 * commands need are compiled when they run, and the cache of a file neither run loads holds its top
 * level. Run by scripts/bundle.js.
 *
 *   node scripts/train-code-cache.js dist/cli.cjs [dist/chunk.cjs ...]
 */
import {spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import {createRequire} from 'node:module'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const files = process.argv.slice(2).map((file) => path.resolve(file))
if (files.length === 0) {
  process.stderr.write('error: no bundle file; usage: node scripts/train-code-cache.js dist/cli.cjs [dist/chunk.cjs ...]\n')
  process.exit(2)
}

// Compiled from source (no cache read), and no user cache written by any of these runs.
process.env.NODE_DISABLE_COMPILE_CACHE = '1'
const home = mkdtempSync(path.join(os.tmpdir(), 'apm-code-cache-'))
try {
  const cli = (args, input) => {
    const result = spawnSync(process.execPath, [BIN, ...args, '--path.home', home], {input, stdio: ['pipe', 'ignore', 'pipe']})
    if (result.status !== 0) throw new Error(`apm-server ${args.join(' ')} exited with ${result.status ?? result.signal}: ${result.stderr}`)
  }

  cli(['keystore', 'create'])
  cli(['keystore', 'add', 'TRAINING_KEY_1', 'TRAINING_KEY_2', '--stdin'], 'value-1\nvalue-2\n')
  // dist/cli.js is CommonJS (dist/package.json), loaded as bin/run.js loads it.
  const {execute, saveCodeCaches} = createRequire(import.meta.url)(path.join(ROOT, 'dist', 'cli.js'))
  // The list goes to stdout; scripts/bundle.js discards it.
  await execute({args: ['keystore', 'list', '--path.home', home], dir: ROOT})
  const start = files.filter((file) => path.basename(file) === 'cli.cjs')
  saveCodeCaches(start)
  await trainServerStart(execute, home)
  saveCodeCaches(files.filter((file) => !start.includes(file)))
} finally {
  rmSync(home, {force: true, recursive: true})
}

/** A port free now on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address()
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.destroy()
      resolve(true)
    })
    socket.on('error', () => resolve(false))
  })
}

/** `apm-server run` in this process, from its start until it listens, then stopped as SIGTERM stops it. */
async function trainServerStart(execute, home) {
  const port = await freePort()
  const config = path.join(home, 'apm-server.yml')
  const lines = ['apm-server:', `  host: "127.0.0.1:${port}"`, '  auth:', '    secret_token: "${TRAINING_KEY_1}"', 'output.file:', `  path: "${path.join(home, 'out')}"`]
  writeFileSync(config, `${lines.join('\n')}\n`, {mode: 0o600})
  // Errors only: its warnings (no TLS) and "listening" would land in the build's output.
  const running = execute({args: ['run', '-c', config, '--path.home', home, '--log-level', 'error'], dir: ROOT})
  const deadline = Date.now() + 60_000
  // eslint-disable-next-line no-await-in-loop -- polling until the server listens
  while (!(await accepts(port))) {
    if (Date.now() > deadline) throw new Error('apm-server run did not listen within 60 s')
    // eslint-disable-next-line no-await-in-loop
    await new Promise((resolve) => setTimeout(resolve, 20))
  }

  process.kill(process.pid, 'SIGTERM')
  await running
}
