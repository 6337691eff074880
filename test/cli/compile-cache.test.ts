/**
 * The V8 code cache the built CLI loads dist/cli.cjs through (src/cli/compile-cache.ts), seen as a user
 * sees it: the command's output, what appears under $XDG_CACHE_HOME, and what code runs. Each case runs
 * the built CLI (copied into a fresh temp dir when the case alters the shipped cache) with HOME and
 * XDG_CACHE_HOME in that dir, so the real ~/.cache is never touched.
 *
 * Whether a cache is used is made observable by a planted cache: V8 data compiled from a bundle of the
 * same length whose top level also prints PLANTED to stderr, behind the key of the real bundle (taken
 * from the shipped cache). V8 accepts it for the real bundle (it checks the source's length, not its
 * text), so PLANTED on stderr means the CLI ran the cache — which the controls show it does when the
 * cache is trusted, and the other cases show it must not when the cache is not.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import path from 'node:path'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliResult, cleanEnv, makeTempDir, ROOT, runCli, startChild} from '../helpers/cli.js'
import {CHEAP_KDF, defaultKeystore, modeOf} from '../helpers/keystore.js'

/** Files of an installed CLI (package.json `files`), node_modules, source maps and the shipped caches aside. */
const APP_FILES = [
  ...['bin', 'dist'].flatMap((dir) => readdirSync(path.join(ROOT, dir)).filter((name) => !/\.(cache|map)$/.test(name)).map((name) => `${dir}/${name}`)),
  'oclif.manifest.json',
  'package.json',
]
const SHIPPED_CACHE = path.join(ROOT, 'dist', 'cli.cjs.cache')
/** Cache file: 32 bytes of key (which bundle bytes and Node it was made for), the SHA-256 of V8's data, the data. */
const KEY_BYTES = 32
const PREFIX_BYTES = KEY_BYTES + 32
const LISTED = 'KEY_A\nKEY_B\n'
/** The uid `nobody`, and one of no user: neither is root nor the uid running the tests. */
const NOBODY = 65_534
const STRANGER = 54_321
const AS_ROOT = process.getuid?.() === 0

/**
 * Run in a clean `node` (no tsx, no mocha flags: V8 rejects a cache made under other V8 flags) by
 * before(): the planted V8 data, and whether V8 accepts the shipped cache for the shipped bundle.
 * The wrapper is the one src/cli/compile-cache.ts compiles the bundle in.
 */
const PLANT_SCRIPT = `
const {isAscii} = require('node:buffer')
const fs = require('node:fs')
const vm = require('node:vm')
const [bundleFile, shippedFile] = process.argv.slice(1)
const wrap = (source) => '(function (exports, require, module, __filename, __dirname, __import) {' + source + '\\n})'
const bytes = fs.readFileSync(bundleFile)
if (!isAscii(bytes)) throw new Error('dist/cli.cjs is not ASCII')
const source = bytes.toString('latin1')
// The longest top-level module comment of the bundle becomes a statement of the same length.
const lines = source.split('\\n')
let at = -1
for (const [i, line] of lines.entries()) if (line.startsWith('// ') && (at < 0 || line.length > lines[at].length)) at = i
const payload = 'console.error("PLANTED");'
if (at < 0 || lines[at].length < payload.length) throw new Error('no top-level comment to plant in')
lines[at] = payload.padEnd(lines[at].length, ' ')
const planted = new vm.Script(wrap(lines.join('\\n')), {filename: bundleFile}).createCachedData()
const shipped = fs.readFileSync(shippedFile).subarray(${PREFIX_BYTES})
const shippedAccepted = !new vm.Script(wrap(source), {cachedData: shipped, filename: bundleFile}).cachedDataRejected
process.stdout.write(JSON.stringify({planted: planted.toString('base64'), shippedAccepted}))
`

interface Sandbox {
  /** the copy of the installed CLI */
  app: string
  /** XDG_CACHE_HOME */
  cache: string
  dir: string
  /** HOME */
  home: string
  /** cwd of the CLI, so path.home: holds data/apm-server.keystore with KEY_A and KEY_B */
  ks: string
}

interface RunOptions {
  env?: Record<string, string | undefined>
  input?: string
  /** run as this user (and group of the same id) instead of the test's */
  uid?: number
}

