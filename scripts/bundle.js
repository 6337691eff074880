#!/usr/bin/env node
/**
 * Bundles the CLI for a fast start (see bench/RESULTS.md):
 * - dist/cli.cjs: src/cli.ts with @oclif/core and every command, one CommonJS file, so that it can be
 *   compiled through a V8 code cache (src/cli/compile-cache.ts; Node 20 caches no ES modules);
 * - dist/cli.js: the ES module that bin/run.js and oclif import (src/cli/bundle-entry.ts); it loads
 *   dist/cli.cjs;
 * - dist/cli.cjs.cache: the code cache, made by running `keystore list` once (train-code-cache.js),
 *   after `oclif manifest`, as the CLI runs when installed.
 * Left out of the bundle: argon2 (a native addon), pino, its ECS formatter and pino-pretty (pino resolves
 * worker files by path), the prompt library (loaded only when prompting) and the TypeScript tooling
 * oclif loads only in development.
 */
import {spawnSync} from 'node:child_process'
import {mkdirSync, readdirSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {parse} from 'acorn'
import {build} from 'esbuild'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DIST = path.join(ROOT, 'dist')
// Must match IMPORT_PARAMETER in src/cli/compile-cache.ts.
const IMPORT_PARAMETER = '__import'

const common = {
  bundle: true,
  logLevel: 'warning',
  outdir: DIST,
  platform: 'node',
  sourcemap: 'linked',
  target: 'node20',
  write: false,
}

const cjs = await build({
  ...common,
  // CommonJS has no import.meta; the server finds files next to its module through import.meta.url.
  banner: {js: "var __import_meta_url = require('node:url').pathToFileURL(__filename).href;"},
  define: {'import.meta.url': '__import_meta_url'},
  entryPoints: {cli: path.join(ROOT, 'src', 'cli.ts')},
  external: ['argon2', 'pino', 'pino-pretty', '@elastic/ecs-pino-format', '@inquirer/prompts', 'typescript', 'ts-node'],
  format: 'cjs',
  outExtension: {'.js': '.cjs'},
})
const esm = await build({...common, entryPoints: {cli: path.join(ROOT, 'src', 'cli', 'bundle-entry.ts')}, format: 'esm', packages: 'external'})

/**
 * The CommonJS bundle, made ready for src/cli/compile-cache.ts:
 * - dynamic import() calls go to the loader's IMPORT_PARAMETER: a script compiled from a code cache has
 *   no dynamic import callback in Node 20 (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING);
 * - characters outside ASCII (esbuild leaves them in regular expressions) become \u escapes, so the
 *   loader can decode the file as latin1, into a compact one-byte string.
 */
function prepareCommonJs(text) {
  if (new RegExp(`\\b${IMPORT_PARAMETER}\\b`).test(text)) throw new Error(`dist/cli.cjs already uses the name ${IMPORT_PARAMETER}; rename IMPORT_PARAMETER`)
  // The import() expressions of the parsed program, not a text search: `import(` in a string, a comment
  // or a method named import stays as it is.
  const calls = importExpressions(parse(text, {allowReturnOutsideFunction: true, ecmaVersion: 'latest', sourceType: 'script'}))
  let rewritten = ''
  let at = 0
  for (const call of calls.sort((a, b) => a.start - b.start)) {
    if (call.options) throw new Error('dist/cli.cjs calls import() with options, which the loader does not pass on')
    rewritten += `${text.slice(at, call.start)}${IMPORT_PARAMETER}`
    at = call.start + 'import'.length
  }

  const prepared = (rewritten + text.slice(at)).replaceAll(/[^\u0000-\u007F]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
  // Fails the build, not a user's run, if a rewrite broke the syntax.
  const check = parse(`(function (exports, require, module, __filename, __dirname, ${IMPORT_PARAMETER}) {${prepared}\n})`, {ecmaVersion: 'latest'})
  if (importExpressions(check).length > 0) throw new Error('dist/cli.cjs still calls import()')
  return prepared
}

/** Every ImportExpression node under `node`. */
function importExpressions(node, found = []) {
  if (node.type === 'ImportExpression') found.push(node)
  for (const value of Object.values(node)) {
    if (Array.isArray(value)) {
      for (const item of value) if (item && typeof item.type === 'string') importExpressions(item, found)
    } else if (value && typeof value.type === 'string') {
      importExpressions(value, found)
    }
  }

  return found
}

/** Writes a file through a temp file and a rename, so that a CLI running meanwhile sees old or new. */
function replaceFile(file, contents) {
  const temp = `${file}.${process.pid}.tmp`
  writeFileSync(temp, contents)
  renameSync(temp, file)
}

mkdirSync(DIST, {recursive: true})
const written = new Set()
for (const output of [...cjs.outputFiles, ...esm.outputFiles]) {
  replaceFile(output.path, output.path.endsWith('.cjs') ? prepareCommonJs(output.text) : output.contents)
  written.add(output.path)
}

// The code cache is trained on the installed layout, manifest included: `oclif manifest` runs here, once
// per build, before the training run.
// No run here may write a user's code cache (src/cli/compile-cache.ts): it would be tuned to this run.
const run = (command, args) => {
  const env = {...process.env, NODE_DISABLE_COMPILE_CACHE: '1'}
  const result = spawnSync(command, args, {cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit']})
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`)
}

run(path.join(ROOT, 'node_modules', '.bin', 'oclif'), ['manifest'])
const cache = path.join(DIST, 'cli.cjs.cache')
run(process.execPath, [path.join(ROOT, 'scripts', 'train-code-cache.js'), cache])
written.add(cache)

// Files of earlier builds (e.g. the chunks of the ES module bundle) would pile up. Removing them after
// the new files are written (rather than emptying dist/ first) keeps a CLI that is running meanwhile working.
for (const name of readdirSync(DIST)) {
  const file = path.join(DIST, name)
  if (!written.has(file)) rmSync(file, {force: true, recursive: true})
}
