/**
 * Hostile input to issue 16's commands: audit trails that are not trails (a symbolic link, a FIFO, a
 * directory, a 300 MB sparse file, a 40 MB line, nested brackets, a million empty lines) to `keystore
 * audit --verify` (one line, at once, in bounded memory) and to a writer (`keystore add`: refused, or
 * carried on with the damage still visible, never through the link, never hanging); `--expires` values
 * that are not times; and `keystore run` given what an environment cannot hold or a command that is not
 * one (one line, the command never run).
 */
import {execFileSync} from 'node:child_process'
import {promises as fs} from 'node:fs'
import path from 'node:path'

import {CheckResult, cli, cliMeasured, fail, keystorePath, oneErrorLine, tempDir} from './lib.js'

export interface HostileAuditOptions {
  /** false: fewer cases (the fast test) */
  full: boolean
}

export async function checkHostileAudit(options: HostileAuditOptions, result: CheckResult): Promise<void> {
  await hostileTrails(options, result)
  await badExpiries(options, result)
  await hostileRuns(options, result)
}

/** One keystore with a trail of a few lines; `cwd` is its home. */
async function keystoreWithTrail(): Promise<{cwd: string; trail: string; cleanup: () => void}> {
  const tmp = tempDir('apm-torture-audit-')
  const cwd = tmp.dir
  for (const [args, input] of [[['keystore', 'create']], [['keystore', 'add', 'A', '--stdin'], 'a'], [['keystore', 'add', 'B', '--stdin'], 'b']] as Array<[string[], string?]>) {
    // eslint-disable-next-line no-await-in-loop -- set-up
    const run = await cli(args, {cwd, input})
    if (run.code !== 0) throw new Error(`${args.join(' ')} failed: ${run.stderr}`)
  }

  return {cleanup: tmp.cleanup, cwd, trail: `${keystorePath(cwd)}.audit`}
}

async function hostileTrails(options: HostileAuditOptions, result: CheckResult): Promise<void> {
  const cases: Array<[string, (trail: string, dir: string) => Promise<void>, 'carry-on' | 'refuse']> = [
    ['a symbolic link to another file', async (trail, dir) => (await fs.writeFile(path.join(dir, 'victim'), 'victim\n'), await fs.symlink(path.join(dir, 'victim'), trail)), 'refuse'],
    ['a FIFO', async (trail) => void execFileSync('mkfifo', ['-m', '600', trail]), 'refuse'],
    ['a directory', async (trail) => fs.mkdir(trail), 'refuse'],
    ['a link to /dev/zero', async (trail) => fs.symlink('/dev/zero', trail), 'refuse'],
    ['a 300 MB sparse file', async (trail) => (await fs.writeFile(trail, '', {mode: 0o600}), await fs.truncate(trail, 300 * 1000 * 1000)), 'carry-on'],
    ['one 40 MB line', async (trail) => fs.writeFile(trail, `${'x'.repeat(40 * 1024 * 1024)}\n`, {mode: 0o600}), 'carry-on'],
    ['10 MB of nested brackets', async (trail) => fs.writeFile(trail, `${'['.repeat(10 * 1024 * 1024)}\n`, {mode: 0o600}), 'carry-on'],
    ['a million empty lines', async (trail) => fs.writeFile(trail, '\n'.repeat(1_000_000), {mode: 0o600}), 'carry-on'],
  ]
  const chosen = options.full ? cases : cases.filter(([label]) => ['a symbolic link to another file', 'a FIFO', 'a 300 MB sparse file', 'a million empty lines'].includes(label))
  let handled = 0
  let slowest = 0
  let peak = 0
  for (const [label, make, writer] of chosen) {
    // eslint-disable-next-line no-await-in-loop -- one keystore per case
    const {cleanup, cwd, trail} = await keystoreWithTrail()
    try {
      await fs.rm(trail)
      // eslint-disable-next-line no-await-in-loop -- one at a time
      await make(trail, path.dirname(trail))
      // eslint-disable-next-line no-await-in-loop -- one at a time
      const verify = await cliMeasured(['keystore', 'audit', '--verify'], {cwd, timeoutMs: 30_000})
      const before = await fs.readFile(keystorePath(cwd))
      // eslint-disable-next-line no-await-in-loop -- one at a time
      const add = await cliMeasured(['keystore', 'add', 'C', '--stdin'], {cwd, input: 'c', timeoutMs: 30_000})
      slowest = Math.max(slowest, verify.ms, add.ms)
      peak = Math.max(peak, verify.peakMiB, add.peakMiB)
      const changed = !(await fs.readFile(keystorePath(cwd))).equals(before)
      const victim = await fs.readFile(path.join(path.dirname(trail), 'victim'), 'utf8').catch(() => 'victim\n')
      const problems = [
        verify.signal ? 'audit --verify hung' : verify.code === 1 && oneErrorLine(verify.stderr) ? '' : `audit --verify exit ${verify.code}: ${JSON.stringify(verify.stderr.slice(0, 200))}`,
        add.signal ? 'add hung' : '',
        writer === 'refuse' && (add.code !== 1 || !oneErrorLine(add.stderr) || changed) ? `add exit ${add.code}, keystore ${changed ? 'changed' : 'unchanged'}: ${add.stderr.slice(0, 200)}` : '',
        writer === 'carry-on' && add.code !== 0 ? `add exit ${add.code}: ${add.stderr.slice(0, 200)}` : '',
        victim === 'victim\n' ? '' : 'the file behind the link was written',
        Math.max(verify.peakMiB, add.peakMiB) > 400 ? `${Math.max(verify.peakMiB, add.peakMiB)} MiB resident` : '',
      ].filter(Boolean)
      // Carried on: the damage must still show.
      // eslint-disable-next-line no-await-in-loop -- one at a time
      if (writer === 'carry-on' && problems.length === 0 && (await cli(['keystore', 'audit', '--verify'], {cwd})).code !== 1) problems.push('after the add, --verify no longer reports the damage')
      if (problems.length > 0) fail(result, `hostile audit trail (${label}): ${problems.join('; ')}`)
      else handled++
    } finally {
      cleanup()
    }
  }

  result.figures.push({
    check: 'hostile input',
    figure: `hostile audit trails (${chosen.length}: a link to another file or /dev/zero, a FIFO, a directory, 300 MB sparse, a 40 MB line, nested brackets, a million empty lines) to audit --verify and add`,
    value: `${handled}/${chosen.length}: --verify exit 1 with one line; add refused (links, FIFO, folder) or carried on with the damage still reported; nothing written through a link; slowest ${slowest} ms, peak ${peak} MiB`,
  })
}

