#!/usr/bin/env node
/**
 * Where a CLI command spends its time: runs `node --cpu-prof bin/run.js ARGS...` several times in the
 * current directory and prints self time aggregated by module (npm package, project file or Node
 * internal area), plus the same samples attributed to the nearest package or project frame on the
 * stack ("attributed": what a module's loading and running cost, Node internals included).
 *
 *   cd DIR-WITH-KEYSTORE && node /path/to/bench/lib/profile-startup.js [--runs=N] [--functions] -- keystore list
 *
 * --functions also lists the functions with the most self time.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {SourceMap} from 'node:module'
import os from 'node:os'
import path from 'node:path'

import {BIN, cleanEnv, NODE, ROOT} from './proc.js'

const separator = process.argv.indexOf('--')
const options = separator === -1 ? process.argv.slice(2) : process.argv.slice(2, separator)
const args = separator === -1 ? [] : process.argv.slice(separator + 1)
const runs = Number(options.find((arg) => arg.startsWith('--runs='))?.slice(7) ?? 5)
const showFunctions = options.includes('--functions')

const sourceMaps = new Map()

/** The original file of a position in a bundled file, when the bundle has a source map. */
function originalFile(file, line, column) {
  if (!sourceMaps.has(file)) {
    const map = `${file}.map`
    sourceMaps.set(file, existsSync(map) ? new SourceMap(JSON.parse(readFileSync(map, 'utf8'))) : undefined)
  }

  const entry = sourceMaps.get(file)?.findEntry(line, column)
  if (!entry?.originalSource) return undefined
  const source = entry.originalSource.startsWith('file://') ? decodeURIComponent(new URL(entry.originalSource).pathname) : entry.originalSource
  return path.resolve(path.dirname(file), source)
}

/** A readable module name for a profile frame. */
function moduleOf({columnNumber, functionName, lineNumber, url}) {
  if (!url) return functionName.startsWith('(') ? functionName : '(native / V8 builtins)'
  let file = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url
  if (file.startsWith(ROOT) && /\.c?js$/.test(file)) file = originalFile(file, lineNumber, columnNumber) ?? file
  const nm = file.lastIndexOf('/node_modules/')
  if (nm !== -1) {
    const rest = file.slice(nm + 14).split('/')
    return `npm:${rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`
  }

  if (file.startsWith(ROOT)) return path.relative(ROOT, file).replace(/^dist\/(chunk|[a-z-]+)-[A-Z0-9]{8}\.js$/, 'dist/$1-*.js (bundle, unmapped)')
  if (file.startsWith('node:internal/')) return `node:internal/${file.slice(14).split('/').slice(0, file.includes('/modules/') ? 3 : 1).join('/')}`
  return file
}

const selfByFunction = new Map()
const selfByModule = new Map()
const attributedByModule = new Map()
let total = 0
const wall = []
const dir = mkdtempSync(path.join(os.tmpdir(), 'apm-profile-'))
try {
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint()
    const result = spawnSync(NODE, ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', dir, BIN, ...args], {env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe']})
    wall.push(Number(process.hrtime.bigint() - start) / 1e6)
    if (result.status !== 0) throw new Error(`bin/run.js ${args.join(' ')} exited with ${result.status}: ${result.stderr}`)
  }

  for (const file of readdirSync(dir)) {
    const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8'))
    const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
    const parent = new Map()
    for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
    const attributed = new Map()
    const attribute = (id) => {
      if (attributed.has(id)) return attributed.get(id)
      const node = nodes.get(id)
      const name = moduleOf(node.callFrame)
      let owner = name
      if (!(name.startsWith('npm:') || name.startsWith('dist/') || name.startsWith('src/') || name.startsWith('bin/'))) {
        owner = parent.has(id) ? attribute(parent.get(id)) : name
        if (owner === '(root)') owner = name
      }

      attributed.set(id, owner)
      return owner
    }

    for (let i = 0; i < profile.samples.length; i++) {
      const node = nodes.get(profile.samples[i])
      const ms = (profile.timeDeltas[i] ?? 0) / 1000
      total += ms
      const name = moduleOf(node.callFrame)
      selfByModule.set(name, (selfByModule.get(name) ?? 0) + ms)
      const fn = `${node.callFrame.functionName || '(anonymous)'}  [${name}]`
      selfByFunction.set(fn, (selfByFunction.get(fn) ?? 0) + ms)
      const owner = attribute(node.id)
      attributedByModule.set(owner, (attributedByModule.get(owner) ?? 0) + ms)
    }
  }
} finally {
  rmSync(dir, {force: true, recursive: true})
}

const table = (title, map) => {
  console.log(`\n${title} (ms per run, mean of ${runs} runs; share of profiled time)`)
  for (const [name, ms] of [...map].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
    console.log(`${(ms / runs).toFixed(1).padStart(8)}  ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${name}`)
  }
}

wall.sort((a, b) => a - b)
console.log(`bin/run.js ${args.join(' ')}: wall median ${wall[Math.floor(wall.length / 2)].toFixed(0)} ms (with profiling), profiled ${(total / runs).toFixed(0)} ms per run`)
table('self time by module', selfByModule)
table('attributed to the nearest package / project frame', attributedByModule)
if (showFunctions) table('self time by function', selfByFunction)
