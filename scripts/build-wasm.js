#!/usr/bin/env node
/**
 * Assembles src/core/wasm/poly1305.wat into src/core/wasm/poly1305-module.ts (the module's bytes in
 * base64), which is committed: building the CLI needs no WebAssembly tools, only changing the .wat does.
 * Needs wabt's wat2wasm (apt-get install wabt). test/core/poly1305.test.ts checks the result against
 * tweetnacl.
 *
 *   node scripts/build-wasm.js
 */
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const source = path.join(ROOT, 'src', 'core', 'wasm', 'poly1305.wat')
const target = path.join(ROOT, 'src', 'core', 'wasm', 'poly1305-module.ts')
const temp = mkdtempSync(path.join(os.tmpdir(), 'apm-wasm-'))
try {
  const wasm = path.join(temp, 'poly1305.wasm')
  const result = spawnSync('wat2wasm', [source, '-o', wasm], {stdio: ['ignore', 'inherit', 'inherit']})
  if (result.error || result.status !== 0) {
    process.stderr.write(`error: wat2wasm failed${result.error ? ` (${result.error.message})` : ''}; install wabt (apt-get install wabt) and run again\n`)
    process.exit(1)
  }

  const base64 = readFileSync(wasm).toString('base64')
  const lines = base64.match(/.{1,100}/g).map((line) => `  '${line}',`)
  writeFileSync(
    target,
    [
      '/**',
      ' * The WebAssembly module assembled from ./poly1305.wat by scripts/build-wasm.js: generated, do not edit.',
      ' */',
      'export const POLY1305_WASM_BASE64 = [',
      ...lines,
      "].join('')",
      '',
    ].join('\n'),
  )
  process.stdout.write(`wrote ${path.relative(ROOT, target)} (${Buffer.from(base64, 'base64').length} bytes of WebAssembly)\n`)
} finally {
  rmSync(temp, {force: true, recursive: true})
}
