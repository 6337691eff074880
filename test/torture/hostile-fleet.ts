/**
 * Hostile input to issue 13's commands: mistyped and crafted recipients to `seal --to` (exit 2, one line,
 * nothing written); bundles that are not bundles (garbage, a FIFO, /dev/zero behind a link, a directory,
 * one huge line, CRLF, a forged header) to `import` (one line, at once, in bounded memory, the keystore
 * untouched); directories full of odd files to `sync` (FIFOs, a socket, devices, link loops, broken
 * links, a link to the directory itself, control characters in names, thousands of empty files, a
 * file over 64 MiB); and binary values through seal and import, byte for byte.
 */
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {promises as fs} from 'node:fs'
import net from 'node:net'
import path from 'node:path'

import {CheckResult, cli, cliMeasured, fail, keystorePath, oneErrorLine, tempDir} from './lib.js'

export interface HostileFleetOptions {
  /** false: fewer cases (the fast test) */
  full: boolean
}

export async function checkHostileFleet(options: HostileFleetOptions, result: CheckResult): Promise<void> {
  const tmp = tempDir('apm-torture-fleet-')
  try {
    const cwd = tmp.dir
    for (const args of [['keystore', 'create'], ['keystore', 'recipient']]) {
      // eslint-disable-next-line no-await-in-loop -- set-up
      const run = await cli(args, {cwd})
      if (run.code !== 0) throw new Error(`${args.join(' ')} failed: ${run.stderr}`)
    }

    const recipient = (await cli(['keystore', 'recipient'], {cwd})).stdout.trim()
    await badRecipients(cwd, recipient, options, result)
    await badBundles(cwd, options, result)
    await oddDirectories(cwd, options, result)
    await binaryValues(cwd, recipient, result)
  } finally {
    tmp.cleanup()
  }
}

