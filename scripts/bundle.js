#!/usr/bin/env node
/**
 * Bundles the CLI for a fast start (see bench/RESULTS.md):
 * - src/cli.ts with @oclif/core and every command is bundled by esbuild, split into chunks at our own
 *   dynamic import()s (the server, the YAML parser, the config loader, the lock library ...), then each
 *   chunk is made a CommonJS function so that it can be compiled through a V8 code cache
 *   (src/cli/compile-cache.ts; Node 20 caches no ES modules);
 * - dist/cli.cjs: the chunks every command starts with (the entry chunk, what it imports, and what
 *   third-party code in them imports lazily), in one file; `keystore list` compiles, hashes and keeps
 *   nothing else;
 * - dist/<chunk>.cjs: each other chunk, loaded by the commands that import it;
 * - dist/cli.js: the CommonJS module that bin/run.js and oclif load (src/cli/bundle-entry.ts); it loads
 *   dist/cli.cjs; dist/package.json makes dist/*.js CommonJS (an ES module would start Node's ES module
 *   loader on every run);
 * - dist/*.cjs.cache: the code caches, made by running `keystore list` once (train-code-cache.js),
 *   after `oclif manifest`, as the CLI runs when installed.
 * Left out of the bundle: argon2 (a native addon), pino-pretty (loaded only for a terminal's text log),
 * the prompt library (loaded only when prompting), elastic-apm-node (which the ECS formatter requires only
 * with apmIntegration, never set here) and the TypeScript tooling oclif loads only in development. pino is
 * bundled, in the server's chunk: through Node's loader its 29 files took ~12 ms of every `apm-server run`
 * start (resolved, read and compiled without a code cache). pino resolves files by path only for
 * transports (worker threads), which this server never starts: it logs to fd 2 through pino.destination.
 */
