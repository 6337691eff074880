/**
 * Hostile input to the CLI: bad key names (exit 2, the naming rule, nothing changed), awkward values
 * (NUL bytes, invalid UTF-8, 10 MB) stored and shown back byte for byte in every format, empty stdin,
 * closed stdin, and no terminal (every command that would prompt fails at once instead of waiting);
 * issue 13's commands (hostile-fleet.ts): recipients, bundles, directories of odd files; and issue 16's
 * (hostile-audit.ts): audit trails that are not trails, bad --expires, what keystore run cannot pass on.
 */
import {randomBytes} from 'node:crypto'
import {promises as fs} from 'node:fs'
import path from 'node:path'

import {KEY_NAME_RULE} from '../../src/core/entries.js'
import {checkHostileAudit} from './hostile-audit.js'
import {checkHostileFleet} from './hostile-fleet.js'
import {CheckResult, cli, fail, keystorePath, newResult, oneErrorLine, pool, shell, tempDir} from './lib.js'

export interface HostileInputOptions {
  /** size of the big value in bytes */
  bigValueBytes: number
  /** false: fewer names, commands and formats (the fast test) */
  full: boolean
}

export const BAD_NAMES: Array<[string, string]> = [
  ['space', 'A B'],
  ['colon', 'A:B'],
  ['brace', 'A}B'],
  ['dollar reference', '${A}'],
  ['dollar', '$A'],
  ['unicode', 'cl\u00e9'],
  ['cjk', '\u65e5\u672c'],
  ['emoji', '\u{1f511}'],
  ['10k characters', 'K'.repeat(10_000)],
  ['256 characters', 'K'.repeat(256)],
  ['empty', ''],
  ['tab', 'A\tB'],
  ['newline', 'A\nB'],
  ['slash', 'A/B'],
  ['equals', 'A=B'],
  ['quote', 'A"B'],
]

const PASSWORD = 'pw-hostile-input'

interface Variant {
  name: string
  create: string[]
  env: Record<string, string>
}

const VARIANTS: Variant[] = [
  {create: ['keystore', 'create'], env: {}, name: 'native'},
  {create: ['keystore', 'create', '--password'], env: {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD}, name: 'native+password'},
  {create: ['keystore', 'create', '--format', 'beats-v1'], env: {}, name: 'beats-v1'},
]

export async function checkHostileInput(options: HostileInputOptions): Promise<CheckResult> {
  const result = newResult()
  await badNames(options, result)
  await values(options, result)
  await emptyAndClosedStdin(options, result)
  await noTerminal(options, result)
  await checkHostileFleet({full: options.full}, result)
  await checkHostileAudit({full: options.full}, result)
  return result
}

async function withKeystore<T>(variant: Variant, fn: (cwd: string) => Promise<T>): Promise<T> {
  const tmp = tempDir()
  try {
    const created = await cli(variant.create, {cwd: tmp.dir, env: variant.env})
    if (created.code !== 0) throw new Error(`create ${variant.name} failed: ${created.stderr}`)
    return await fn(tmp.dir)
  } finally {
    tmp.cleanup()
  }
}

