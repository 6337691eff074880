/**
 * Loads the CommonJS bundle of the CLI through V8 code caches, so that start-up deserialises bytecode
 * instead of parsing and compiling about a megabyte of JavaScript. Node 20 has no compile cache for ES
 * modules (module.enableCompileCache came in Node 22), hence CommonJS files compiled here with vm.Script,
 * as Node's own loader would (same wrapper, require, module, __filename).
 *
 * The bundle is split into chunks (scripts/bundle.js): a file holds the definitions of one or more
 * chunks, as `module.exports = {"./name.js": function (exports, require, module, ...) {...}}`. The
 * start file (dist/cli.cjs) holds every chunk a keystore command starts with; the server, the YAML
 * parser and the like are chunks of their own files, compiled only by the commands that import them.
 * A chunk asks for another by esbuild's name for it (`require("./name.js")`, `import("./name.js")`):
 * one defined in a file already loaded, or else the file `name.cjs` next to the start file.
 *
 * Caches, per file, each used only if made for these exact file bytes and this Node version:
 * 1. the shipped one: `<file>.cache` (e.g. `dist/cli.cjs.cache`), made by the build
 *    (scripts/train-code-cache.js);
 * 2. failing that (another Node than the build's, or no cache shipped), the user's:
 *    `${XDG_CACHE_HOME:-~/.cache}/apm-server/v8-<node version>-<arch>-<install id>.cache`, written
 *    at exit by a run that had no usable cache (the install id names the file, so one per file).
 * A code cache is executable code, and V8 does not verify it, so a cache is trusted only if the files
 * and the directory holding it are owned by this user (or root, or the bundle's owner, for the shipped
 * one) and writable by nobody else. Every failure falls back to plain compilation: a cache can make
 * the CLI slower, never fail it. NODE_DISABLE_COMPILE_CACHE (Node 22's name) turns caching off.
 */
