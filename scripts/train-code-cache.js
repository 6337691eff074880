#!/usr/bin/env node
/**
 * Writes the shipped V8 code cache of the CLI bundle (src/cli/compile-cache.ts) to the file given:
 * runs `keystore list` on a fresh passwordless keystore of two keys, in this process, then saves the
 * bytecode of every function that run compiled. `keystore list` is the start-up the cache is tuned
 * for (bench/RESULTS.md): it covers oclif's start, flag parsing and opening a keystore; functions other
 * commands need are compiled when they run. Run by scripts/bundle.js.
 *
 *   node scripts/train-code-cache.js dist/cli.cjs.cache
 */
import {spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin', 'run.js')
const [target] = process.argv.slice(2)
if (!target) {
  process.stderr.write('error: no output file; usage: node scripts/train-code-cache.js dist/cli.cjs.cache\n')
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
  const {execute, saveCodeCache} = await import(pathToFileURL(path.join(ROOT, 'dist', 'cli.js')).href)
  // The list goes to stdout; scripts/bundle.js discards it.
  await execute({args: ['keystore', 'list', '--path.home', home], dir: pathToFileURL(BIN).href})
  saveCodeCache(path.resolve(target))
} finally {
  rmSync(home, {force: true, recursive: true})
}
