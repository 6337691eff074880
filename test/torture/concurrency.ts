/**
 * Concurrency: many CLI processes writing one keystore at once.
 *
 * 1. Parallel adds: P processes each run K `add` commands (one new key each) against one keystore, for
 *    each format variant; every key must be there with its value afterwards.
 * 2. Mixed races: writer processes add, replace and remove their own keys while one process keeps
 *    changing (and removing, and setting again) the password and readers keep opening the file. The
 *    file must open at every moment with one of the passwords, and at the end hold exactly what the
 *    successful commands imply, under the password the last successful `passwd` set.
 */
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {updateKeystore} from '../../src/core/keystore.js'

import type {CliResult} from '../helpers/cli.js'
import {CheckResult, cli, describeEntries, errorText, fail, keystorePath, leftovers, newResult, pool, prng, ROOT, sameEntries, sleep, snapshot, startCli, tempDir} from './lib.js'

export interface ConcurrencyOptions {
  /** false: the password-protected native and the Beats variants only, one mixed race (the fast test) */
  full: boolean
  processes: number
  keysEach: number
  /** commands per writer process in the mixed race */
  raceOps: number
  raceWriters: number
  seed: number
}

interface Variant {
  name: string
  create: string[]
  password?: string
}

const VARIANTS: Variant[] = [
  {create: ['keystore', 'create'], name: 'native, no password'},
  {create: ['keystore', 'create', '--password'], name: 'native, password', password: 'pw-concurrency-1'},
  {create: ['keystore', 'create', '--format', 'beats-v1'], name: 'beats-v1'},
]

export async function checkConcurrency(options: ConcurrencyOptions): Promise<CheckResult> {
  const result = newResult()
  for (const variant of options.full ? VARIANTS : VARIANTS.slice(1)) {
    // eslint-disable-next-line no-await-in-loop -- one keystore at a time: the processes already fill both cores
    await parallelAdds(variant, options, result)
  }

  await mixedRace(options, result, 'native')
  if (options.full) await mixedRace(options, result, 'beats-v1')
  return result
}

async function parallelAdds(variant: Variant, options: ConcurrencyOptions, result: CheckResult): Promise<void> {
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    const env = {APM_SERVER_KEYSTORE_PASSWORD: variant.password}
    const created = await cli(variant.create, {cwd, env})
    if (created.code !== 0) {
      fail(result, `concurrency ${variant.name}: create failed: ${created.stderr.trim()}`)
      return
    }

    const started = Date.now()
    let failed = 0
    const lanes = Array.from({length: options.processes}, (_, p) => p)
    await pool(lanes, lanes.length, async (p) => {
      for (let k = 0; k < options.keysEach; k++) {
        // eslint-disable-next-line no-await-in-loop -- each process adds its keys one after another
        const added = await cli(['keystore', 'add', `P${p}_K${k}`, '--stdin'], {cwd, env, input: `value-${p}-${k}`})
        if (added.code !== 0) {
          failed++
          fail(result, `concurrency ${variant.name}: add P${p}_K${k} exited ${added.code}: ${added.stderr.trim()}`)
        }
      }
    })
    const seconds = (Date.now() - started) / 1000
    const state = await snapshot(keystorePath(cwd), variant.password ? [variant.password] : [])
    const total = options.processes * options.keysEach
    if ('error' in state) {
      fail(result, `concurrency ${variant.name}: keystore does not open after the adds: ${errorText(state.error)}`)
      return
    }

    let present = 0
    for (let p = 0; p < options.processes; p++) {
      for (let k = 0; k < options.keysEach; k++) {
        const value = state.entries.get(`P${p}_K${k}`)
        if (value === Buffer.from(`value-${p}-${k}`).toString('base64')) present++
        else fail(result, `concurrency ${variant.name}: key P${p}_K${k} ${value === undefined ? 'missing' : 'has a wrong value'} after ${total} parallel adds`)
      }
    }

    if (state.entries.size !== total) fail(result, `concurrency ${variant.name}: ${state.entries.size} keys, expected ${total}`)
    const extra = await leftovers(cwd)
    if (extra.length > 0) fail(result, `concurrency ${variant.name}: left in the keystore dir: ${extra.join(', ')}`)
    result.figures.push({
      check: 'concurrency',
      figure: `${variant.name}: ${options.processes} processes × ${options.keysEach} adds`,
      value: `${present}/${total} keys present, ${failed} commands failed (${seconds.toFixed(0)} s)`,
    })
  } finally {
    tmp.cleanup()
  }
}

