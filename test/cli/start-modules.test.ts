/**
 * What the built CLI loads to run `keystore list` (and `keystore add`): the command people run most must
 * start without the server, the YAML parser, the prompts, argon2 for a passwordless keystore, or code of
 * later features (OTLP, gRPC/protobuf, Redis, keystore sync and sealing). Each is loaded only by the
 * commands that use it, through a lazy import(), which scripts/bundle.js turns into a file of its own.
 *
 * A run records what it loads (test/fixtures/trace-loads.mjs): the bundle files compiled, the files
 * Node's loaders loaded, Node's built-in modules. The modules inside a bundle file are read from its
 * source map. A module new to this list fails the test on purpose: import it lazily in the command that
 * needs it, or, if every command needs it at start, add it here (and measure `keystore list`).
 */
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {BIN, cleanEnv, makeTempDir, ROOT, startChild} from '../helpers/cli.js'
import {defaultKeystore} from '../helpers/keystore.js'

const TRACER = path.join(ROOT, 'test', 'fixtures', 'trace-loads.mjs')

/** The project's own modules a keystore command may start with (command classes, the CLI, the keystore). */
const START_SOURCES = new Set([
  'src/cli.ts',
  'src/cli/base-command.ts',
  'src/cli/execute.ts',
  'src/cli/oclif-core.ts',
  'src/cli/secrets.ts',
  'src/cli/server-flags.ts',
  // keystore add's value gathering (it was in add.ts, a command module, before it moved)
  'src/cli/values.ts',
  'src/core/agent-settings.ts',
  // the audit trail's writer and the expiry rules, used by every writing command (issue 16)
  'src/core/audit.ts',
  'src/core/bounded-read.ts',
  'src/core/crypto.ts',
  'src/core/entries.ts',
  'src/core/errors.ts',
  'src/core/expiry.ts',
  'src/core/format/beats-v1.ts',
  'src/core/format/json-guard.ts',
  'src/core/format/native.ts',
  'src/core/keystore-file.ts',
  'src/core/keystore.ts',
  'src/core/password-env.ts',
  // secretbox's Poly1305 in WebAssembly, and its module's bytes
  'src/core/poly1305.ts',
  'src/core/wasm/poly1305-module.ts',
  'src/core/references.ts',
  'src/core/settings.ts',
  // the strict-perms walk of the keystore path and the config file, before anything is read
  'src/core/trusted-path.ts',
])
/** Command classes are declarative (flags, summary) and all start with the CLI: oclif needs the class. */
const COMMAND_SOURCE = /^src\/commands\/[\w/-]+\.ts$/
/**
 * Packages a keystore command may start with: oclif and what it loads at start (its parts, not its index:
 * no semver), tweetnacl and xsalsa20.
 */
const START_PACKAGES = new Set([
  '@oclif/core',
  'ansi-escapes',
  'ansi-regex',
  'ansi-styles',
  'ansis',
  'balanced-match',
  'brace-expansion',
  'clean-stack',
  'cli-spinners',
  'color-convert',
  'color-name',
  'debug',
  'ejs',
  'emoji-regex',
  'escape-string-regexp',
  'fdir',
  'get-package-type',
  'has-flag',
  'indent-string',
  'is-docker',
  'is-fullwidth-code-point',
  'is-inside-container',
  'is-wsl',
  'lilconfig',
  'minimatch',
  'ms',
  'picomatch',
  'powershell-utils',
  'string-width',
  'strip-ansi',
  'supports-color',
  'tinyglobby',
  'tweetnacl',
  'widest-line',
  'wordwrap',
  'wrap-ansi',
  'wsl-utils',
  'xsalsa20',
])
/** The lock library a write loads, in a chunk of its own. */
const LOCK_PACKAGES = new Set(['graceful-fs', 'proper-lockfile', 'retry', 'signal-exit'])
/** Said by name, so that a failure explains itself; none of these may load at a keystore command's start. */
const NEVER_AT_START = /src\/server\/|node_modules\/(yaml|@inquirer|pino|argon2|redis|ioredis|@redis|@grpc|protobufjs|@opentelemetry|@bufbuild)\b|otlp|grpc|protobuf|redis/i
/** Built-in modules of the server (and of an OTLP/gRPC exporter): none at a keystore command's start. */
const SERVER_BUILTINS = ['http', 'http2', 'https', 'tls', 'zlib']

interface Trace {
  builtins: string[]
  compiled: string[]
  imported: string[]
  required: string[]
}

/** A path relative to the project, `node_modules/...` for a package file. */
const relative = (file: string) => path.relative(ROOT, file.startsWith('file:') ? new URL(file).pathname : file)

interface SourceMap {
  sections?: Array<{map: SourceMap}>
  sources?: string[]
}

