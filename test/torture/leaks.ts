/**
 * Leak hunt: every keystore command runs with known canary secrets (a value, the password, a new
 * password, a wrong password). The canaries, raw or base64/base64url/hex/UTF-16 encoded, must never
 * appear in the argv of any process (sampled from /proc/<pid>/cmdline all along), in stdout (except
 * `show`'s own value), in stderr, in --json output, in any file left under the temp dirs, nor in the
 * keystore itself in clear. A decoy process with a canary in its argv proves the sampler can see one.
 */
import {ChildProcess, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {promises as fs, watch} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {checkFleetLeaks} from './leaks-fleet.js'
import {AUDIT_NAME, BIN, CheckResult, cli, fail, KEYSTORE_NAME, keystorePath, newResult, sleep, startCli, TEMP_FILE, tempDir} from './lib.js'

export interface LeakOptions {
  /** kills at the temp file, whose leftovers are scanned too */
  crashes: number
  /** false: each command and output mode once, not every combination (the fast test) */
  full: boolean
}

/** Every way a canary could show up in bytes. */
export function canaryForms(canary: string): Buffer[] {
  const forms = [Buffer.from(canary), Buffer.from(canary, 'utf16le'), Buffer.from(Buffer.from(canary).toString('hex')), Buffer.from(Buffer.from(canary).toString('hex').toUpperCase())]
  for (const encoding of ['base64', 'base64url'] as const) {
    for (let pad = 0; pad < 3; pad++) {
      // The canary at each alignment inside a longer base64 text; the ends depend on the neighbours.
      const text = Buffer.concat([Buffer.alloc(pad, 0x2e), Buffer.from(canary), Buffer.alloc(3, 0x2e)]).toString(encoding)
      const skip = Math.ceil((pad * 4) / 3) + 4
      forms.push(Buffer.from(text.slice(skip, -8)))
    }
  }

  return forms
}

export class Canaries {
  readonly value = `CANARYVAL${randomBytes(9).toString('hex')}`
  readonly password = `CANARYPW${randomBytes(9).toString('hex')}`
  readonly newPassword = `CANARYNEW${randomBytes(9).toString('hex')}`
  readonly wrongPassword = `CANARYWRONG${randomBytes(9).toString('hex')}`
  private readonly forms: Array<{name: string; form: Buffer}>

  constructor() {
    this.forms = (['value', 'password', 'newPassword', 'wrongPassword'] as const).flatMap((name) => canaryForms(this[name]).map((form) => ({form, name})))
  }

  /** Names of the canaries found in `data`. */
  find(data: Buffer | string, except: readonly string[] = []): string[] {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    const found = new Set<string>()
    for (const {form, name} of this.forms) if (!except.includes(name) && bytes.includes(form)) found.add(name)
    return [...found]
  }
}

/**
 * Reads every process's argv every few ms until stopped. A process's argv is read on its first five
 * sightings (a forked child shows its parent's argv until it execs), so a sweep costs a readdir of /proc
 * plus the new processes, and the sampler does not compete with the commands it watches.
 */
export class ArgvSampler {
  samples = 0
  reads = 0
  processesSeen = new Set<number>()
  /** processes whose argv held `watch` (the CLI's path): proof the sweeps see the commands */
  watched = new Set<number>()
  hits: string[] = []
  private readonly sightings = new Map<string, number>()
  private running = true
  private done: Promise<void>

  constructor(
    private readonly needles: Array<{name: string; bytes: Buffer}>,
    private readonly watch: Buffer = Buffer.from(BIN),
  ) {
    this.done = this.loop()
  }

  async stop(): Promise<void> {
    this.running = false
    await this.done
  }

  private async loop(): Promise<void> {
    while (this.running) {
      // eslint-disable-next-line no-await-in-loop -- one sweep at a time
      const pids = (await fs.readdir('/proc')).filter((name) => /^\d+$/.test(name) && (this.sightings.get(name) ?? 0) < 5)
      // eslint-disable-next-line no-await-in-loop -- one sweep at a time
      await Promise.all(
        pids.map(async (pid) => {
          const argv = await fs.readFile(`/proc/${pid}/cmdline`).catch(() => undefined)
          this.sightings.set(pid, (this.sightings.get(pid) ?? 0) + 1)
          if (!argv || argv.length === 0) return
          this.reads++
          this.processesSeen.add(Number(pid))
          if (argv.includes(this.watch)) this.watched.add(Number(pid))
          for (const needle of this.needles) {
            if (argv.includes(needle.bytes)) this.hits.push(`${needle.name} in argv of pid ${pid}: ${argv.toString().replaceAll('\0', ' ').slice(0, 160)}`)
          }
        }),
      )
      this.samples++
      // eslint-disable-next-line no-await-in-loop -- pace the sweeps
      await sleep(3)
    }
  }
}

interface Step {
  args: string[]
  env?: Record<string, string | undefined>
  input?: Buffer | string
  /** canaries this step's stdout may contain (show prints the value) */
  stdoutMay?: string[]
  exit?: number
  home?: 'beats' | 'main'
  /** covered by another step in the fast test */
  redundant?: boolean
}

export async function checkLeaks(options: LeakOptions): Promise<CheckResult> {
  const result = newResult()
  const canaries = new Canaries()
  const main = tempDir('apm-torture-leak-')
  const beats = tempDir('apm-torture-leak-')
  const outside = tempDir('apm-torture-leak-input-')
  const started = Date.now()
  const needles = (['value', 'password', 'newPassword', 'wrongPassword'] as const).flatMap((name) => canaryForms(canaries[name]).map((bytes) => ({bytes, name})))
  const decoyCanary = `CANARYDECOY${randomBytes(6).toString('hex')}`
  const sampler = new ArgvSampler([...needles, {bytes: Buffer.from(decoyCanary), name: 'decoy'}])
  let commands = 0
  try {
    // The sampler must be able to see a secret in argv: a decoy process carries one.
    const decoy = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 400)', decoyCanary], {stdio: 'ignore'})
    await new Promise((resolve) => {
      decoy.on('close', resolve)
    })
    // For test config --explain: the token from the keystore, also set in the environment.
    await fs.writeFile(path.join(main.dir, 'apm-server.yml'), 'apm-server.auth.secret_token: "${SECRET}"\n')
    const valueFile = path.join(outside.dir, 'value.bin')
    const passwordFile = path.join(outside.dir, 'password.txt')
    await fs.writeFile(valueFile, canaries.value, {mode: 0o600})
    await fs.writeFile(passwordFile, `${canaries.password}\n`, {mode: 0o600})
    const pw = {APM_SERVER_KEYSTORE_PASSWORD: canaries.password}
    const newPw = {APM_SERVER_KEYSTORE_PASSWORD: canaries.newPassword}
    const steps: Step[] = [
      {args: ['keystore', 'create', '--password'], env: pw},
      {args: ['keystore', 'create', '--password', '--json'], env: pw, exit: 1, redundant: true},
      {args: ['keystore', 'add', 'SECRET', '--stdin'], env: pw, input: canaries.value},
      {args: ['keystore', 'add', 'SECRET', '--stdin'], env: pw, exit: 1, input: canaries.value, redundant: true},
      {args: ['keystore', 'add', 'SECRET', '--stdin', '--json'], env: pw, exit: 1, input: canaries.value},
      {args: ['keystore', 'add', 'SECRET', '--stdin', '--force', '--json'], env: pw, input: canaries.value},
      // issue 16: run (masked; the value through the environment only, the password not passed on), expiry, audit, explain
      {args: ['keystore', 'run', '--key', 'SECRET', '--', 'sh', '-c', 'echo "$SECRET"; echo "x$SECRET" >&2; echo "pw=$APM_SERVER_KEYSTORE_PASSWORD"; sleep 0.3'], env: pw},
      {args: ['keystore', 'run', '--env', 'S=SECRET', '--debug', '--', 'sh', '-c', 'printf %s "$S"; exit 3'], env: pw, exit: 3, redundant: true},
      {args: ['keystore', 'run', '--no-mask', '--key', 'SECRET', '--', 'sh', '-c', 'printf %s "$SECRET"'], env: pw, stdoutMay: ['value']},
      {args: ['keystore', 'run', '--key', 'SECRET', '--', 'sh', '-c', 'true'], env: {APM_SERVER_KEYSTORE_PASSWORD: canaries.wrongPassword}, exit: 1, redundant: true},
      {args: ['keystore', 'add', 'EXPIRING', '--stdin', '--expires', '30d', '--json'], env: pw, input: canaries.value},
      {args: ['keystore', 'list', '--long', '--json'], env: pw},
      {args: ['keystore', 'audit'], env: pw, redundant: true},
      {args: ['keystore', 'audit', 'SECRET', '--verify', '--json', '--debug'], env: pw},
      {args: ['keystore', 'audit', '--verify'], env: {APM_SERVER_KEYSTORE_PASSWORD: canaries.wrongPassword}, exit: 1},
      {args: ['test', 'config', '--explain', '--json'], env: {...pw, SECRET: canaries.value}},
      {args: ['keystore', 'add', 'FROM_FILE', '--file', valueFile, '--json'], env: {APM_SERVER_KEYSTORE_PASSWORD_FILE: passwordFile}},
      {args: ['keystore', 'add', 'A1', 'A2', '--stdin'], env: pw, input: `${canaries.value}\n${canaries.value}\n`},
      {args: ['keystore', 'add', 'A1', '--stdin', '--debug'], env: pw, exit: 1, input: canaries.value},
      {args: ['keystore', 'add', 'GENERATED', '--generate'], env: pw, redundant: true},
      {args: ['keystore', 'add', 'GENERATED2', '--generate', '--json'], env: pw},
      {args: ['keystore', 'add', 'bad name', '--stdin'], env: pw, exit: 2, input: canaries.value, redundant: true},
      {args: ['keystore', 'list'], env: pw, redundant: true},
      {args: ['keystore', 'list', '--json'], env: pw},
      {args: ['keystore', 'show', 'SECRET'], env: pw, stdoutMay: ['value']},
      {args: ['keystore', 'show', 'SECRET', '--json'], env: pw},
      {args: ['keystore', 'show', 'MISSING', '--json'], env: pw, exit: 1, redundant: true},
      {args: ['keystore', 'has-passwd', '--json'], env: pw},
      {args: ['keystore', 'list'], env: {APM_SERVER_KEYSTORE_PASSWORD: canaries.wrongPassword}, exit: 1, redundant: true},
      {args: ['keystore', 'list', '--json', '--debug'], env: {APM_SERVER_KEYSTORE_PASSWORD: canaries.wrongPassword}, exit: 1},
      {args: ['keystore', 'show', 'SECRET'], env: {APM_SERVER_KEYSTORE_PASSWORD: canaries.wrongPassword, DEBUG: '1'}, exit: 1},
      {args: ['keystore', 'passwd', '--stdin', '--json'], env: pw, input: `${canaries.newPassword}\n`},
      {args: ['keystore', 'passwd', '--stdin'], env: pw, exit: 1, input: `${canaries.newPassword}\n`},
      {args: ['keystore', 'upgrade', '--json'], env: newPw},
      {args: ['keystore', 'remove', 'A2', '--json'], env: newPw},
      {args: ['keystore', 'remove', 'A2'], env: newPw, exit: 1, redundant: true},
      {args: ['keystore', 'passwd', '--stdin'], env: newPw, input: `${canaries.password}\n`},
      {args: ['keystore', 'passwd', '--remove', '--json'], env: pw},
      {args: ['keystore', 'show', 'SECRET'], env: {}, stdoutMay: ['value']},
      {args: ['keystore', 'passwd', '--stdin'], env: {}, input: canaries.newPassword},
      {args: ['keystore', 'create', '--format', 'beats-v1'], home: 'beats'},
      {args: ['keystore', 'add', 'SECRET', '--stdin'], home: 'beats', input: `${canaries.value}\n`},
      {args: ['keystore', 'show', 'SECRET', '--json'], home: 'beats', redundant: true},
      {args: ['keystore', 'passwd', '--stdin'], exit: 1, home: 'beats', input: canaries.password, redundant: true},
      {args: ['keystore', 'upgrade'], home: 'beats'},
      {args: ['keystore', 'show', 'SECRET'], home: 'beats', stdoutMay: ['value']},
    ]
    for (const step of options.full ? steps : steps.filter((s) => !s.redundant)) {
      commands++
      const cwd = step.home === 'beats' ? beats.dir : main.dir
      // eslint-disable-next-line no-await-in-loop -- commands build on each other
      const run = await cli(step.args, {cwd, env: step.env, input: step.input})
      const label = `leak: ${step.args.slice(1).join(' ')}${step.env && Object.keys(step.env).length > 0 ? ` (${Object.keys(step.env).join(',')})` : ''}`
      if (run.code !== (step.exit ?? 0)) fail(result, `${label}: exit ${run.code}, expected ${step.exit ?? 0}: ${run.stderr.trim().slice(0, 200)}`)
      const inStdout = canaries.find(run.stdoutBytes, step.stdoutMay)
      const inStderr = canaries.find(run.stderr)
      if (inStdout.length > 0) fail(result, `${label}: ${inStdout.join(', ')} canary in stdout`)
      if (inStderr.length > 0) fail(result, `${label}: ${inStderr.join(', ')} canary in stderr`)
      if ((step.args.includes('show') || step.args.includes('--no-mask')) && !step.args.includes('--json') && run.code === 0 && !run.stdout.includes(canaries.value)) {
        fail(result, `${label}: ${step.args[1]} did not print the value (the scan would be blind)`)
      }
    }

    const fleetCommands = await checkFleetLeaks(canaries, options.full, result)
    commands += fleetCommands
    const crashLeftovers = await crashScan(options.crashes, canaries, result)

    await sleep(50)
    await sampler.stop()
    const decoySeen = sampler.hits.some((hit) => hit.startsWith('decoy'))
    if (!decoySeen) fail(result, 'leak: the argv sampler did not see the decoy process: the argv scan is blind')
    // Every command is a process that lives a few hundred ms: the sweeps must have caught nearly all of them.
    if (sampler.watched.size < commands * 0.9) fail(result, `leak: the argv sampler saw only ${sampler.watched.size} of ${commands} CLI processes`)
    for (const hit of sampler.hits.filter((h) => !h.startsWith('decoy'))) fail(result, `leak: ${hit}`)

    // Every file left behind: the keystores must not hold a canary in clear, nothing else may hold one at all.
    const files = [...(await walk(main.dir)), ...(await walk(beats.dir))]
    for (const file of files) {
      // eslint-disable-next-line no-await-in-loop -- small files
      const found = canaries.find(await fs.readFile(file))
      if (found.length > 0) fail(result, `leak: ${found.join(', ')} canary in ${path.basename(file) === KEYSTORE_NAME ? 'the keystore, in clear,' : 'a file left behind,'} ${file}`)
    }

    const keystores = files.filter((file) => path.basename(file) === KEYSTORE_NAME).length
    // The audit trails (scanned above like every file) and the configuration test config read.
    const others = files.filter((file) => ![KEYSTORE_NAME, AUDIT_NAME, 'apm-server.yml'].includes(path.basename(file)))
    if (others.length > 0) fail(result, `leak: files left next to the keystore: ${others.join(', ')}`)
    // Anything new in the system temp dir, outside our own dirs, must not hold a canary either.
    const strays = await strayTempFiles(started, [main.dir, beats.dir, outside.dir], canaries)
    for (const stray of strays) fail(result, `leak: canary in ${stray}`)
    const cores = files.filter((file) => /^core(\.\d+)?$/.test(path.basename(file)))
    if (cores.length > 0) fail(result, `leak: core files left: ${cores.join(', ')}`)
    result.figures.push(
      {
        check: 'leak hunt',
        figure: `${commands} keystore commands (${fleetCommands} of them recipient, seal, import, sync; and run, masked and not, audit, list --long, add --expires, test config --explain) with canary value/password/new/wrong password (raw, base64, base64url, hex, UTF-16)`,
        value: `${result.failures.length === 0 ? '0' : 'SOME'} canaries in stdout (except show), stderr, --json, --debug, leftover files, bundles, keystores in clear (${keystores} keystores, ${files.length - keystores} other files scanned); the host's secret key in no output, bundle or keystore in clear`,
      },
      {
        check: 'leak hunt',
        figure: 'argv of every process, sampled all along',
        value: `${sampler.samples} sweeps, ${sampler.reads} reads of the argv of ${sampler.processesSeen.size} processes (${sampler.watched.size} of them our CLI commands): ${sampler.hits.filter((h) => !h.startsWith('decoy')).length} hits (decoy with a canary in argv ${decoySeen ? 'seen' : 'NOT seen'})`,
      },
      {check: 'leak hunt', figure: 'temp files left by kill -9 mid-write, scanned', value: `${crashLeftovers} temp files, none holds a canary in clear`},
    )
  } finally {
    await sampler.stop()
    main.cleanup()
    beats.cleanup()
    outside.cleanup()
  }

  return result
}