import {isAscii} from 'node:buffer'
import {createHash, randomBytes} from 'node:crypto'
import {closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, Stats, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import os from 'node:os'
import path from 'node:path'
import vm from 'node:vm'

/**
 * Cache file: KEY_BYTES of key (SHA-256 of the bundle bytes, the Node version and the arch), DIGEST_BYTES
 * of SHA-256 of V8's data, then the data. Release builds of V8 do not checksum a code cache, and damaged
 * data crashes the process (a V8 fatal error or SIGSEGV) on every run: the digest refuses it first.
 */
const KEY_BYTES = 32
const DIGEST_BYTES = 32
const PREFIX_BYTES = KEY_BYTES + DIGEST_BYTES

/**
 * The bundle's `import()` calls are rewritten by scripts/bundle.js into calls of this parameter:
 * a script compiled from a code cache loses its dynamic import callback in Node 20.
 */
export const IMPORT_PARAMETER = '__import'

const WRAPPER_PARAMETERS = ['exports', 'require', 'module', '__filename', '__dirname', IMPORT_PARAMETER]

interface Cache {
  file: string
  /** the bundle's owner, also trusted for the shipped cache (a global install is root's or an admin's) */
  trustedUid?: number
}

export interface LoadedBundle<T> {
  exports: T
  /**
   * Writes `<file>.cache` for each bundle file given: the code of everything this process compiled from
   * it so far (the build uses it for the shipped caches, after a training run).
   */
  saveCodeCaches(files: string[]): void
}

function cacheKey(bundle: Buffer): Buffer {
  return createHash('sha256').update(bundle).update(`\0${process.version}\0${process.arch}`).digest()
}

function writableByOthers(stats: Stats): boolean {
  return (stats.mode & 0o022) !== 0
}

function ownedByUs(stats: Stats, trustedUid?: number): boolean {
  const euid = process.geteuid?.()
  // Without uids (Windows) there is nothing to check against: only the shipped cache is used there.
  if (euid === undefined) return trustedUid !== undefined
  return stats.uid === euid || stats.uid === 0 || stats.uid === trustedUid
}

/** A cache file's V8 data, or undefined unless it is trustworthy and made for `key`. */
function readCache({file, trustedUid}: Cache, key: Buffer): Buffer | undefined {
  let fd: number | undefined
  try {
    const dir = lstatSync(path.dirname(file))
    if (!dir.isDirectory() || writableByOthers(dir) || !ownedByUs(dir, trustedUid)) return undefined
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW)
    const stats = fstatSync(fd)
    if (!stats.isFile() || writableByOthers(stats) || !ownedByUs(stats, trustedUid) || stats.size <= PREFIX_BYTES) return undefined
    const contents = readFileSync(fd)
    if (!contents.subarray(0, KEY_BYTES).equals(key)) return undefined
    const data = contents.subarray(PREFIX_BYTES)
    return createHash('sha256').update(data).digest().equals(contents.subarray(KEY_BYTES, PREFIX_BYTES)) ? data : undefined
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

/**
 * Writes a cache atomically: a new temp file of `mode` in the same directory, then a rename. The temp
 * name is random and made with O_EXCL|O_NOFOLLOW: a pid-based name could be left over by a killed run
 * with the same pid (blocking every later write) or, in a directory others could write, planted. The
 * user's cache directory is checked to be ours before this is called; the build writes into dist/.
 */
function writeCache(file: string, key: Buffer, data: Buffer, mode: number): void {
  const temp = `${file}.${randomBytes(8).toString('hex')}.tmp`
  try {
    const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode)
    try {
      writeFileSync(fd, Buffer.concat([key, createHash('sha256').update(data).digest(), data]))
    } finally {
      closeSync(fd)
    }

    renameSync(temp, file)
  } catch (error) {
    rmSync(temp, {force: true})
    throw error
  }
}

/** The user's cache file for this bundle and Node, if the user has a cache directory we may use. */
function userCacheFile(bundleFile: string): string | undefined {
  const xdg = process.env.XDG_CACHE_HOME
  const home = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache')
  // One file per installation (and Node): reinstalls overwrite it rather than pile up.
  const install = createHash('sha256').update(bundleFile).digest('hex').slice(0, 16)
  return path.join(home, 'apm-server', `v8-${process.version}-${process.arch}-${install}.cache`)
}

/** Creates the user's cache directory (0700) if its parent is ours; false when it may not be used. */
function prepareUserCacheDir(dir: string): boolean {
  try {
    if (!ownedByUs(lstatSync(path.dirname(dir)))) return false
    mkdirSync(dir, {mode: 0o700})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return false
  }

  try {
    const stats = lstatSync(dir)
    return stats.isDirectory() && !writableByOthers(stats) && stats.uid === process.geteuid?.()
  } catch {
    return false
  }
}

/** A bundle file's text in the CommonJS wrapper, on one line so that line numbers are the file's own. */
function wrapSource(bytes: Buffer): string {
  // scripts/bundle.js writes ASCII only: then latin1 decoding is exact, and cheaper than UTF-8.
  const source = isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8')
  return `(function (${WRAPPER_PARAMETERS.join(', ')}) {${source}\n})`
}

/** A chunk: a CommonJS module function, with IMPORT_PARAMETER after Node's five parameters. */
type ChunkFunction = (
  exports: unknown,
  require: (specifier: string) => unknown,
  module: {exports: unknown},
  filename: string,
  dirname: string,
  importModule: (specifier: string) => Promise<unknown>,
) => void

/** esbuild's name of a chunk in the bundle's require() and import() calls; the file is `<name>.cjs`. */
const CHUNK_SPECIFIER = /^\.\/([\w-]+)\.js$/

interface CompiledFile {
  file: string
  script: vm.Script
}

/**
 * Compiles a bundle file through its cache and runs its top level, which returns the chunk definitions
 * the file holds (its module.exports).
 */
function compileFile(file: string, nodeRequire: NodeJS.Require, importModule: (specifier: string) => Promise<unknown>): CompiledFile & {definitions: Record<string, ChunkFunction>} {
  // One open for the bytes and the owner (trusted for the shipped cache).
  const fd = openSync(file, 'r')
  let bytes: Buffer
  let owner: number
  try {
    owner = fstatSync(fd).uid
    bytes = readFileSync(fd)
  } finally {
    closeSync(fd)
  }

  const enabled = !process.env.NODE_DISABLE_COMPILE_CACHE
  const key = cacheKey(bytes)
  const shipped = enabled ? readCache({file: `${file}.cache`, trustedUid: owner}, key) : undefined
  // The user's cache only stands in for a shipped one that is missing or made for another Node.
  const userFile = enabled && !shipped ? userCacheFile(file) : undefined
  const cachedData = shipped ?? (userFile ? readCache({file: userFile}, key) : undefined)

  const script = new vm.Script(wrapSource(bytes), {cachedData, filename: file})
  const module = {exports: {} as Record<string, ChunkFunction>}
  const wrapper = script.runInThisContext() as ChunkFunction
  wrapper.call(module.exports, module.exports, nodeRequire, module, file, path.dirname(file), importModule)
  // A shipped cache V8 rejects (Node run with other V8 flags) is not replaced: runs with and without
  // those flags would rewrite the user's cache in turn.
  if (userFile && (!cachedData || script.cachedDataRejected)) {
    // At exit, so that the cache holds the functions this run compiled, not only the top level.
    process.once('exit', () => {
      try {
        if (prepareUserCacheDir(path.dirname(userFile))) writeCache(userFile, key, script.createCachedData(), 0o600)
      } catch {
        // A read-only or full disk: the next run compiles again.
      }
    })
  }

  return {definitions: module.exports, file, script}
}

/**
 * Loads a CommonJS bundle like `require` would, through code caches when they are usable: the start
 * file `bundleFile`, then its entry chunk (`./<name>.js` for `<name>.cjs`), whose exports are returned.
 * `importModule` serves the bundle's dynamic `import()` calls of other modules (see IMPORT_PARAMETER).
 */
export function loadBundle<T>(bundleFile: string, importModule: (specifier: string) => Promise<unknown>): LoadedBundle<T> {
  const dir = path.dirname(bundleFile)
  const nodeRequire = createRequire(bundleFile)
  const definitions = new Map<string, {define: ChunkFunction; file: string}>()
  const modules = new Map<string, {exports: unknown}>()
  const compiled: CompiledFile[] = []

  const loadFile = (file: string) => {
    const loaded = compileFile(file, nodeRequire, importModule)
    compiled.push(loaded)
    for (const [specifier, define] of Object.entries(loaded.definitions)) definitions.set(specifier, {define, file})
  }

  const requireChunk = (specifier: string): unknown => {
    const name = CHUNK_SPECIFIER.exec(specifier)?.[1]
    if (!name) return nodeRequire(specifier)
    const done = modules.get(specifier)
    if (done) return done.exports
    if (!definitions.has(specifier)) loadFile(path.join(dir, `${name}.cjs`))
    const chunk = definitions.get(specifier)
    if (!chunk) throw new Error(`${name}.cjs does not define the chunk ${specifier}; reinstall apm-server`)
    // Registered before it runs, as Node does, so that a cycle sees the exports made so far; and
    // forgotten if it throws, so that no one gets a half-made chunk.
    const module = {exports: {}}
    modules.set(specifier, module)
    try {
      chunk.define.call(module.exports, module.exports, requireChunk, module, chunk.file, dir, importChunk)
    } catch (error) {
      modules.delete(specifier)
      throw error
    }

    return module.exports
  }

  // A chunk's namespace is its exports: esbuild's CommonJS form of an ES module carries each export.
  const importChunk = (specifier: string): Promise<unknown> =>
    CHUNK_SPECIFIER.test(specifier) ? Promise.resolve().then(() => requireChunk(specifier)) : importModule(specifier)

  loadFile(bundleFile)
  const exports = requireChunk(`./${path.basename(bundleFile, '.cjs')}.js`) as T
  return {
    exports,
    saveCodeCaches(files) {
      for (const file of files) {
        // A file this run did not load is compiled now: its cache then holds its top level, and its
        // functions compile when they first run, as they would without a cache.
        const found = compiled.find((loaded) => loaded.file === file)
        const bytes = readFileSync(file)
        const script = found?.script ?? new vm.Script(wrapSource(bytes), {filename: file})
        writeCache(`${file}.cache`, cacheKey(bytes), script.createCachedData(), 0o644)
      }
    },
  }
}
