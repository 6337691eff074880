#!/usr/bin/env node
/**
 * Writes the shipped V8 code caches of the CLI bundle (src/cli/compile-cache.ts), `<file>.cache` for
 * each bundle file given: runs `keystore list` on a fresh passwordless keystore of two keys, in this
 * process, then saves the bytecode of every function that run compiled. `keystore list` is the start-up
 * the caches are tuned for (bench/RESULTS.md): it covers oclif's start, flag parsing and opening a
 * keystore; functions other commands need are compiled when they run, and the cache of a file `list`
 * does not load holds its top level. Run by scripts/bundle.js.
 *
 *   node scripts/train-code-cache.js dist/cli.cjs [dist/chunk.cjs ...]
 */
import {spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
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
  saveCodeCaches(files)
} finally {
  rmSync(home, {force: true, recursive: true})
}