/** A writer's model of its own keys: it is the only process touching them, so its view is exact. */
type Model = Map<string, string>

async function mixedRace(options: ConcurrencyOptions, result: CheckResult, format: 'beats-v1' | 'native'): Promise<void> {
  const tmp = tempDir()
  const label = `mixed race (${format})`
  const passwords = ['pw-race-A', 'pw-race-B']
  try {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    const created = await cli(['keystore', 'create', ...(format === 'native' ? ['--password'] : ['--format', 'beats-v1'])], {
      cwd,
      env: {APM_SERVER_KEYSTORE_PASSWORD: passwords[0]},
    })
    if (created.code !== 0) {
      fail(result, `${label}: create failed: ${created.stderr.trim()}`)
      return
    }

    // The password lane is the only one changing it, so its model of the current password is exact.
    let currentPassword: string | undefined = format === 'native' ? passwords[0] : undefined
    let commands = 0
    let succeeded = 0
    let passwordRetries = 0
    let checks = 0
    let running = true

    const writer = async (lane: number): Promise<Model> => {
      const random = prng(options.seed + lane)
      const model: Model = new Map()
      let guess = passwords[0]
      let serial = 0
      for (let op = 0; op < options.raceOps; op++) {
        const mine = [...model.keys()]
        const roll = random()
        let args: string[]
        let input: string | undefined
        let apply: () => void
        if (mine.length === 0 || roll < 0.45) {
          const name = `W${lane}_${serial++}`
          const value = `v${lane}-${op}-${randomBytes(4).toString('hex')}`
          args = ['keystore', 'add', name, '--stdin']
          input = value
          apply = () => model.set(name, value)
        } else if (roll < 0.65) {
          const name = mine[Math.floor(random() * mine.length)]
          const value = `r${lane}-${op}-${randomBytes(4).toString('hex')}`
          args = ['keystore', 'add', name, '--stdin', '--force']
          input = value
          apply = () => model.set(name, value)
        } else {
          const names = mine.length > 1 && random() < 0.3 ? mine.slice(0, 2) : [mine[Math.floor(random() * mine.length)]]
          args = ['keystore', 'remove', ...names]
          apply = () => {
            for (const name of names) model.delete(name)
          }
        }

        for (let attempt = 0; ; attempt++) {
          commands++
          // eslint-disable-next-line no-await-in-loop -- a process runs its commands in order
          const run = await cli(args, {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: guess}, input})
          if (run.code === 0) {
            succeeded++
            apply()
            break
          }

          // The password changed under us: the command refused and changed nothing; retry with the other one.
          if (run.code === 1 && run.stderr.includes('wrong password') && attempt < 4) {
            passwordRetries++
            guess = guess === passwords[0] ? passwords[1] : passwords[0]
            continue
          }

          fail(result, `${label}: writer ${lane} "${args.slice(1).join(' ')}" exited ${run.code}: ${run.stderr.trim()}`)
          break
        }
      }

      return model
    }

    const passwordLane = async () => {
      if (format !== 'native') return
      // Cycle A -> B -> none -> A ...: change, remove, set.
      for (let op = 0; op < Math.max(2, Math.floor(options.raceOps / 2)); op++) {
        const next = op % 3 === 0 ? passwords[1] : op % 3 === 1 ? undefined : passwords[0]
        commands++
        // eslint-disable-next-line no-await-in-loop -- password changes are sequential by design
        const run = await cli(next === undefined ? ['keystore', 'passwd', '--remove'] : ['keystore', 'passwd', '--stdin'], {
          cwd,
          env: {APM_SERVER_KEYSTORE_PASSWORD: currentPassword ?? passwords[0]},
          input: next === undefined ? undefined : `${next}\n`,
        })
        if (run.code === 0) {
          succeeded++
          currentPassword = next
        } else {
          fail(result, `${label}: passwd to ${next ?? 'none'} exited ${run.code}: ${run.stderr.trim()}`)
          return
        }
      }
    }

    // Reader: the file must open at every moment, with one of the passwords or none.
    const reader = async () => {
      while (running) {
        checks++
        // eslint-disable-next-line no-await-in-loop -- sampling loop
        const state = await snapshot(file, passwords)
        if ('error' in state) fail(result, `${label}: keystore did not open mid-race: ${errorText(state.error)}`)
        // eslint-disable-next-line no-await-in-loop -- sampling loop
        await new Promise((resolve) => {
          setTimeout(resolve, 5)
        })
      }
    }

    const started = Date.now()
    const readerDone = reader()
    const [models] = await Promise.all([pool(Array.from({length: options.raceWriters}, (_, i) => i), options.raceWriters, writer), passwordLane()])
    running = false
    await readerDone
    const seconds = (Date.now() - started) / 1000

    const expected: Model = new Map()
    for (const model of models) for (const [name, value] of model) expected.set(name, Buffer.from(value).toString('base64'))
    const state = await snapshot(file, passwords)
    if ('error' in state) {
      fail(result, `${label}: keystore does not open after the race: ${errorText(state.error)}`)
      return
    }

    if (state.password !== currentPassword) fail(result, `${label}: keystore opens with ${state.password ?? 'no password'}, but the last passwd set ${currentPassword ?? 'none'}`)
    if (!sameEntries(state.entries, expected)) {
      fail(result, `${label}: final keys ${describeEntries(state.entries)} differ from what the successful commands imply ${describeEntries(expected)}`)
    }

    const extra = await leftovers(cwd)
    if (extra.length > 0) fail(result, `${label}: left in the keystore dir: ${extra.join(', ')}`)
    result.figures.push({
      check: 'concurrency',
      figure: `${label}: ${options.raceWriters} writers${format === 'native' ? ' + passwd cycling' : ''}, ${checks} mid-race opens`,
      value: `${commands} commands (${succeeded} ok, ${passwordRetries} retried after a password change); final state exact: ${sameEntries(state.entries, expected) ? 'yes' : 'NO'} (${seconds.toFixed(0)} s)`,
    })
  } finally {
    tmp.cleanup()
  }
}