async function badExpiries(options: HostileAuditOptions, result: CheckResult): Promise<void> {
  const all = ['', 'soon', '90', '0d', '-1d', '1.5d', '99999999999999999999d', '2027-02-30', '2027-13-01', '1970-01-01', `${'9'.repeat(10_000)}d`, '2027-03-01T25:00:00Z', 'NaN', '\u{1f511}d']
  const values = options.full ? all : ['soon', '0d', '99999999999999999999d', '2027-02-30', '1970-01-01']
  const {cleanup, cwd} = await keystoreWithTrail()
  let refused = 0
  try {
    const before = await fs.readFile(keystorePath(cwd))
    for (const value of values) {
      // eslint-disable-next-line no-await-in-loop -- one at a time
      const run = await cli(['keystore', 'add', 'X', '--stdin', '--expires', value], {cwd, input: 'x'})
      if (run.code !== 2 || !oneErrorLine(run.stderr) || run.stderr.length > 400) fail(result, `--expires ${JSON.stringify(value.slice(0, 40))}: exit ${run.code}, ${JSON.stringify(run.stderr.slice(0, 200))}`)
      else refused++
    }

    if (!(await fs.readFile(keystorePath(cwd))).equals(before)) fail(result, 'bad --expires: the keystore changed')
  } finally {
    cleanup()
  }

  result.figures.push({check: 'hostile input', figure: `bad --expires values (${values.length}: words, zero and negative durations, 20 digits, 10,000 digits, impossible dates, the past, emoji)`, value: `${refused}/${values.length} exit 2 with one short line, keystore untouched`})
}

async function hostileRuns(options: HostileAuditOptions, result: CheckResult): Promise<void> {
  const {cleanup, cwd} = await keystoreWithTrail()
  const marker = path.join(cwd, 'ran')
  const touch = ['--', 'sh', '-c', `touch ${marker}`]
  try {
    const values: Array<[string, Buffer]> = [['NUL', Buffer.from([0x61, 0, 0x62])], ['BINARY', Buffer.from([0xff, 0xfe])], ['HUGE', Buffer.alloc(200_000, 0x61)], ['TOKEN', Buffer.from('token-value')]]
    for (const [name, value] of values) {
      // eslint-disable-next-line no-await-in-loop -- set-up
      await cli(['keystore', 'add', name, '--stdin'], {cwd, input: Buffer.concat([value, Buffer.from('\n')])})
    }

    const all: Array<[string, string[], number]> = [
      ['a value with a NUL byte', ['--key', 'NUL', ...touch], 1],
      ['a value that is not UTF-8', ['--key', 'BINARY', ...touch], 1],
      ['a value of 200 kB', ['--key', 'HUGE', ...touch], 1],
      ['a variable name with a space', ['--env', 'A B=A', ...touch], 2],
      ['--env without =', ['--env', 'A', ...touch], 2],
      ['a key name of 10,000 characters', ['--key', 'K'.repeat(10_000), ...touch], 2],
      ['no command', ['--key', 'TOKEN'], 2],
      ['a command that does not exist', ['--key', 'TOKEN', '--', '/nonexistent/cmd'], 127],
      ['a command that is a directory', ['--key', 'TOKEN', '--', '/'], 126],
      ['every entry, one of them holding a NUL byte', ['--', 'sh', '-c', `touch ${marker}`], 1],
    ]
    const cases = options.full ? all : all.filter(([label]) => ['a value with a NUL byte', 'a variable name with a space', 'a command that does not exist'].includes(label))
    let refused = 0
    for (const [label, args, code] of cases) {
      // eslint-disable-next-line no-await-in-loop -- one at a time
      const run = await cli(['keystore', 'run', ...args], {cwd, input: 'keep-open', timeoutMs: 30_000})
      // eslint-disable-next-line no-await-in-loop -- one at a time
      const ran = await fs.stat(marker).then(() => true, () => false)
      if (run.signal || run.code !== code || !oneErrorLine(run.stderr) || ran) fail(result, `keystore run (${label}): exit ${run.code ?? run.signal}, expected ${code}; ran ${ran}; ${JSON.stringify(run.stderr.slice(0, 200))}`)
      else refused++
    }

    result.figures.push({check: 'hostile input', figure: `keystore run given what an environment cannot hold (NUL, not UTF-8, 200 kB), bad names, no or no such command (${cases.length})`, value: `${refused}/${cases.length} refused with one line and the documented code, the command never run`})
  } finally {
    cleanup()
  }
}