import {spawnSync} from 'node:child_process'
import {mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {parse} from 'acorn'
import {build, transform} from 'esbuild'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const DIST = path.join(ROOT, 'dist')
// Must match IMPORT_PARAMETER in src/cli/compile-cache.ts.
const IMPORT_PARAMETER = '__import'
// The CommonJS wrapper of a chunk, as src/cli/compile-cache.ts calls it.
const CHUNK_PARAMETERS = `exports, require, module, __filename, __dirname, ${IMPORT_PARAMETER}`
const ENTRY_CHUNK = './cli.js'

const common = {
  absWorkingDir: ROOT,
  bundle: true,
  logLevel: 'warning',
  outdir: DIST,
  platform: 'node',
  target: 'node20',
  write: false,
}

/**
 * Our modules' imports of '@oclif/core' go to src/cli/oclif-core.ts, which takes each part from its own
 * oclif module: oclif's index loads them all and semver (src/cli/execute.ts says more).
 */
const oclifParts = {
  name: 'oclif-parts',
  setup(context) {
    const parts = path.join(ROOT, 'src', 'cli', 'oclif-core.ts')
    context.onResolve({filter: /^@oclif\/core$/}, ({importer}) => (importer.startsWith(path.join(ROOT, 'src')) && importer !== parts ? {path: parts} : undefined))
  },
}

/**
 * Node built-in modules oclif requires when its modules load but uses only on paths a keystore command
 * does not take (reading flags from stdin, performance tracing, finding the Windows shell), required
 * when first used instead: about a dozen fewer built-in modules compiled at start. The build fails if
 * oclif's text changed (an upgrade), so that each is looked at again.
 */
const LAZY_BUILTINS = {
  'node_modules/@oclif/core/lib/parser/parse.js': 'const node_readline_1 = require("node:readline");',
  'node_modules/@oclif/core/lib/performance.js': 'const node_perf_hooks_1 = require("node:perf_hooks");',
  'node_modules/@oclif/core/lib/util/os.js': 'const node_child_process_1 = require("node:child_process");',
}
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(context) {
    context.onLoad({filter: /[/\\]@oclif[/\\]core[/\\]lib[/\\].*\.js$/}, ({path: file}) => {
      const declaration = LAZY_BUILTINS[path.relative(ROOT, file).split(path.sep).join('/')]
      if (!declaration) return undefined
      const text = readFileSync(file, 'utf8')
      if (!text.includes(declaration)) throw new Error(`${file} no longer has ${declaration}; check LAZY_BUILTINS in scripts/bundle.js`)
      const [, name, specifier] = /^const (\w+) = require\(("[^"]+")\);$/.exec(declaration)
      return {contents: text.replace(declaration, `const ${name} = new Proxy({}, {get: (_target, key) => require(${specifier})[key]});`), loader: 'js'}
    })
  },
}

const split = await build({
  ...common,
  chunkNames: '[name]-[hash]',
  // The chunks become CommonJS, which has no import.meta; the server finds files next to its module
  // through import.meta.url.
  define: {'import.meta.url': '__import_meta_url'},
  entryPoints: {cli: path.join(ROOT, 'src', 'cli.ts')},
  external: ['argon2', 'pino-pretty', '@inquirer/prompts', 'typescript', 'ts-node', 'elastic-apm-node'],
  format: 'esm',
  metafile: true,
  plugins: [oclifParts, lazyBuiltins],
  sourcemap: 'external',
  splitting: true,
})
const entry = await build({
  ...common,
  banner: {js: "var __entry_url = require('node:url').pathToFileURL(__filename).href;"},
  define: {'import.meta.url': '__entry_url'},
  entryPoints: {cli: path.join(ROOT, 'src', 'cli', 'bundle-entry.ts')},
  format: 'cjs',
  packages: 'external',
  sourcemap: 'linked',
})

/** The chunks of the split build by their name in import()/require() (`./name.js`), with their metadata. */
function chunksOf({metafile, outputFiles}) {
  const texts = new Map(outputFiles.map((file) => [path.relative(ROOT, file.path), file.text]))
  const chunks = new Map()
  for (const [output, meta] of Object.entries(metafile.outputs)) {
    if (output.endsWith('.map')) continue
    chunks.set(`./${path.basename(output)}`, {
      entryPoint: meta.entryPoint,
      imports: meta.imports.filter((item) => !item.external).map((item) => ({kind: item.kind, specifier: `./${path.basename(item.path)}`})),
      inputs: Object.keys(meta.inputs),
      map: texts.get(`${output}.map`),
      text: texts.get(output),
    })
  }

  return chunks
}

/**
 * The chunks the start file holds: the entry chunk and, transitively, what it imports statically, and
 * what third-party code imports lazily (oclif's own lazy imports run on every start). A chunk that our
 * own code (src/) imports lazily starts a file of its own: that import is where a command's heavy code
 * begins.
 */
function startChunks(chunks, inputs) {
  const ownLazy = new Set()
  for (const [input, meta] of Object.entries(inputs)) {
    if (!input.startsWith('src/')) continue
    for (const item of meta.imports) if (item.kind === 'dynamic-import' && !item.external) ownLazy.add(item.path)
  }

  const start = new Set([ENTRY_CHUNK])
  for (const specifier of start) {
    for (const item of chunks.get(specifier).imports) {
      if (item.kind === 'dynamic-import' && ownLazy.has(chunks.get(item.specifier).entryPoint)) continue
      start.add(item.specifier)
    }
  }

  return start
}

/**
 * A chunk as a CommonJS module (esbuild's transform, keeping the source map), made ready for
 * src/cli/compile-cache.ts:
 * - dynamic import() calls go to the loader's IMPORT_PARAMETER: a script compiled from a code cache has
 *   no dynamic import callback in Node 20 (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING);
 * - characters outside ASCII (esbuild leaves them in regular expressions) become \u escapes, so the
 *   loader can decode the file as latin1, into a compact one-byte string.
 */
async function commonJsChunk(specifier, {map, text}) {
  const inlineMap = `\n//# sourceMappingURL=data:application/json;base64,${Buffer.from(map).toString('base64')}\n`
  const result = await transform(text + inlineMap, {format: 'cjs', logLevel: 'silent', platform: 'node', sourcefile: specifier, sourcemap: 'external', target: 'node20'})
  if (result.warnings.length > 0) throw new Error(`chunk ${specifier}: ${result.warnings.map((warning) => warning.text).join('; ')}`)
  if (new RegExp(`\\b${IMPORT_PARAMETER}\\b`).test(result.code)) throw new Error(`chunk ${specifier} already uses the name ${IMPORT_PARAMETER}; rename IMPORT_PARAMETER`)
  // The import() expressions of the parsed program, not a text search: `import(` in a string, a comment
  // or a method named import stays as it is.
  const calls = importExpressions(parse(result.code, {allowReturnOutsideFunction: true, ecmaVersion: 'latest', sourceType: 'script'}))
  let rewritten = ''
  let at = 0
  for (const call of calls.sort((a, b) => a.start - b.start)) {
    if (call.options) throw new Error(`chunk ${specifier} calls import() with options, which the loader does not pass on`)
    rewritten += `${result.code.slice(at, call.start)}${IMPORT_PARAMETER}`
    at = call.start + 'import'.length
  }

  const code = (rewritten + result.code.slice(at)).replaceAll(/[^\u0000-\u007F]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
  // Fails the build, not a user's run, if a rewrite broke the syntax.
  const check = parse(`(function (${CHUNK_PARAMETERS}) {${code}\n})`, {ecmaVersion: 'latest'})
  if (importExpressions(check).length > 0) throw new Error(`chunk ${specifier} still calls import()`)
  return {code, map: JSON.parse(result.map)}
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

/**
 * One bundle file: `module.exports` maps each chunk's name to its function. The line before a chunk's
 * code names the modules it holds. The source map is an index map, one section per chunk.
 */
function bundleFile(name, parts) {
  const lines = ['module.exports = {']
  const sections = []
  for (const {code, inputs, map, specifier} of parts) {
    // The chunks are CommonJS, which has no import.meta (see `define` above).
    const meta = code.includes('__import_meta_url') ? " var __import_meta_url = require('node:url').pathToFileURL(__filename).href;" : ''
    // In parentheses: V8 compiles such a function with the file (not when first called), so that the
    // code cache of a file holds the top level of each of its chunks, even one this run did not call.
    lines.push(`${JSON.stringify(specifier)}: (function (${CHUNK_PARAMETERS}) {${meta}`, `// chunk ${specifier}: ${inputs.join(', ')}`)
    sections.push({map, offset: {column: 0, line: lines.length}})
    lines.push(...code.split('\n'), '}),')
  }

  lines.push('};', `//# sourceMappingURL=${name}.map`)
  return {map: JSON.stringify({sections, version: 3}), text: `${lines.join('\n')}\n`}
}

/** Writes a file through a temp file and a rename, so that a CLI running meanwhile sees old or new. */
function replaceFile(file, contents) {
  const temp = `${file}.${process.pid}.tmp`
  writeFileSync(temp, contents)
  renameSync(temp, file)
}

const chunks = chunksOf(split)
const start = startChunks(chunks, split.metafile.inputs)
const files = new Map([['cli.cjs', []]])
for (const [specifier, chunk] of chunks) {
  const converted = await commonJsChunk(specifier, chunk)
  const name = start.has(specifier) ? 'cli.cjs' : `${path.basename(specifier, '.js')}.cjs`
  if (!files.has(name)) files.set(name, [])
  files.get(name).push({...converted, inputs: chunk.inputs, specifier})
}

mkdirSync(DIST, {recursive: true})
const written = new Set()
const write = (name, contents) => {
  replaceFile(path.join(DIST, name), contents)
  written.add(path.join(DIST, name))
}

for (const [name, parts] of files) {
  const {map, text} = bundleFile(name, parts)
  write(name, text)
  write(`${name}.map`, map)
}

for (const output of entry.outputFiles) write(path.basename(output.path), output.contents)
write('package.json', `${JSON.stringify({type: 'commonjs'}, null, 2)}\n`)

// The code caches are trained on the installed layout, manifest included: `oclif manifest` runs here,
// once per build, before the training run.
// No run here may write a user's code cache (src/cli/compile-cache.ts): it would be tuned to this run.
const run = (command, args) => {
  const env = {...process.env, NODE_DISABLE_COMPILE_CACHE: '1'}
  const result = spawnSync(command, args, {cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit']})
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`)
}

run(path.join(ROOT, 'node_modules', '.bin', 'oclif'), ['manifest'])
const bundles = [...files.keys()].map((name) => path.join(DIST, name))
run(process.execPath, [path.join(ROOT, 'scripts', 'train-code-cache.js'), ...bundles])
for (const file of bundles) written.add(`${file}.cache`)

// Files of earlier builds (e.g. chunks whose hash changed) would pile up. Removing them after the new
// files are written (rather than emptying dist/ first) keeps a CLI that is running meanwhile working.
for (const name of readdirSync(DIST)) {
  const file = path.join(DIST, name)
  if (!written.has(file)) rmSync(file, {force: true, recursive: true})
}