/**
 * Stale-lock storms: a dead holder's lock (mtime in the past) with `processes` writers starting at
 * once. They all see the lock stale at the same moment and race to take it over; exactly one may win
 * at a time, so every writer's key must be in the file afterwards.
 */
export async function checkStaleLockStorm(options: {rounds: number; processes: number}): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  let lost = 0
  let landed = 0
  try {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    const created = await cli(['keystore', 'create'], {cwd})
    if (created.code !== 0) {
      fail(result, `stale-lock storm: create failed: ${created.stderr.trim()}`)
      return result
    }

    for (let round = 0; round < options.rounds; round++) {
      const lock = `${file}.lock`
      // eslint-disable-next-line no-await-in-loop -- set up the dead holder's lock
      await fs.mkdir(lock, {recursive: true})
      const past = new Date(Date.now() - 60_000)
      // eslint-disable-next-line no-await-in-loop -- set up the dead holder's lock
      await fs.utimes(lock, past, past)
      const names = Array.from({length: options.processes}, (_, p) => `S${round}_${p}`)
      // eslint-disable-next-line no-await-in-loop -- all writers of a round start together
      const runs = await Promise.all(names.map((name) => cli(['keystore', 'add', name, '--stdin'], {cwd, input: name})))
      // eslint-disable-next-line no-await-in-loop -- check the round
      const state = await snapshot(file)
      if ('error' in state) {
        fail(result, `stale-lock storm round ${round}: keystore does not open: ${errorText(state.error)}`)
        return result
      }

      for (const [i, name] of names.entries()) {
        if (runs[i].code !== 0) fail(result, `stale-lock storm round ${round}: add ${name} exited ${runs[i].code}: ${runs[i].stderr.trim()}`)
        else if (state.entries.has(name)) landed++
        else {
          lost++
          fail(result, `stale-lock storm round ${round}: add ${name} reported success but the key is not in the file (two writers held the lock)`)
        }
      }
    }
  } finally {
    tmp.cleanup()
  }

  result.figures.push({
    check: 'concurrency',
    figure: `stale-lock storms: ${options.rounds} rounds of ${options.processes} writers taking over a dead holder's lock at once`,
    value: `${landed} successful adds landed, ${lost} lost`,
  })
  return result
}

const LOCK_WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lock-worker.ts')

/**
 * The same storm through the core API, with the writers already loaded and released at one shared
 * instant, so they really do find the stale lock together (CLI start-up jitter spreads them out).
 */