async function badRecipients(cwd: string, recipient: string, options: HostileFleetOptions, result: CheckResult): Promise<void> {
  const flipped = (i: number) => `${recipient.slice(0, i)}${recipient[i] === 'q' ? 'p' : 'q'}${recipient.slice(i + 1)}`
  const cases: Array<[string, string]> = [
    ['empty', ''],
    ['age recipient', 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'],
    ['ssh key', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'],
    ['one character changed', flipped(20)],
    ['last character changed', flipped(recipient.length - 1)],
    ['one character lost', recipient.slice(0, -1)],
    ['one character added', `${recipient}q`],
    ['mixed case', `${recipient.slice(0, 20).toUpperCase()}${recipient.slice(20)}`],
    ['the all-zero key', 'apm-recipient1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqsxl8g2'],
    ['a newline inside', `${recipient.slice(0, 30)}\n${recipient.slice(30)}`],
    ['100,000 characters', `apm-recipient1${'q'.repeat(100_000)}`],
    ['control characters', `apm-recipient1\u0007\u001b[31m${recipient.slice(14)}`],
  ]
  const chosen = options.full ? cases : cases.filter(([label]) => ['one character changed', 'the all-zero key', '100,000 characters'].includes(label))
  let refused = 0
  for (const [label, text] of chosen) {
    // eslint-disable-next-line no-await-in-loop -- one at a time
    const run = await cli(['keystore', 'seal', '--to', text, '--out', path.join(cwd, 'never.bundle')], {cwd})
    const exists = await fs.stat(path.join(cwd, 'never.bundle')).then(() => true, () => false)
    if (run.code !== 2) fail(result, `bad recipient (${label}): exit ${run.code}, expected 2: ${run.stderr.slice(0, 200)}`)
    else if (!oneErrorLine(run.stderr) || run.stderr.length > 400 || !run.stderr.includes('recipient')) fail(result, `bad recipient (${label}): not one short line naming the recipient: ${JSON.stringify(run.stderr.slice(0, 300))}`)
    else if (exists) fail(result, `bad recipient (${label}): a bundle was written`)
    else refused++
  }

  result.figures.push({check: 'hostile input', figure: `bad recipients to seal --to (${chosen.length}: typos, lost/added characters, weak key, other tools' keys, 100,000 characters, control characters)`, value: `${refused}/${chosen.length} exit 2 with one short line, no bundle written`})
}

async function badBundles(cwd: string, options: HostileFleetOptions, result: CheckResult): Promise<void> {
  const dir = path.join(cwd, 'bundles')
  await fs.mkdir(dir)
  const file = (name: string) => path.join(dir, name)
  const cases: Array<[string, () => Promise<string>]> = [
    ['random bytes', async () => (await fs.writeFile(file('random'), randomBytes(4096)), file('random'))],
    ['empty', async () => (await fs.writeFile(file('empty'), ''), file('empty'))],
    ['a FIFO', async () => (execFileSync('mkfifo', [file('fifo')]), file('fifo'))],
    ['a link to /dev/zero', async () => (await fs.symlink('/dev/zero', file('zero')), file('zero'))],
    ['a directory', async () => (await fs.mkdir(file('folder')), file('folder'))],
    ['a link loop', async () => (await fs.symlink('loop', file('loop')), file('loop'))],
    ['BEGIN and 64 MiB of one line', async () => (await fs.writeFile(file('long'), `-----BEGIN APM-SERVER SEALED BUNDLE-----\n${'A'.repeat(64 * 1024 * 1024)}`), file('long'))],
    ['BEGIN and a million short lines', async () => (await fs.writeFile(file('lines'), `-----BEGIN APM-SERVER SEALED BUNDLE-----\n${'AAAA\n'.repeat(1_000_000)}-----END APM-SERVER SEALED BUNDLE-----\n`), file('lines'))],
    ['a forged header: 65,535 recipients', async () => (await fs.writeFile(file('many'), Buffer.concat([Buffer.from('APMBUNDL\x01\xff\xff', 'latin1'), randomBytes(1000)])), file('many'))],
    ['a forged header: version 255', async () => (await fs.writeFile(file('version'), Buffer.concat([Buffer.from('APMBUNDL\xff\x00\x01', 'latin1'), randomBytes(200)])), file('version'))],
  ]
  const chosen = options.full ? cases : cases.filter(([label]) => ['a FIFO', 'a link to /dev/zero', 'BEGIN and 64 MiB of one line', 'random bytes'].includes(label))
  const before = await fs.readFile(keystorePath(cwd))
  let refused = 0
  let slowest = 0
  let peak = 0
  for (const [label, make] of chosen) {
    // eslint-disable-next-line no-await-in-loop -- one at a time
    const bundle = await make()
    // eslint-disable-next-line no-await-in-loop -- one at a time
    const run = await cliMeasured(['keystore', 'import', bundle], {cwd, timeoutMs: 30_000})
    slowest = Math.max(slowest, run.ms)
    peak = Math.max(peak, run.peakMiB)
    if (run.signal) fail(result, `hostile bundle (${label}): killed after 30 s (it waited or looped)`)
    else if (run.code !== 1 && run.code !== 2) fail(result, `hostile bundle (${label}): exit ${run.code}: ${run.stderr.slice(0, 200)}`)
    else if (!oneErrorLine(run.stderr)) fail(result, `hostile bundle (${label}): not one error line: ${JSON.stringify(run.stderr.slice(0, 300))}`)
    else if (run.peakMiB > 600) fail(result, `hostile bundle (${label}): ${run.peakMiB} MiB resident`)
    else refused++
  }

  if (!(await fs.readFile(keystorePath(cwd))).equals(before)) fail(result, 'hostile bundles: the keystore changed')
  result.figures.push({
    check: 'hostile input',
    figure: `hostile bundles to import (${chosen.length}: garbage, FIFO, /dev/zero, folder, link loop, 64 MiB line, a million lines, forged headers)`,
    value: `${refused}/${chosen.length} refused with one line, keystore untouched; slowest ${slowest} ms, peak ${peak} MiB`,
  })
}

async function oddDirectories(cwd: string, options: HostileFleetOptions, result: CheckResult): Promise<void> {
  const dir = path.join(cwd, 'odd')
  await fs.mkdir(dir)
  execFileSync('mkfifo', [path.join(dir, 'FIFO')])
  await fs.symlink('/dev/zero', path.join(dir, 'ZERO'))
  await fs.symlink('/dev/null', path.join(dir, 'NULL'))
  await fs.symlink('LOOP_A', path.join(dir, 'LOOP_B'))
  await fs.symlink('LOOP_B', path.join(dir, 'LOOP_A'))
  await fs.symlink('gone', path.join(dir, 'BROKEN'))
  await fs.symlink('.', path.join(dir, 'SELF'))
  await fs.writeFile(path.join(dir, 'ctl\u001b[31mred'), 'x')
  await fs.writeFile(path.join(dir, 'GOOD'), 'fine')
  const server = net.createServer()
  await new Promise<void>((resolve) => {
    server.listen(path.join(dir, 'SOCKET'), resolve)
  })
  const many = options.full ? 10_000 : 1000
  for (let i = 0; i < many; i += 500) {
    // eslint-disable-next-line no-await-in-loop -- batches of files
    await Promise.all(Array.from({length: Math.min(500, many - i)}, (_, j) => fs.writeFile(path.join(dir, `EMPTY_${i + j}`), '')))
  }

  const before = await fs.readFile(keystorePath(cwd))
  try {
    const run = await cliMeasured(['keystore', 'sync', dir, '--prune'], {cwd, timeoutMs: 60_000})
    const named = ['a FIFO, not a regular file: "FIFO"', 'a character device, not a regular file: "NULL", "ZERO"', 'a socket, not a regular file: "SOCKET"', 'a symbolic link loop: "LOOP_A", "LOOP_B"', 'a broken symbolic link', '"EMPTY_0"', `and ${many - 5} more`, `has ${many + 8} files`]
    if (run.signal) fail(result, 'odd directory: sync was killed after 60 s (it waited on a FIFO or a device)')
    else if (run.code !== 1 || !oneErrorLine(run.stderr)) fail(result, `odd directory: exit ${run.code}, stderr ${JSON.stringify(run.stderr.slice(0, 300))}`)
    else if (run.stderr.length > 4000) fail(result, `odd directory: the error line is ${run.stderr.length} characters (${many} problems should be counted, not listed)`)
    else if (!named.every((part) => run.stderr.includes(part))) fail(result, `odd directory: not every kind of file named: ${run.stderr.slice(0, 600)}`)
    if (!(await fs.readFile(keystorePath(cwd))).equals(before)) fail(result, 'odd directory: the keystore changed')
    for (const target of ['FIFO', 'LOOP_A']) {
      const alone = path.join(cwd, `only-${target}`)
      // eslint-disable-next-line no-await-in-loop -- two directories that are themselves odd
      await fs.symlink(path.join(dir, target), alone)
      // eslint-disable-next-line no-await-in-loop -- one at a time
      const odd = await cli(['keystore', 'sync', alone], {cwd, timeoutMs: 20_000})
      if (odd.signal || odd.code !== 1 || !oneErrorLine(odd.stderr)) fail(result, `sync of a DIR that is ${target}: exit ${odd.code ?? odd.signal}: ${odd.stderr.slice(0, 200)}`)
    }

    result.figures.push({
      check: 'hostile input',
      figure: `sync of a directory of odd files: FIFO, socket, /dev/zero and /dev/null links, a link loop, a broken link, a link to itself, control characters, ${many.toLocaleString('en-US')} empty files; DIR itself a FIFO or a link loop`,
      value: `exit 1 in ${run.ms} ms (${run.peakMiB} MiB) with one line of ${run.stderr.length} characters naming each kind, the keystore untouched`,
    })
  } finally {
    server.close()
  }
}

async function binaryValues(cwd: string, recipient: string, result: CheckResult): Promise<void> {
  // Neither ends in a newline: stdin loses one trailing "\n" or "\r\n", as add --stdin does.
  const values = [Buffer.from([0, 0x41, 0, 0xff, 0xfe, 0x0d, 0x0a, 0x42]), Buffer.concat([randomBytes(100_000), Buffer.from('.')])]
  const bundle = path.join(cwd, 'binary.bundle')
  const sealed = await cli(['keystore', 'seal', '--to', recipient, 'BIN_A', '--stdin', '--out', bundle], {cwd, input: Buffer.concat([values[0], Buffer.from('\n')])})
  const sealed2 = await cli(['keystore', 'seal', '--to', recipient, 'BIN_B', '--stdin', '--out', `${bundle}2`], {cwd, input: values[1]})
  const imported = [await cli(['keystore', 'import', bundle], {cwd}), await cli(['keystore', 'import', `${bundle}2`], {cwd})]
  const shown = [await cli(['keystore', 'show', 'BIN_A'], {cwd}), await cli(['keystore', 'show', 'BIN_B'], {cwd})]
  const exact = shown.filter((run, i) => run.stdoutBytes.equals(values[i])).length
  if (sealed.code !== 0 || sealed2.code !== 0 || imported.some((run) => run.code !== 0) || exact !== 2) {
    fail(result, `binary values through seal --stdin and import: ${exact}/2 byte-exact (${[sealed, sealed2, ...imported].map((run) => run.stderr.trim()).join(' | ')})`)
  }

  result.figures.push({check: 'hostile input', figure: 'values with NUL, CR, LF and invalid UTF-8, and 100 kB of random bytes, through seal --stdin and import', value: `${exact}/2 shown back byte-exact`})
}