async function badNames(options: HostileInputOptions, result: CheckResult): Promise<void> {
  let refused = 0
  let tried = 0
  const names = options.full ? BAD_NAMES : BAD_NAMES.filter(([label]) => ['10k characters', 'brace', 'colon', 'dollar reference', 'space', 'unicode'].includes(label))
  await withKeystore(VARIANTS[0], async (cwd) => {
    const before = await fs.readFile(keystorePath(cwd))
    const runs = names.flatMap(([label, name], i) => [
      {args: ['keystore', 'add', name, '--stdin'], input: 'value', label},
      ...(options.full || i === 0
        ? [
            {args: ['keystore', 'add', 'GOOD_KEY', name, '--stdin'], input: 'a\nb\n', label: `${label} (second of two)`},
            {args: ['keystore', 'show', name], input: undefined, label},
            {args: ['keystore', 'remove', name], input: undefined, label},
          ]
        : []),
    ])
    await pool(runs, 2, async (run) => {
      tried++
      const out = await cli(run.args, {cwd, input: run.input})
      const what = `bad key name (${run.label}) to ${run.args[1]}`
      if (out.code !== 2) fail(result, `${what}: exit ${out.code}, expected 2; stderr ${JSON.stringify(out.stderr.slice(0, 200))}`)
      else if (!out.stderr.includes(KEY_NAME_RULE)) fail(result, `${what}: stderr does not state the naming rule: ${JSON.stringify(out.stderr.slice(0, 200))}`)
      else if (!oneErrorLine(out.stderr) || out.stderr.length > 400) fail(result, `${what}: stderr is not one short error line (${out.stderr.length} chars)`)
      else refused++
    })
    if (!(await fs.readFile(keystorePath(cwd))).equals(before)) fail(result, 'bad key names: the keystore file changed')
  })
  result.figures.push({check: 'hostile input', figure: `bad key names (${names.length}: space, :, }, $, unicode, 10k chars, ...) to add/show/remove`, value: `${refused}/${tried} exit 2 with the naming rule, keystore untouched`})
}

async function values(options: HostileInputOptions, result: CheckResult): Promise<void> {
  const big = randomBytes(options.bigValueBytes)
  if (big.at(-1) === 0x0a) big[big.length - 1] = 0x0b
  const cases: Array<{label: string; value: Buffer; via: 'file' | 'stdin'; stored?: Buffer}> = [
    {label: 'NUL bytes', value: Buffer.from([0, 0x41, 0, 0, 0x42, 0]), via: 'stdin'},
    {label: 'invalid UTF-8', value: Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xf4, 0x90, 0x80, 0x80]), via: 'stdin'},
    {label: 'one trailing newline removed from stdin', stored: Buffer.from('line\n'), value: Buffer.from('line\n\n'), via: 'stdin'},
    {label: 'CRLF removed from stdin', stored: Buffer.from('crlf'), value: Buffer.from('crlf\r\n'), via: 'stdin'},
    {label: `${(options.bigValueBytes / 1e6).toFixed(0)} MB random bytes`, value: big, via: 'stdin'},
    {label: `${(options.bigValueBytes / 1e6).toFixed(0)} MB with a trailing newline, from --file`, value: Buffer.concat([big, Buffer.from('\n')]), via: 'file'},
  ]
  // The fast test: NUL bytes and invalid UTF-8, the big value, and the newline rule.
  const chosen = options.full ? cases : cases.filter((test) => /NUL|invalid|MB random|one trailing/.test(test.label))
  let exact = 0
  let tried = 0
  // The fast test: every case on a protected native keystore only.
  for (const variant of options.full ? VARIANTS : [VARIANTS[1]]) {
    // eslint-disable-next-line no-await-in-loop -- one keystore per variant
    await withKeystore(variant, async (cwd) => {
      for (const [i, test] of chosen.entries()) {
        tried++
        const key = `VALUE_${i}`
        let added
        if (test.via === 'file') {
          const valueFile = path.join(cwd, 'value.bin')
          // eslint-disable-next-line no-await-in-loop -- sequential on one keystore
          await fs.writeFile(valueFile, test.value, {mode: 0o600})
          // eslint-disable-next-line no-await-in-loop -- sequential on one keystore
          added = await cli(['keystore', 'add', key, '--file', valueFile], {cwd, env: variant.env})
          // eslint-disable-next-line no-await-in-loop -- sequential on one keystore
          await fs.rm(valueFile)
        } else {
          // eslint-disable-next-line no-await-in-loop -- sequential on one keystore
          added = await cli(['keystore', 'add', key, '--stdin'], {cwd, env: variant.env, input: test.value})
        }

        const what = `value with ${test.label} (${variant.name})`
        if (added.code !== 0) {
          fail(result, `${what}: add exited ${added.code}: ${added.stderr.trim()}`)
          continue
        }

        // eslint-disable-next-line no-await-in-loop -- sequential on one keystore
        const shown = await cli(['keystore', 'show', key], {cwd, env: variant.env})
        const expected = test.stored ?? test.value
        if (shown.code !== 0) fail(result, `${what}: show exited ${shown.code}: ${shown.stderr.trim()}`)
        else if (!shown.stdoutBytes.equals(expected)) fail(result, `${what}: show gave ${shown.stdoutBytes.length} bytes, not the ${expected.length} stored`)
        else exact++
      }

      // Several keys from one stdin, one line each, with NUL and invalid UTF-8 inside the lines.
      tried++
      const lines = [Buffer.from([0x61, 0, 0x62]), Buffer.from([0xff, 0xfe]), Buffer.from('plain')]
      const multi = await cli(['keystore', 'add', 'M1', 'M2', 'M3', '--stdin'], {cwd, env: variant.env, input: Buffer.concat(lines.flatMap((line) => [line, Buffer.from('\n')]))})
      if (multi.code === 0) {
        const shown = await Promise.all(['M1', 'M2', 'M3'].map((key) => cli(['keystore', 'show', key], {cwd, env: variant.env})))
        if (shown.every((run, i) => run.stdoutBytes.equals(lines[i]))) exact++
        else fail(result, `several values from one stdin (${variant.name}): a value came back different`)
      } else fail(result, `several values from one stdin (${variant.name}): exit ${multi.code}: ${multi.stderr.trim()}`)
    })
  }

  result.figures.push({check: 'hostile input', figure: 'values with NUL, invalid UTF-8, 10 MB, several per stdin (native, native+password, beats-v1)', value: `${exact}/${tried} shown back byte-exact`})
}