async function runApp(sandbox: Sandbox, args: string[], {env = {}, input, uid}: RunOptions = {}): Promise<CliResult> {
  const bin = path.join(sandbox.app, 'bin', 'run.js')
  return startChild(process.execPath, [bin, ...args], {cwd: sandbox.ks, env: cleanEnv({HOME: sandbox.home, XDG_CACHE_HOME: sandbox.cache, ...env}), input, timeoutMs: 30_000, uid}).done
}

const list = (sandbox: Sandbox, options?: RunOptions) => runApp(sandbox, ['keystore', 'list'], options)

/** `keystore list` worked exactly as without any cache: the keys, nothing on stderr (no PLANTED, no crash). */
function assertListed(result: CliResult): void {
  assert.deepEqual({code: result.code, signal: result.signal, stderr: result.stderr, stdout: result.stdout}, {code: 0, signal: null, stderr: '', stdout: LISTED})
}

function assertPlantedRan(result: CliResult): void {
  assert.deepEqual({code: result.code, stderr: result.stderr, stdout: result.stdout}, {code: 0, stderr: 'PLANTED\n', stdout: LISTED})
}

/** The user's cache directory of the CLI. */
const userCacheDir = (sandbox: Sandbox) => path.join(sandbox.cache, 'apm-server')

/** Names of the files in the user's cache directory ([] when there is none). */
function userCaches(sandbox: Sandbox): string[] {
  const dir = userCacheDir(sandbox)
  return existsSync(dir) ? readdirSync(dir).sort() : []
}

/** The one per-user cache file there is. */
function theUserCache(sandbox: Sandbox): string {
  const names = userCaches(sandbox)
  assert.equal(names.length, 1, `one per-user cache file expected, found: ${names.join(', ')}`)
  assert.match(names[0], new RegExp(`^v8-${process.version.replaceAll('.', '\\.')}-${process.arch}-[0-9a-f]{16}\\.cache$`))
  return path.join(userCacheDir(sandbox), names[0])
}

function chownTree(target: string, uid: number): void {
  lchownSync(target, uid, uid)
  if (lstatSync(target).isDirectory()) for (const name of readdirSync(target)) chownTree(path.join(target, name), uid)
}