/** Kills `add` right as its temp file appears and scans what it left. */
async function crashScan(rounds: number, canaries: Canaries, result: CheckResult): Promise<number> {
  let scanned = 0
  const tmp = tempDir('apm-torture-leak-')
  try {
    const cwd = tmp.dir
    await cli(['keystore', 'create', '--password'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: canaries.password}})
    const dir = path.dirname(keystorePath(cwd))
    for (let i = 0; i < rounds; i++) {
      let child: ChildProcess | undefined
      const watcher = watch(dir, (_event, name) => {
        if (name && TEMP_FILE.test(name)) child?.kill('SIGKILL')
      })
      const running = startCli(['keystore', 'add', `K${i}`, '--stdin', '--force'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: canaries.password}, input: canaries.value})
      child = running.child
      // eslint-disable-next-line no-await-in-loop -- one at a time
      await running.done
      watcher.close()
      // eslint-disable-next-line no-await-in-loop -- scan what is there now
      for (const name of await fs.readdir(dir)) {
        if (!TEMP_FILE.test(name)) continue
        scanned++
        // eslint-disable-next-line no-await-in-loop -- small files
        const found = canaries.find(await fs.readFile(path.join(dir, name)))
        if (found.length > 0) fail(result, `leak: ${found.join(', ')} canary in clear in the temp file ${name} a kill left`)
        // eslint-disable-next-line no-await-in-loop -- tidy for the next round
        await fs.rm(path.join(dir, name), {force: true})
      }

      // eslint-disable-next-line no-await-in-loop -- a dead holder's lock: let the next round take it at once
      await fs.rm(path.join(dir, `${KEYSTORE_NAME}.lock`), {force: true, recursive: true})
    }
  } finally {
    tmp.cleanup()
  }

  return scanned
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await fs.readdir(dir, {withFileTypes: true})) {
    const full = path.join(dir, entry.name)
    // eslint-disable-next-line no-await-in-loop -- small trees
    if (entry.isDirectory()) out.push(...(await walk(full)))
    else if (entry.isFile()) out.push(full)
  }

  return out
}

/** Files in the system temp dir changed since `since`, outside `own`, that hold a canary. */
async function strayTempFiles(since: number, own: string[], canaries: Canaries): Promise<string[]> {
  const hits: string[] = []
  const visit = async (dir: string, depth: number): Promise<void> => {
    let entries
    try {
      entries = await fs.readdir(dir, {withFileTypes: true})
    } catch {
      return
    }

    for (const entry of entries) {
      const full = path.join(dir, entry.name)
      if (own.includes(full)) continue
      if (entry.isDirectory() && depth < 3) {
        // eslint-disable-next-line no-await-in-loop -- bounded walk
        await visit(full, depth + 1)
      } else if (entry.isFile()) {
        // eslint-disable-next-line no-await-in-loop -- bounded walk
        const stat = await fs.stat(full).catch(() => undefined)
        if (!stat || stat.mtimeMs < since || stat.size > 20 * 1024 * 1024) continue
        // eslint-disable-next-line no-await-in-loop -- bounded walk
        const data = await fs.readFile(full).catch(() => undefined)
        if (data && canaries.find(data).length > 0) hits.push(full)
      }
    }
  }

  await visit(os.tmpdir(), 0)
  return hits
}