async function emptyAndClosedStdin(options: HostileInputOptions, result: CheckResult): Promise<void> {
  let ok = 0
  const all: Array<{label: string; run: (cwd: string) => ReturnType<typeof cli>; exit: number}> = [
    {exit: 1, label: 'add --stdin, empty stdin', run: (cwd) => cli(['keystore', 'add', 'K', '--stdin'], {cwd, input: ''})},
    {exit: 1, label: 'add --stdin, stdin only a newline', run: (cwd) => cli(['keystore', 'add', 'K', '--stdin'], {cwd, input: '\n'})},
    {exit: 2, label: 'add two keys --stdin, one line', run: (cwd) => cli(['keystore', 'add', 'K1', 'K2', '--stdin'], {cwd, input: 'only\n'})},
    {exit: 1, label: 'add two keys --stdin, an empty line', run: (cwd) => cli(['keystore', 'add', 'K1', 'K2', '--stdin'], {cwd, input: 'one\n\n'})},
    {exit: 1, label: 'passwd --stdin, empty stdin', run: (cwd) => cli(['keystore', 'passwd', '--stdin'], {cwd, input: ''})},
    {exit: 1, label: 'add --stdin, stdin closed (fd 0 not open)', run: (cwd) => shell('exec $APM keystore add K --stdin <&-', {cwd})},
    {exit: 2, label: 'add (would prompt), stdin closed', run: (cwd) => shell('exec $APM keystore add K <&-', {cwd})},
    {exit: 1, label: 'passwd --stdin, stdin closed', run: (cwd) => shell('exec $APM keystore passwd --stdin <&-', {cwd})},
    {exit: 1, label: 'add --stdin, stdin is /dev/null', run: (cwd) => shell('exec $APM keystore add K --stdin </dev/null', {cwd})},
  ]
  const cases = options.full ? all : all.filter((test) => /^add --stdin, (empty stdin|stdin closed)|^add \(would prompt\)/.test(test.label))
  await withKeystore(VARIANTS[0], async (cwd) => {
    const before = await fs.readFile(keystorePath(cwd))
    for (const test of cases) {
      // eslint-disable-next-line no-await-in-loop -- sequential on one keystore
      const out = await test.run(cwd)
      if (out.code !== test.exit) fail(result, `${test.label}: exit ${out.code ?? out.signal}, expected ${test.exit}; stderr ${JSON.stringify(out.stderr.slice(0, 200))}`)
      else if (!oneErrorLine(out.stderr)) fail(result, `${test.label}: stderr is not one error line: ${JSON.stringify(out.stderr.slice(0, 300))}`)
      else ok++
    }

    if (!(await fs.readFile(keystorePath(cwd))).equals(before)) fail(result, 'empty/closed stdin: the keystore file changed')
  })
  result.figures.push({check: 'hostile input', figure: 'empty, one-line-short and closed stdin', value: `${ok}/${cases.length} refused with one error line, keystore untouched`})
}

