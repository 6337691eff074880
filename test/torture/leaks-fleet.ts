/**
 * The leak hunt of issue 13's commands: recipient, seal (from a keystore and from stdin, armour and
 * binary, stdout, --out and --json), import (file and stdin, again, refused ones) and sync (with
 * --check, and a directory of bad files). The canary value and passwords must not show in any output
 * but `show`'s, nor in the bundles (in any encoding), and each host's secret X25519 key, read back
 * through the core, must show nowhere at all: no output, no bundle, no keystore in clear.
 */
import {execFileSync} from 'node:child_process'
import {promises as fs} from 'node:fs'
import path from 'node:path'

import {openKeystore} from '../../src/core/keystore.js'
import {Canaries} from './leaks.js'
import {CheckResult, cli, fail, keystorePath, TempDir, tempDir} from './lib.js'

interface FleetStep {
  args: string[] | (() => string[])
  home: 'receiver' | 'sender'
  env?: Record<string, string | undefined>
  input?: Buffer | string | (() => Promise<Buffer>)
  exit?: number
  stdoutMay?: string[]
  /** covered by another step in the fast test */
  redundant?: boolean
}

/** Every form a binary secret could take in output or a file. */
function byteForms(bytes: Buffer): Buffer[] {
  const forms = [bytes, Buffer.from(bytes.toString('hex')), Buffer.from(bytes.toString('hex').toUpperCase())]
  for (const encoding of ['base64', 'base64url'] as const) {
    for (let pad = 0; pad < 3; pad++) {
      const text = Buffer.concat([Buffer.alloc(pad), bytes, Buffer.alloc(3)]).toString(encoding)
      forms.push(Buffer.from(text.slice(Math.ceil((pad * 4) / 3) + 4, -8)))
    }
  }

  return forms
}