export async function checkSynchronizedStorm(options: {rounds: number; processes: number}): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  const workers = Array.from({length: options.processes}, () => spawn(process.execPath, ['--import', 'tsx', LOCK_WORKER], {cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc']}))
  let lost = 0
  let landed = 0
  try {
    await Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('message', resolve))))
    const file = keystorePath(tmp.dir)
    await fs.mkdir(path.dirname(file), {mode: 0o700})
    await updateKeystore(file, {createIfMissing: {format: 'native'}}, (keystore) => keystore.touch())
    for (let round = 0; round < options.rounds && result.failures.length === 0; round++) {
      const lock = `${file}.lock`
      // eslint-disable-next-line no-await-in-loop -- the dead holder's lock
      await fs.mkdir(lock, {recursive: true})
      const past = new Date(Date.now() - 60_000)
      // eslint-disable-next-line no-await-in-loop -- the dead holder's lock
      await fs.utimes(lock, past, past)
      const at = Date.now() + 150
      const names = workers.map((_, p) => `Y${round}_${p}`)
      // eslint-disable-next-line no-await-in-loop -- one round at a time
      const answers = await Promise.all(
        workers.map(
          (worker, p) =>
            new Promise<{ok?: boolean; error?: string}>((resolve) => {
              worker.once('message', resolve)
              worker.send({at, file, name: names[p]})
            }),
        ),
      )
      // eslint-disable-next-line no-await-in-loop -- check the round
      const state = await snapshot(file)
      if ('error' in state) {
        fail(result, `synchronized storm round ${round}: keystore does not open: ${errorText(state.error)}`)
        break
      }

      for (const [p, answer] of answers.entries()) {
        if (!answer.ok) {
          // ENOENT at the rename: another writer, holding the lock at the same time, removed this one's temp file as a leftover.
          const why = /ENOENT/.test(answer.error ?? '') ? ' (two writers held the lock at once: the other removed its temp file as a leftover)' : ''
          fail(result, `synchronized storm round ${round}: writer ${p} failed: ${answer.error}${why}`)
        }
        else if (state.entries.has(names[p])) landed++
        else {
          lost++
          fail(result, `synchronized storm round ${round}: ${names[p]} was written under the lock and reported success, but is not in the file: two writers held the lock at once`)
        }
      }
    }
  } finally {
    for (const worker of workers) worker.kill('SIGKILL')
    tmp.cleanup()
  }

  result.figures.push({
    check: 'concurrency',
    figure: `stale-lock storms through the core: ${options.rounds} rounds of ${options.processes} writers released at one instant onto a dead holder's lock`,
    value: `${landed} adds landed, ${lost} lost`,
  })
  return result
}

/** Syscall numbers on x86_64, as /proc/<tid>/syscall reports them. */
const SYS_RMDIR = 84
const SYS_OPENAT = 257
const SYS_GETDENTS64 = 217

/** Whether a thread of `pid` or of its children (strace's tracee) is stopped at the entry of syscall `nr`. */
async function stoppedIn(pid: number, nr: number): Promise<boolean> {
  const children = (await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).split(' ').filter(Boolean).map(Number)
  for (const child of children) {
    // eslint-disable-next-line no-await-in-loop -- strace has one child here
    if (await stoppedIn(child, nr)) return true
  }

  const tasks = await fs.readdir(`/proc/${pid}/task`).catch(() => [] as string[])
  for (const tid of tasks) {
    // eslint-disable-next-line no-await-in-loop -- a handful of threads
    const [stat, syscall] = await Promise.all([fs.readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => ''), fs.readFile(`/proc/${pid}/task/${tid}/syscall`, 'utf8').catch(() => '')])
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    if (state === 't' && syscall.startsWith(`${nr} `)) return true
  }

  return false
}

async function strace(): Promise<string | undefined> {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'needs Linux on x86_64 (syscall numbers)'
  const probe = await new Promise<{code: null | number; stderr: string}>((resolve) => {
    const child = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-P', '/', '-e', 'trace=rmdir', '-e', 'inject=rmdir:delay_enter=1:when=1', 'true'], {stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.on('error', () => resolve({code: 127, stderr: 'strace not found'}))
    child.on('close', (code) => resolve({code, stderr}))
  })
  return probe.code === 0 ? undefined : `strace cannot trace here: ${probe.stderr.trim().split('\n')[0]}`
}

/**
 * The stale-lock takeover race, forced instead of hoped for. A dead holder left a lock. Writer A finds
 * it stale and is held by strace right before it removes it: the moment a scheduler could pause any
 * process. Writer B starts; with the race, B takes the stale lock over, reads the file and is held right
 * before it writes. Then A is let go (its strace is SIGKILLed, which detaches it): it removes B's fresh
 * lock, takes the lock itself, writes and exits; then B is let go and writes. With a correct lock B waits
 * for A instead (or A for B) and both keys are in the file. A writer that reported success (its --json
 * result; the exit code is strace's) must never have its key lost.
 */