/** The modules a bundle file holds, from its source map (an index map has one section per chunk). */
function bundledModules(file: string): string[] {
  const sourcesOf = (map: SourceMap): string[] => map.sources ?? (map.sections ?? []).flatMap((section) => sourcesOf(section.map))
  const sources = sourcesOf(JSON.parse(readFileSync(`${file}.map`, 'utf8')) as SourceMap)
  // A chunk's own name stands for esbuild's helpers in it.
  return sources.filter((source) => !source.startsWith('./')).map((source) => relative(path.resolve(path.dirname(file), source)))
}

function packageOf(module: string): string | undefined {
  return /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(module)?.[1]
}

describe('what a keystore command loads at start (the built CLI)', function () {
  let tmp: ReturnType<typeof makeTempDir>
  let home: string

  before(async () => {
    tmp = makeTempDir('apm-start-modules-')
    home = tmp.dir
    const file = defaultKeystore(home)
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => {
      keystore.set('KEY_A', Buffer.from('value-a'))
      keystore.set('KEY_B', Buffer.from('value-b'))
    })
  })
  after(() => tmp.cleanup())

  async function traced(args: string[], input?: string): Promise<{stdout: string; trace: Trace}> {
    const out = path.join(tmp.dir, 'trace.json')
    const result = await startChild(process.execPath, ['--import', TRACER, BIN, ...args], {
      cwd: home,
      env: cleanEnv({TRACE_LOADS_FILE: out}),
      input,
      timeoutMs: 30_000,
    }).done
    assert.equal(result.code, 0, result.stderr)
    return {stdout: result.stdout, trace: JSON.parse(readFileSync(out, 'utf8')) as Trace}
  }

  /** Every module outside the start set the run loaded, bundled or not, each named once. */
  function unexpected(trace: Trace, allowedFiles: string[]): string[] {
    const found = new Set<string>()
    for (const file of trace.compiled) {
      for (const module of bundledModules(file)) {
        const name = packageOf(module)
        const allowed = name ? START_PACKAGES.has(name) : START_SOURCES.has(module) || COMMAND_SOURCE.test(module)
        if (!allowed || NEVER_AT_START.test(module)) found.add(`${module} (in ${relative(file)})`)
      }
    }

    const loaded = [...trace.required, ...trace.imported.filter((url) => url.startsWith('file:'))].map((file) => relative(file))
    for (const file of loaded) if (!allowedFiles.includes(file)) found.add(file)
    for (const name of SERVER_BUILTINS) if (trace.builtins.includes(name)) found.add(`node:${name}`)
    return [...found].sort()
  }

  it('keystore list (passwordless) compiles dist/cli.cjs only, and loads nothing outside the start set', async () => {
    const {stdout, trace} = await traced(['keystore', 'list'])
    assert.equal(stdout, 'KEY_A\nKEY_B\n')
    assert.deepEqual(trace.compiled.map((file) => relative(file)), ['dist/cli.cjs'])
    assert.deepEqual(unexpected(trace, ['bin/run.js', 'dist/cli.js', 'package.json']), [])
  })

  it('keystore add --stdin also loads the lock library, and nothing else outside the start set', async () => {
    const {trace} = await traced(['keystore', 'add', 'KEY_C', '--stdin'], 'value-c')
    const files = trace.compiled.map((file) => relative(file))
    assert.equal(files[0], 'dist/cli.cjs')
    // The lock library's chunk: proper-lockfile and what it needs.
    assert.equal(files.length, 2, `compiled ${files.join(', ')}`)
    const modules = bundledModules(path.join(ROOT, files[1]))
    assert.ok(modules.some((module) => packageOf(module) === 'proper-lockfile'), `${files[1]} is not the lock library's chunk`)
    assert.deepEqual(
      modules.filter((module) => !LOCK_PACKAGES.has(packageOf(module) ?? '')),
      [],
      `${files[1]} holds more than the lock library`,
    )

    assert.deepEqual(unexpected({...trace, compiled: trace.compiled.slice(0, 1)}, ['bin/run.js', 'dist/cli.js', 'package.json']), [])
  })

  it('keystore run -- true also loads its own file (the child, its environment, the masker), and nothing else outside the start set', async () => {
    const {stdout, trace} = await traced(['keystore', 'run', '--', 'true'])
    assert.equal(stdout, '')
    const files = trace.compiled.map((file) => relative(file))
    assert.equal(files[0], 'dist/cli.cjs')
    assert.equal(files.length, 2, `compiled ${files.join(', ')}`)
    assert.deepEqual(bundledModules(path.join(ROOT, files[1])).sort(), ['src/cli/child-env.ts', 'src/cli/run-child.ts', 'src/core/masker.ts'])
    assert.deepEqual(unexpected({...trace, compiled: trace.compiled.slice(0, 1)}, ['bin/run.js', 'dist/cli.js', 'package.json']), [])
  })
})