/** Runs the fleet commands; returns how many ran. Outputs and files are scanned as the main hunt does. */
export async function checkFleetLeaks(canaries: Canaries, full: boolean, result: CheckResult): Promise<number> {
  const sender = tempDir('apm-torture-leak-')
  const receiver = tempDir('apm-torture-leak-')
  // Outside the homes: the sync directory holds the value in clear, as a mounted Secret does.
  const source = tempDir('apm-torture-leak-input-')
  const bundles = tempDir('apm-torture-leak-bundles-')
  const outputs: Buffer[] = []
  let commands = 0
  try {
    const secrets = path.join(source.dir, 'secrets')
    const bad = path.join(source.dir, 'bad')
    await fs.mkdir(secrets)
    await fs.writeFile(path.join(secrets, 'SYNCED'), canaries.value)
    await fs.mkdir(bad)
    await fs.writeFile(path.join(bad, 'bad name'), canaries.value)
    await fs.writeFile(path.join(bad, 'EMPTY'), '')
    execFileSync('mkfifo', [path.join(bad, 'FIFO')])
    const pw = {APM_SERVER_KEYSTORE_PASSWORD: canaries.password}
    const wrong = {APM_SERVER_KEYSTORE_PASSWORD: canaries.wrongPassword}
    let recipient = ''
    const bundle = path.join(bundles.dir, 'fleet.bundle')
    const binary = path.join(bundles.dir, 'fleet.bin')
    const tampered = async () => {
      const text = (await fs.readFile(bundle)).toString('latin1')
      const at = text.indexOf('\n', text.indexOf('\n') + 1) - 3
      return Buffer.from(`${text.slice(0, at)}${text[at] === 'A' ? 'B' : 'A'}${text.slice(at + 1)}`, 'latin1')
    }

    const steps: FleetStep[] = [
      {args: ['keystore', 'create', '--password'], env: pw, home: 'receiver'},
      {args: ['keystore', 'recipient'], env: pw, home: 'receiver'},
      {args: ['keystore', 'recipient', '--json', '--debug'], env: pw, home: 'receiver'},
      {args: ['keystore', 'recipient'], env: wrong, exit: 1, home: 'receiver'},
      {args: ['keystore', 'create', '--password'], env: pw, home: 'sender'},
      {args: ['keystore', 'add', 'SECRET', '--stdin'], env: pw, home: 'sender', input: canaries.value},
      {args: () => ['keystore', 'seal', '--to', recipient], env: pw, home: 'sender'},
      {args: () => ['keystore', 'seal', '--to', recipient, '--json', 'SECRET'], env: pw, home: 'sender'},
      {args: () => ['keystore', 'seal', '--to', recipient, '--out', bundle, '--json'], env: pw, home: 'sender'},
      {args: () => ['keystore', 'seal', '--to', recipient, '--out', binary, '--binary'], env: pw, home: 'sender', redundant: true},
      {args: () => ['keystore', 'seal', '--to', recipient, 'FROM_STDIN', '--stdin'], home: 'sender', input: `${canaries.value}\n`},
      {args: () => ['keystore', 'seal', '--to', `${recipient}x`, 'FROM_STDIN', '--stdin', '--debug'], exit: 2, home: 'sender', input: canaries.value},
      {args: ['keystore', 'import', bundle], env: wrong, exit: 1, home: 'receiver'},
      {args: ['keystore', 'import', bundle, '--json'], env: pw, home: 'receiver'},
      {args: ['keystore', 'import', binary], env: pw, home: 'receiver', redundant: true},
      {args: ['keystore', 'import', '-', '--debug'], env: pw, exit: 1, home: 'receiver', input: tampered},
      {args: ['keystore', 'import', bundle, '--json'], env: pw, home: 'sender', exit: 1},
      {args: ['keystore', 'show', 'SECRET'], env: pw, home: 'receiver', stdoutMay: ['value']},
      {args: ['keystore', 'sync', secrets, '--json'], env: pw, home: 'receiver'},
      {args: ['keystore', 'sync', secrets, '--check', '--prune'], env: pw, exit: 1, home: 'receiver'},
      {args: ['keystore', 'sync', bad, '--json', '--debug'], env: pw, exit: 1, home: 'receiver'},
      {args: ['keystore', 'list', '--json'], env: pw, home: 'receiver', redundant: true},
    ]
    for (const step of full ? steps : steps.filter((s) => !s.redundant)) {
      commands++
      const args = typeof step.args === 'function' ? step.args() : step.args
      const input = typeof step.input === 'function' ? await step.input() : step.input
      const cwd = step.home === 'sender' ? sender.dir : receiver.dir
      // eslint-disable-next-line no-await-in-loop -- commands build on each other
      const run = await cli(args, {cwd, env: step.env, input, timeoutMs: 30_000})
      const label = `leak: ${args.slice(1, 3).join(' ')} ${args.filter((arg) => arg.startsWith('--')).join(' ')} (${step.home})`
      if (run.code !== (step.exit ?? 0)) fail(result, `${label}: exit ${run.code}, expected ${step.exit ?? 0}: ${run.stderr.trim().slice(0, 200)}`)
      if (args[1] === 'recipient' && run.code === 0 && !args.includes('--json')) recipient = run.stdout.trim()
      const inStdout = canaries.find(run.stdoutBytes, step.stdoutMay)
      const inStderr = canaries.find(run.stderr)
      if (inStdout.length > 0) fail(result, `${label}: ${inStdout.join(', ')} canary in stdout`)
      if (inStderr.length > 0) fail(result, `${label}: ${inStderr.join(', ')} canary in stderr`)
      outputs.push(run.stdoutBytes, Buffer.from(run.stderr))
    }

    await scanFleetFiles(canaries, {bundles, receiver, sender}, outputs, result)
  } finally {
    for (const dir of [sender, receiver, source, bundles]) dir.cleanup()
  }

  return commands
}

async function scanFleetFiles(canaries: Canaries, dirs: {bundles: TempDir; receiver: TempDir; sender: TempDir}, outputs: Buffer[], result: CheckResult): Promise<void> {
  const bundleFiles = (await fs.readdir(dirs.bundles.dir)).map((name) => path.join(dirs.bundles.dir, name))
  if (bundleFiles.length === 0) fail(result, 'leak: no bundle was written (the bundle scan is blind)')
  for (const file of bundleFiles) {
    // eslint-disable-next-line no-await-in-loop -- small files
    const found = canaries.find(await fs.readFile(file))
    if (found.length > 0) fail(result, `leak: ${found.join(', ')} canary in the bundle ${path.basename(file)}`)
  }

  // The receiver's secret key, read through the core: in no output, no bundle, no keystore in clear.
  const keystore = await openKeystore(keystorePath(dirs.receiver.dir), {password: async () => Buffer.from(canaries.password)})
  const secretKey = keystore.hostKeyPair()?.secretKey
  if (!secretKey) {
    fail(result, 'leak: the receiver has no host key (the host key scan is blind)')
    return
  }

  const forms = byteForms(Buffer.from(secretKey))
  const files = [...bundleFiles, keystorePath(dirs.receiver.dir), keystorePath(dirs.sender.dir)]
  const haystacks = [...outputs.map((data, i) => ({data, where: `output ${i}`})), ...(await Promise.all(files.map(async (file) => ({data: await fs.readFile(file), where: file}))))]
  for (const {data, where} of haystacks) {
    if (forms.some((form) => data.includes(form))) fail(result, `leak: the host's secret key in ${where}`)
  }
}