export async function checkStaleTakeoverRace(): Promise<CheckResult> {
  const result = newResult()
  const unavailable = await strace()
  if (unavailable) {
    result.skipped.push(`forced stale-lock takeover race: ${unavailable}`)
    return result
  }

  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    const created = await cli(['keystore', 'create'], {cwd})
    if (created.code !== 0) throw new Error(`create failed: ${created.stderr}`)
    const lock = `${file}.lock`
    await fs.mkdir(lock)
    const past = new Date(Date.now() - 60_000)
    await fs.utimes(lock, past, past)
    // -P limits tracing (and so the injected delays) to syscalls on those paths; when=1: the first call
    // of each thread. Delays are long: a writer goes on when its strace is killed, not when they end.
    const traced = (key: string, paths: string[], injects: string[]) =>
      startCli(['keystore', 'add', key, '--stdin', '--json'], {
        cwd,
        input: `value-${key}`,
        timeoutMs: 120_000,
        wrap: ['strace', '-f', '-qq', '-o', '/dev/null', ...paths.flatMap((p) => ['-P', p]), '-e', `trace=${injects.map((i) => i.split(':')[0]).join(',')}`, ...injects.flatMap((i) => ['-e', `inject=${i}`])],
      })
    const until = async (what: () => Promise<boolean>, ms: number) => {
      const deadline = Date.now() + ms
      while (Date.now() < deadline) {
        // eslint-disable-next-line no-await-in-loop -- polling the tracees
        if (await what().catch(() => false)) return true
        // eslint-disable-next-line no-await-in-loop -- polling the tracees
        await sleep(5)
      }

      return false
    }

    // A: held as it removes the stale lock.
    const a = traced('A', [lock], ['rmdir:delay_enter=60000000:when=1'])
    const aHeld = await until(() => stoppedIn(a.child.pid!, SYS_RMDIR), 60_000)
    // B: a short hold on its first open of the keystore (before it locks) tells that it has started;
    // a long one as it lists the directory for leftover temp files, i.e. after reading, before writing.
    const b = traced('B', [file, path.dirname(file)], ['openat:delay_enter=100000:when=1', 'getdents64:delay_enter=60000000:when=1'])
    await until(() => stoppedIn(b.child.pid!, SYS_OPENAT), 60_000)
    // From there B takes the lock (or fails to) within milliseconds; a second is plenty.
    const bHeld = await until(() => stoppedIn(b.child.pid!, SYS_GETDENTS64), 1000)
    a.child.kill('SIGKILL')
    // If B holds the lock, A finishes first (or fails). If B was waiting, it may now take the lock as A
    // lets it go and be held before writing while A waits: let B go as soon as either happens.
    let aDone = false
    const doneAPromise = a.done.then((done) => {
      aDone = true
      return done
    })
    if (!bHeld) await until(async () => aDone || stoppedIn(b.child.pid!, SYS_GETDENTS64), 60_000)
    else await doneAPromise
    b.child.kill('SIGKILL')
    const [doneA, doneB] = await Promise.all([doneAPromise, b.done])
    const state = await snapshot(file)
    if ('error' in state) {
      fail(result, `forced takeover race: keystore does not open: ${errorText(state.error)}`)
      return result
    }

    const reported = (done: CliResult, key: string) => {
      const parsed = safeParse(done.stdout) as {added?: string[]; error?: {code: string}} | undefined
      return parsed?.added?.includes(key) ? 'succeeded' : `failed (${parsed?.error?.code ?? done.stderr.trim().slice(0, 80)})`
    }

    const outcomes = {A: reported(doneA, 'A'), B: reported(doneB, 'B')}
    for (const key of ['A', 'B'] as const) {
      if (outcomes[key] === 'succeeded' && !state.entries.has(key)) {
        fail(result, `forced takeover race: "add ${key}" succeeded but ${key} is not in the file: both writers held the lock at once (A ${aHeld ? 'was' : 'was not'} caught removing the stale lock, B ${bHeld ? 'took it over and was caught before writing' : 'did not get past the lock'}; A ${outcomes.A}, B ${outcomes.B})`)
      }
    }

    result.figures.push({
      check: 'concurrency',
      figure: 'forced stale-lock takeover race (strace holds writer A as it removes the stale lock, B between its read and its write)',
      value: `B ${bHeld ? 'took the stale lock over while A was held' : 'waited for A'}; A ${outcomes.A}, B ${outcomes.B}; keys in the file: ${[...state.entries.keys()].sort().join(', ') || 'none'}${result.failures.length > 0 ? ' — A SUCCESSFUL WRITE WAS LOST' : ''}`,
    })
  } finally {
    tmp.cleanup()
  }

  return result
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