/** Without a terminal, nothing may wait for an answer: stdin is an open pipe nobody writes to. */
async function noTerminal(options: HostileInputOptions, result: CheckResult): Promise<void> {
  const all: Array<{label: string; args: string[]; exit: number; setup: 'none' | 'password' | 'plain'}> = [
    {args: ['keystore', 'add', 'K'], exit: 2, label: 'add without --stdin', setup: 'plain'},
    {args: ['keystore', 'add', 'K', '--stdin'], exit: 1, label: 'add to a missing keystore without --force', setup: 'none'},
    {args: ['keystore', 'create'], exit: 1, label: 'create over an existing keystore', setup: 'plain'},
    {args: ['keystore', 'create', '--password'], exit: 1, label: 'create --password without a password source', setup: 'none'},
    {args: ['keystore', 'passwd'], exit: 2, label: 'passwd without --stdin', setup: 'plain'},
    {args: ['keystore', 'list'], exit: 1, label: 'list a protected keystore without a password source', setup: 'password'},
    {args: ['keystore', 'show', 'K'], exit: 1, label: 'show on a protected keystore without a password source', setup: 'password'},
    {args: ['keystore', 'remove', 'K'], exit: 1, label: 'remove on a protected keystore without a password source', setup: 'password'},
    {args: ['keystore', 'upgrade'], exit: 1, label: 'upgrade a protected keystore without a password source', setup: 'password'},
    {args: ['keystore', 'passwd', '--remove'], exit: 1, label: 'passwd --remove without the current password', setup: 'password'},
  ]
  const cases = options.full ? all : all.filter((test) => ['add without --stdin', 'create --password without a password source', 'list a protected keystore without a password source'].includes(test.label))
  let ok = 0
  await pool(cases, 2, async (test) => {
    const tmp = tempDir()
    try {
      const cwd = tmp.dir
      if (test.setup !== 'none') {
        await cli(['keystore', 'create', ...(test.setup === 'password' ? ['--password'] : [])], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD}})
        await cli(['keystore', 'add', 'K', '--stdin'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD}, input: 'v'})
      }

      const out = await cli(test.args, {cwd, input: 'keep-open', timeoutMs: 30_000})
      if (out.signal === 'SIGKILL') fail(result, `no TTY, ${test.label}: still waiting after 30 s (it should fail at once)`)
      else if (out.code !== test.exit) fail(result, `no TTY, ${test.label}: exit ${out.code}, expected ${test.exit}; stderr ${JSON.stringify(out.stderr.slice(0, 200))}`)
      else if (!oneErrorLine(out.stderr)) fail(result, `no TTY, ${test.label}: stderr is not one error line: ${JSON.stringify(out.stderr.slice(0, 300))}`)
      else ok++
    } finally {
      tmp.cleanup()
    }
  })
  result.figures.push({check: 'hostile input', figure: 'no terminal, stdin an open silent pipe: every command that would prompt', value: `${ok}/${cases.length} fail at once with one error line`})
}