describe('compile cache: dist/cli.cjs loaded through a V8 code cache', function () {
  let key: Buffer
  /** a cache the CLI runs PLANTED from if it uses it: the real key, the planted V8 data */
  let planted: Buffer
  let shippedAccepted: boolean
  let tmp: ReturnType<typeof makeTempDir>

  before(function () {
    assert.ok(existsSync(SHIPPED_CACHE), `no ${SHIPPED_CACHE}; run "npm run build" first`)
    key = readFileSync(SHIPPED_CACHE).subarray(0, KEY_BYTES)
    const made = spawnSync(process.execPath, ['-e', PLANT_SCRIPT, path.join(ROOT, 'dist', 'cli.cjs'), SHIPPED_CACHE], {
      encoding: 'utf8',
      env: cleanEnv(),
      maxBuffer: 64 * 1024 * 1024,
    })
    assert.equal(made.status, 0, made.stderr)
    const result = JSON.parse(made.stdout) as {planted: string; shippedAccepted: boolean}
    const plantedData = Buffer.from(result.planted, 'base64')
    planted = Buffer.concat([key, createHash('sha256').update(plantedData).digest(), plantedData])
    shippedAccepted = result.shippedAccepted
  })

  beforeEach(() => {
    tmp = makeTempDir('apm-code-cache-test-')
  })
  afterEach(() => tmp.cleanup())

  /** A fresh install of the built CLI in the temp dir: `shipped` is its dist/cli.cjs.cache, none without. */
  async function makeSandbox(shipped?: Buffer): Promise<Sandbox> {
    const sandbox: Sandbox = {
      app: path.join(tmp.dir, 'app'),
      cache: path.join(tmp.dir, 'xdg-cache'),
      dir: tmp.dir,
      home: path.join(tmp.dir, 'home'),
      ks: path.join(tmp.dir, 'ks'),
    }
    for (const file of APP_FILES) {
      mkdirSync(path.dirname(path.join(sandbox.app, file)), {recursive: true})
      copyFileSync(path.join(ROOT, file), path.join(sandbox.app, file))
    }

    chmodSync(path.join(sandbox.app, 'dist'), 0o755)
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(sandbox.app, 'node_modules'))
    if (shipped) writeFileSync(path.join(sandbox.app, 'dist', 'cli.cjs.cache'), shipped, {mode: 0o644})
    for (const dir of [sandbox.cache, sandbox.home]) mkdirSync(dir, {mode: 0o755})
    const file = defaultKeystore(sandbox.ks)
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => {
      keystore.set('KEY_A', Buffer.from('value-a'))
      keystore.set('KEY_B', Buffer.from('value-b'))
    })
    return sandbox
  }

  describe('the built CLI with its shipped cache', () => {
    it('lists the keys and writes no per-user cache', async () => {
      const sandbox = await makeSandbox()
      const env = {HOME: sandbox.home, XDG_CACHE_HOME: sandbox.cache}
      assertListed(await runCli(['keystore', 'list'], {cwd: sandbox.ks, env}))
      const add = await runCli(['keystore', 'add', 'KEY_C', '--stdin'], {cwd: sandbox.ks, env, input: 'value-c'})
      assert.equal(add.code, 0, add.stderr)
      assert.deepEqual(readdirSync(sandbox.cache), [])
      assert.deepEqual(readdirSync(sandbox.home), [])
    })

    it('ships a cache V8 accepts for the shipped bundle on this Node, writable only by its owner', () => {
      assert.equal(shippedAccepted, true, 'V8 rejects dist/cli.cjs.cache: stale build or another Node; run "npm run build"')
      assert.equal(modeOf(SHIPPED_CACHE) & 0o022, 0)
    })

    it('runs the shipped cache when it is trusted (control: PLANTED shows a cache is what runs)', async () => {
      const sandbox = await makeSandbox(planted)
      assertPlantedRan(await list(sandbox))
      assert.deepEqual(userCaches(sandbox), [])
    })
  })

  describe('no shipped cache', () => {
    it('works, writes a 0600 per-user cache in a 0700 dir, and the next run uses it without rewriting it', async () => {
      const sandbox = await makeSandbox()
      assertListed(await list(sandbox))
      const file = theUserCache(sandbox)
      assert.equal(modeOf(file), 0o600)
      assert.equal(modeOf(userCacheDir(sandbox)), 0o700)
      const first = {bytes: readFileSync(file), ino: statSync(file).ino}
      assert.equal(first.bytes.subarray(0, KEY_BYTES).equals(key), true, 'the per-user cache is keyed like the shipped one')

      assertListed(await list(sandbox))
      assert.deepEqual(userCaches(sandbox), [path.basename(file)])
      assert.equal(statSync(file).ino, first.ino, 'a run that could use the cache replaced it')
      assert.deepEqual(readFileSync(file), first.bytes)

      // What the next run executes is the per-user cache: planted code in it runs.
      writeFileSync(file, planted)
      assertPlantedRan(await list(sandbox))
    })
  })

  describe('an untrusted or unusable per-user cache is ignored: same output, nothing on stderr', () => {
    const elsewhere = (sandbox: Sandbox) => path.join(sandbox.dir, 'elsewhere')
    const cases: Array<{
      name: string
      /** turns the cache the first run wrote (`file`, 0600, in its 0700 dir) into the case */
      tamper: (file: string, sandbox: Sandbox) => void
      /** checks after the CLI ran on it */
      check?: (file: string, sandbox: Sandbox) => void
    }> = [
      {
        name: 'a world-writable cache file (0666)',
        tamper(file) {
          writeFileSync(file, planted)
          chmodSync(file, 0o666)
        },
      },
      {
        name: 'a group-writable cache file (0620)',
        tamper(file) {
          writeFileSync(file, planted)
          chmodSync(file, 0o620)
        },
      },
      {
        name: 'a cache dir writable by others (0777)',
        tamper(file) {
          writeFileSync(file, planted)
          chmodSync(path.dirname(file), 0o777)
        },
      },
      {
        name: 'a cache dir writable by its group (0770)',
        tamper(file) {
          writeFileSync(file, planted)
          chmodSync(path.dirname(file), 0o770)
        },
      },
      {
        name: 'a cache file that is a symlink (and the CLI never writes through it)',
        tamper(file, sandbox) {
          mkdirSync(elsewhere(sandbox), {mode: 0o700})
          writeFileSync(path.join(elsewhere(sandbox), 'target.cache'), planted, {mode: 0o600})
          rmSync(file)
          symlinkSync(path.join(elsewhere(sandbox), 'target.cache'), file)
        },
        check(_file, sandbox) {
          assert.deepEqual(readFileSync(path.join(elsewhere(sandbox), 'target.cache')), planted)
        },
      },
      {
        name: 'a cache dir that is a symlink',
        tamper(file, sandbox) {
          renameSync(path.dirname(file), elsewhere(sandbox))
          writeFileSync(path.join(elsewhere(sandbox), path.basename(file)), planted)
          symlinkSync(elsewhere(sandbox), path.dirname(file))
        },
        check(file, sandbox) {
          assert.deepEqual(readFileSync(path.join(elsewhere(sandbox), path.basename(file))), planted)
        },
      },
      {
        name: `a cache file owned by another user (uid ${NOBODY}), the CLI run by root`,
        tamper(file) {
          writeFileSync(file, planted)
          chownSync(file, NOBODY, NOBODY)
        },
      },
      {
        name: `a cache dir owned by another user (uid ${NOBODY}), the CLI run by root`,
        tamper(file) {
          writeFileSync(file, planted)
          chownSync(path.dirname(file), NOBODY, NOBODY)
        },
        check(file) {
          assert.deepEqual(readFileSync(file), planted, 'the CLI wrote into a dir of another user')
        },
      },
      {
        name: 'made for other bundle bytes (key mismatch)',
        tamper(file) {
          const other = Buffer.from(planted)
          other[0] ^= 1
          writeFileSync(file, other)
        },
      },
      {
        name: 'corrupt: a valid key, then garbage',
        tamper(file) {
          writeFileSync(file, Buffer.concat([key, Buffer.alloc(64 * 1024, 'not V8 code cache data ')]))
        },
      },
      {
        name: 'corrupt: the V8 data cut in half',
        tamper(file) {
          const data = readFileSync(file)
          writeFileSync(file, data.subarray(0, KEY_BYTES + Math.floor((data.length - KEY_BYTES) / 2)))
        },
      },
      {
        name: 'corrupt: the V8 data damaged after its header (a flipped run of bytes mid-file)',
        tamper(file) {
          const data = readFileSync(file)
          const middle = KEY_BYTES + Math.floor((data.length - KEY_BYTES) / 2)
          for (let i = middle; i < middle + 64; i++) data[i] ^= 0x5a
          writeFileSync(file, data)
        },
      },
      {
        name: 'the key alone, no V8 data',
        tamper(file) {
          writeFileSync(file, key)
        },
      },
      {
        name: 'an empty file',
        tamper(file) {
          writeFileSync(file, '')
        },
      },
    ]

    for (const {check, name, tamper} of cases) {
      it(name, async function () {
        if (name.includes('the CLI run by root') && !AS_ROOT) this.skip()
        const sandbox = await makeSandbox()
        assertListed(await list(sandbox))
        const file = theUserCache(sandbox)
        tamper(file, sandbox)
        assertListed(await list(sandbox))
        check?.(file, sandbox)
      })
    }
  })

  describe('run by a user other than root', () => {
    before(function () {
      // Running as another user needs root; and root may write anywhere, so a read-only dir needs one.
      if (!AS_ROOT) this.skip()
    })

    /** A sandbox the CLI run as `nobody` can use: its keystore, home and cache dir are nobody's. */
    async function nobodysSandbox(): Promise<Sandbox> {
      const sandbox = await makeSandbox()
      chmodSync(sandbox.dir, 0o755)
      for (const dir of [sandbox.ks, sandbox.home, sandbox.cache]) chownTree(dir, NOBODY)
      return sandbox
    }

    it('runs a cache of its own (control for the next case)', async () => {
      const sandbox = await nobodysSandbox()
      assertListed(await list(sandbox, {uid: NOBODY}))
      const file = theUserCache(sandbox)
      assert.deepEqual([statSync(file).uid, modeOf(file)], [NOBODY, 0o600])
      writeFileSync(file, planted)
      assertPlantedRan(await list(sandbox, {uid: NOBODY}))
    })

    it(`ignores a cache owned by another non-root user (uid ${STRANGER}), readable by all`, async () => {
      const sandbox = await nobodysSandbox()
      assertListed(await list(sandbox, {uid: NOBODY}))
      const file = theUserCache(sandbox)
      writeFileSync(file, planted)
      chownSync(file, STRANGER, STRANGER)
      chmodSync(file, 0o644)
      assertListed(await list(sandbox, {uid: NOBODY}))
    })

    it('a read-only cache dir (0500): works, writes nothing, prints nothing', async () => {
      const sandbox = await nobodysSandbox()
      mkdirSync(userCacheDir(sandbox), {mode: 0o500})
      chownSync(userCacheDir(sandbox), NOBODY, NOBODY)
      chmodSync(userCacheDir(sandbox), 0o500)
      assertListed(await list(sandbox, {uid: NOBODY}))
      assert.deepEqual(userCaches(sandbox), [])
    })

    it('a read-only XDG_CACHE_HOME (0500): works, creates nothing, prints nothing', async () => {
      const sandbox = await nobodysSandbox()
      chmodSync(sandbox.cache, 0o500)
      assertListed(await list(sandbox, {uid: NOBODY}))
      assert.deepEqual(readdirSync(sandbox.cache), [])
    })
  })

  describe('a shipped cache that is not trusted is not run: same output, nothing on stderr', () => {
    it('world-writable (0666)', async () => {
      const sandbox = await makeSandbox(planted)
      chmodSync(path.join(sandbox.app, 'dist', 'cli.cjs.cache'), 0o666)
      assertListed(await list(sandbox))
    })

    it('in a dist dir writable by others (0777)', async () => {
      const sandbox = await makeSandbox(planted)
      chmodSync(path.join(sandbox.app, 'dist'), 0o777)
      assertListed(await list(sandbox))
    })

    it(`owned by another user (uid ${NOBODY}) than root and the bundle's owner`, async function () {
      if (!AS_ROOT) this.skip()
      const sandbox = await makeSandbox(planted)
      chownSync(path.join(sandbox.app, 'dist', 'cli.cjs.cache'), NOBODY, NOBODY)
      assertListed(await list(sandbox))
    })
  })

  describe('NODE_DISABLE_COMPILE_CACHE=1', () => {
    const disabled = {env: {NODE_DISABLE_COMPILE_CACHE: '1'}}

    it('works and writes no per-user cache; a per-user cache there is not run', async () => {
      const sandbox = await makeSandbox()
      assertListed(await list(sandbox, disabled))
      assert.deepEqual(readdirSync(sandbox.cache), [])

      assertListed(await list(sandbox))
      const file = theUserCache(sandbox)
      writeFileSync(file, planted)
      assertListed(await list(sandbox, disabled))
      assert.deepEqual(readFileSync(file), planted)
    })

    it('does not run the shipped cache', async () => {
      const sandbox = await makeSandbox(planted)
      assertListed(await list(sandbox, disabled))
      assert.deepEqual(readdirSync(sandbox.cache), [])
    })
  })

  it('a per-user cache never holds a secret (the value added and shown, the keystore password)', async () => {
    const sandbox = await makeSandbox()
    const value = 'canary-value-5f0c2a9e41d7'
    const password = 'canary-password-b83e6d1f02'
    const data = path.join(sandbox.dir, 'protected')
    await createKeystore(path.join(data, 'apm-server.keystore'), {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from(password)})
    const options = {env: {APM_SERVER_KEYSTORE_PASSWORD: password}}
    // Literals of the bundle are stored verbatim, so a secret held by compiled code would show.
    const manifest = JSON.parse(readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, {summary: string}>}
    const literal = Buffer.from(manifest.commands['keystore:add'].summary)

    const runs = [
      () => runApp(sandbox, ['keystore', 'add', 'CANARY', '--stdin', '--path.data', data], {...options, input: `${value}\n`}),
      () => runApp(sandbox, ['keystore', 'show', 'CANARY', '--path.data', data], options),
    ]
    for (const [i, run] of runs.entries()) {
      // Each run starts without a usable cache, so it is the run that writes one.
      rmSync(userCacheDir(sandbox), {force: true, recursive: true})
      const result = await run()
      assert.deepEqual({code: result.code, stderr: result.stderr}, {code: 0, stderr: ''})
      if (i === 1) assert.equal(result.stdout, value)
      // One cache per bundle file the run loaded (add also loads the lock library's chunk).
      const caches = userCaches(sandbox).map((name) => readFileSync(path.join(userCacheDir(sandbox), name)))
      assert.ok(caches.length > 0, 'no per-user cache written')
      assert.ok(
        caches.some((cache) => cache.includes(literal)),
        'the cache holds no literal of the bundle: this check would prove nothing',
      )
      for (const cache of caches) {
        for (const secret of [value, password]) {
          for (const encoding of ['utf8', 'utf16le'] as const) assert.ok(!cache.includes(Buffer.from(secret, encoding)), `${secret} (${encoding}) in the code cache`)
        }
      }
    }
  })
})
