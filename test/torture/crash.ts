/**
 * Crash safety: SIGKILL the CLI at random moments during add, remove, passwd, upgrade, sync and import.
 *
 * Each lane owns one keystore and knows its state. Every round starts one command and kills it: at a
 * uniformly random moment of its typical run time, or right after its lock directory appears, or right
 * after its temp file appears (inotify), so the narrow windows where the file is being replaced are
 * hit often, not by luck. After each kill the keystore must open and hold exactly the state before or
 * the state after the command; only a lock directory and a temp file may be left, and the next
 * successful command must take over the stale lock and leave nothing behind.
 *
 * A stale lock is taken over once its mtime is STALE_LOCK_MS (4 s) old. Waiting for that after every
 * kill would make 1,000 kills take an hour, so most rounds age the lock by setting its mtime 10 s back
 * (exactly what the passing of time does to a dead holder's lock); every `naturalEvery`-th round waits
 * for real and its recovery time is reported.
 */
import {ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {FSWatcher, promises as fs, watch} from 'node:fs'
import path from 'node:path'

import {readAuditTrail} from '../../src/core/audit-verify.js'
import {armorBundle, sealBundle} from '../../src/core/format/bundle.js'
import {openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {fingerprintOf} from '../../src/core/recipient.js'
import {
  CheckResult,
  cli,
  describeEntries,
  errorText,
  fail,
  keystorePath,
  leftovers,
  LOCK_DIR,
  ms,
  newResult,
  pick,
  pool,
  prng,
  sameEntries,
  Snapshot,
  snapshot,
  startCli,
  TEMP_FILE,
  tempDir,
} from './lib.js'

export interface CrashOptions {
  /** total kills to deliver */
  kills: number
  lanes: number
  /** every n-th lock left behind is left to go stale by itself (0 = never) */
  naturalEvery: number
  seed: number
}

const PASSWORDS = ['pw-crash-A', 'pw-crash-B']

type Strategy = 'lock' | 'temp' | 'uniform'
type Op = 'add' | 'import' | 'passwd' | 'remove' | 'replace' | 'sync' | 'upgrade'

interface Planned {
  op: Op
  args: string[]
  input?: string
  env: Record<string, string | undefined>
  after: Snapshot
  /** untimed, before the command: the directory to sync, the bundle to import */
  setup?: () => Promise<void>
}

interface Tally {
  kills: number
  completedFirst: number
  byOp: Record<Op, number>
  byStrategy: Record<Strategy, number>
  heldLock: number
  leftTemp: number
  before: number
  after: number
  recoveries: number
  naturalRecoveries: number
  maxNaturalRecoveryMs: number
  maxRecoveryMs: number
  /** audit trails verified after a kill, and the lines of killed commands they showed as not confirmed */
  trailChecks: number
  /** per keystore, the lines its trail shows as not confirmed, at its last check */
  unconfirmed: Map<string, number>
}

export async function checkCrash(options: CrashOptions): Promise<CheckResult> {
  const result = newResult()
  const tally: Tally = {
    after: 0,
    before: 0,
    byOp: {add: 0, import: 0, passwd: 0, remove: 0, replace: 0, sync: 0, upgrade: 0},
    byStrategy: {lock: 0, temp: 0, uniform: 0},
    completedFirst: 0,
    heldLock: 0,
    kills: 0,
    leftTemp: 0,
    maxNaturalRecoveryMs: 0,
    maxRecoveryMs: 0,
    naturalRecoveries: 0,
    recoveries: 0,
    trailChecks: 0,
    unconfirmed: new Map(),
  }
  const durations: Record<Op, number[]> = {add: [], import: [], passwd: [], remove: [], replace: [], sync: [], upgrade: []}
  const started = Date.now()
  await pool(
    Array.from({length: options.lanes}, (_, i) => i),
    options.lanes,
    (lane) => runLane(lane, options, result, tally, durations),
  )
  const seconds = (Date.now() - started) / 1000
  result.figures.push(
    {
      check: 'crash safety',
      figure: `SIGKILLs during add/replace/remove/passwd/upgrade/sync/import (${Object.entries(tally.byOp).map(([op, n]) => `${op} ${n}`).join(', ')})`,
      value: `${tally.kills} kills: ${tally.before} left the state before, ${tally.after} the state after, 0 anything else${result.failures.length > 0 ? ' (SEE FAILURES)' : ''} (${seconds.toFixed(0)} s)`,
    },
    {
      check: 'crash safety',
      figure: 'where the kills landed',
      value: `${tally.heldLock} while holding the lock, ${tally.leftTemp} mid-write (temp file left); strategies: uniform ${tally.byStrategy.uniform}, at lock ${tally.byStrategy.lock}, at temp file ${tally.byStrategy.temp}; ${tally.completedFirst} commands finished before their kill (not counted)`,
    },
    {
      check: 'crash safety',
      figure: 'stale locks and temp files recovered by the next command',
      value: `${tally.recoveries} recoveries, all left the directory clean; ${tally.naturalRecoveries} waited out for real (max ${ms(tally.maxNaturalRecoveryMs)}, lock stale after 4 s)`,
    },
    {
      check: 'crash safety',
      figure: 'the audit trail after every kill and every recovery (keystore audit --verify, through the core)',
      value: `${tally.trailChecks} verified: 0 reported as tampering${result.failures.length > 0 ? ' (SEE FAILURES)' : ''}; ${[...tally.unconfirmed.values()].reduce((a, b) => a + b, 0)} lines of killed commands shown as not confirmed`,
    },
  )
  return result
}

function median(values: number[], fallback: number): number {
  if (values.length === 0) return fallback
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function runLane(lane: number, options: CrashOptions, result: CheckResult, tally: Tally, durations: Record<Op, number[]>): Promise<void> {
  const random = prng(options.seed * 1000 + lane)
  const tmp = tempDir()
  const cwd = tmp.dir
  const file = keystorePath(cwd)
  const dataDir = path.dirname(file)
  let serial = 0
  try {
    const created = await cli(['keystore', 'create'], {cwd})
    if (created.code !== 0) {
      fail(result, `crash lane ${lane}: create failed: ${created.stderr.trim()}`)
      return
    }

    let state: Snapshot = {entries: new Map(), format: 'native'}
    const newValue = () => `val-${lane}-${serial}-${randomBytes(6).toString('base64')}`
    while (tally.kills < options.kills && result.failures.length === 0) {
      // eslint-disable-next-line no-await-in-loop -- rounds are sequential within a lane
      state = await prepare(file, state, random)
      const plan = planFleetOp(state, random, cwd, () => `K${lane}_${serial++}`, newValue) ?? planOp(state, random, () => `K${lane}_${serial++}`, newValue)
      // eslint-disable-next-line no-await-in-loop -- untimed set-up of this round
      await plan.setup?.()
      const strategy: Strategy = pick(random, ['uniform', 'lock', 'temp'] as const)
      const typical = median(durations[plan.op], 600)
      const round = `lane ${lane} op ${plan.op} (${plan.args.slice(1).join(' ')}) strategy ${strategy}`
      // eslint-disable-next-line no-await-in-loop -- one command at a time per keystore
      const outcome = await runAndKill(plan, cwd, dataDir, strategy, typical * random() * 1.1)
      if (!outcome.killed) {
        tally.completedFirst++
        durations[plan.op].push(outcome.ms)
        if (outcome.code !== 0) fail(result, `crash ${round}: exited ${outcome.code} without being killed: ${outcome.stderr.trim()}`)
      } else {
        tally.kills++
        tally.byOp[plan.op]++
        tally.byStrategy[strategy]++
      }

      // eslint-disable-next-line no-await-in-loop -- check before anything else touches the file
      const seen = await snapshot(file, PASSWORDS)
      if ('error' in seen) {
        fail(result, `crash ${round}: keystore does not open after the kill: ${errorText(seen.error)}`)
        return
      }

      const isBefore = sameState(seen, state)
      const isAfter = sameState(seen, plan.after)
      if (outcome.killed) {
        if (isAfter) tally.after++
        else if (isBefore) tally.before++
      }

      if (!isBefore && !isAfter) {
        fail(result, `crash ${round}: keystore holds ${show(seen)}, neither before ${show(state)} nor after ${show(plan.after)}`)
        return
      }

      if (!outcome.killed && !isAfter) fail(result, `crash ${round}: command succeeded but the keystore holds the state before it`)
      state = isAfter ? plan.after : state

      // A kill between a line and its keystore write is no tampering: the trail must verify.
      // eslint-disable-next-line no-await-in-loop -- check the trail as the kill left it
      if (!(await trailVerifies(file, seen.password, `crash ${round}`, result, tally))) return
      // eslint-disable-next-line no-await-in-loop -- inspect what the kill left
      const left = await leftovers(cwd)
      // A lock directory, a temp file, and (with a takeover protocol) its marker are what a kill may leave.
      const unexpected = left.filter((name) => name !== LOCK_DIR && name !== `${LOCK_DIR}.takeover` && !TEMP_FILE.test(name))
      if (unexpected.length > 0) fail(result, `crash ${round}: unexpected files left: ${unexpected.join(', ')}`)
      if (!outcome.killed && left.length > 0) fail(result, `crash ${round}: a successful command left ${left.join(', ')}`)
      if (left.length === 0) continue
      if (left.includes(LOCK_DIR)) tally.heldLock++
      if (left.some((name) => TEMP_FILE.test(name))) tally.leftTemp++

      // Recovery: the next command (never killed) must take over the stale lock, succeed, and clean up.
      tally.recoveries++
      const natural = left.includes(LOCK_DIR) && options.naturalEvery > 0 && tally.heldLock % options.naturalEvery === 1 % options.naturalEvery
      if (left.includes(LOCK_DIR) && !natural) {
        const past = new Date(Date.now() - 10_000)
        // eslint-disable-next-line no-await-in-loop -- age the dead holder's lock
        await fs.utimes(path.join(dataDir, LOCK_DIR), past, past).catch(() => {})
      }

      const name = `R${lane}_${serial++}`
      const value = newValue()
      const t0 = Date.now()
      // eslint-disable-next-line no-await-in-loop -- recovery is part of the round
      const recovery = await cli(['keystore', 'add', name, '--stdin'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: state.password}, input: value})
      const took = Date.now() - t0
      tally.maxRecoveryMs = Math.max(tally.maxRecoveryMs, took)
      if (natural) {
        tally.naturalRecoveries++
        tally.maxNaturalRecoveryMs = Math.max(tally.maxNaturalRecoveryMs, took)
      }

      if (recovery.code !== 0) {
        fail(result, `crash ${round}: the command after the kill (left ${left.join(', ')}) exited ${recovery.code}: ${recovery.stderr.trim()}`)
        return
      }

      state = {...state, entries: new Map(state.entries).set(name, Buffer.from(value).toString('base64'))}
      // eslint-disable-next-line no-await-in-loop -- must be clean now
      const after = await leftovers(cwd)
      if (after.length > 0) fail(result, `crash ${round}: after the recovery command still left: ${after.join(', ')}`)
      // eslint-disable-next-line no-await-in-loop -- and the trail intact
      if (!(await trailVerifies(file, state.password, `crash ${round}, after the recovery`, result, tally))) return
    }
  } finally {
    tmp.cleanup()
  }
}

/** The trail verifies against the keystore (no line reported changed, removed or cut); counts the lines not confirmed. */
async function trailVerifies(file: string, password: string | undefined, label: string, result: CheckResult, tally: Tally): Promise<boolean> {
  const report = await readAuditTrail(file, {password: async () => Buffer.from(password ?? '')}).catch((error: unknown) => ({error}))
  if ('error' in report) {
    fail(result, `${label}: the audit trail could not be read: ${errorText(report.error)}`)
    return false
  }

  tally.trailChecks++
  if (report.problem) {
    fail(result, `${label}: the audit trail is reported as tampered with: ${report.problem.message}`)
    return false
  }

  if (report.anchor) tally.unconfirmed.set(file, report.entries.filter((entry) => entry.record?.result === 'ok' && !entry.confirmed).length)
  return true
}

function show(state: Snapshot): string {
  return `${state.format}/${state.password ?? 'no password'}/${describeEntries(state.entries)}`
}

function sameState(a: Snapshot, b: Snapshot): boolean {
  return a.format === b.format && a.password === b.password && a.hostKey === b.hostKey && sameEntries(a.entries, b.entries)
}

/**
 * Keeps the keystore in a shape where every op has something to do: a few keys, and now and then a
 * Beats v1 file for upgrade to convert. Runs through the core API, under the lock.
 */
async function prepare(file: string, state: Snapshot, random: () => number): Promise<Snapshot> {
  // Now and then the host gets its key for sealed bundles; from then on every command must keep it.
  if (state.format === 'native' && !state.hostKey && random() < 0.1) {
    const hostKey = await updateKeystore(file, {password: async () => Buffer.from(state.password ?? '')}, (keystore) => {
      keystore.ensureHostKey()
      return fingerprintOf(keystore.hostKeyPair()!.publicKey)
    })
    return {...state, hostKey}
  }

  // A keystore holding a host key cannot be Beats v1.
  if (state.format === 'native' && !state.hostKey && random() < 0.1) {
    await updateKeystore(file, {password: async () => Buffer.from(state.password ?? '')}, (keystore) => {
      if (keystore.passwordProtected) keystore.setPassword(undefined)
      keystore.convertTo('beats-v1')
    })
    return {entries: state.entries, format: 'beats-v1'}
  }

  return state
}

/**
 * One round in five: `sync --prune` or plain `sync` of a directory holding the keys with one changed, one
 * new and (pruning) one gone; or, once the host has its key, `import --force` of a bundle with a new key
 * and a changed one. Undefined for the other rounds.
 */
function planFleetOp(state: Snapshot, random: () => number, cwd: string, nextName: () => string, newValue: () => string): Planned | undefined {
  if (random() >= 0.2) return undefined
  const env = {APM_SERVER_KEYSTORE_PASSWORD: state.password ?? PASSWORDS[0]}
  const names = [...state.entries.keys()]
  const changed = new Map<string, string>([[nextName(), newValue()]])
  if (names.length > 0) changed.set(names[Math.floor(random() * names.length)], newValue())
  const merged = new Map(state.entries)
  for (const [name, value] of changed) merged.set(name, Buffer.from(value).toString('base64'))
  if (state.hostKey && random() < 0.5) {
    const bundle = path.join(cwd, 'round.bundle')
    return {
      after: {...state, entries: merged},
      args: ['keystore', 'import', bundle, '--force'],
      env,
      op: 'import',
      async setup() {
        const keystore = await openKeystore(keystorePath(cwd), {password: async () => Buffer.from(state.password ?? '')})
        const entries = [...changed].map(([name, value]) => ({name, value: Buffer.from(value)}))
        await fs.writeFile(bundle, armorBundle(sealBundle(entries, [keystore.hostKeyPair()!.publicKey], {created: Date.now()})))
      },
    }
  }

  const prune = random() < 0.5
  const files = new Map(merged)
  const gone = prune ? names.find((name) => !changed.has(name)) : undefined
  if (gone !== undefined) files.delete(gone)
  const dir = path.join(cwd, 'sync-source')
  return {
    after: {...state, entries: files},
    args: ['keystore', 'sync', dir, ...(prune ? ['--prune'] : [])],
    env,
    op: 'sync',
    async setup() {
      await fs.rm(dir, {force: true, recursive: true})
      await fs.mkdir(dir)
      await Promise.all([...files].map(([name, value]) => fs.writeFile(path.join(dir, name), Buffer.from(value, 'base64'))))
    },
  }
}

function planOp(state: Snapshot, random: () => number, nextName: () => string, newValue: () => string): Planned {
  const env = {APM_SERVER_KEYSTORE_PASSWORD: state.password ?? PASSWORDS[0]}
  const names = [...state.entries.keys()]
  const withEntries = (entries: Map<string, string>): Snapshot => ({...state, entries})
  const roll = random()
  if (state.format === 'beats-v1' && roll < 0.5) return {after: {entries: state.entries, format: 'native'}, args: ['keystore', 'upgrade'], env, op: 'upgrade'}
  if (names.length < 2 || roll < 0.3) {
    const count = random() < 0.2 ? 3 : 1
    const added = Array.from({length: count}, nextName)
    const values = added.map(() => newValue())
    const entries = new Map(state.entries)
    added.forEach((name, i) => entries.set(name, Buffer.from(values[i]).toString('base64')))
    return {after: withEntries(entries), args: ['keystore', 'add', ...added, '--stdin'], env, input: `${values.join('\n')}\n`, op: 'add'}
  }

  if (roll < 0.45) {
    const name = names[Math.floor(random() * names.length)]
    const value = newValue()
    return {after: withEntries(new Map(state.entries).set(name, Buffer.from(value).toString('base64'))), args: ['keystore', 'add', name, '--stdin', '--force'], env, input: value, op: 'replace'}
  }

  if (roll < 0.6) {
    const name = names[Math.floor(random() * names.length)]
    const entries = new Map(state.entries)
    entries.delete(name)
    return {after: withEntries(entries), args: ['keystore', 'remove', name], env, op: 'remove'}
  }

  if (roll < 0.85 && state.format === 'native') {
    const next = pick(random, [undefined, ...PASSWORDS].filter((pw) => pw !== state.password))
    return next === undefined
      ? {after: {...state, password: undefined}, args: ['keystore', 'passwd', '--remove'], env, op: 'passwd'}
      : {after: {...state, password: next}, args: ['keystore', 'passwd', '--stdin'], env, input: `${next}\n`, op: 'passwd'}
  }

  // A native keystore is rewritten with a fresh salt and nonce; a Beats one converted.
  return {after: {...state, format: 'native'}, args: ['keystore', 'upgrade'], env, op: 'upgrade'}
}

interface Outcome {
  killed: boolean
  code: null | number
  stderr: string
  ms: number
}

/** Starts the command and SIGKILLs it per the strategy; reports whether the kill came first. */
async function runAndKill(plan: Planned, cwd: string, dataDir: string, strategy: Strategy, delayMs: number): Promise<Outcome> {
  let watcher: FSWatcher | undefined
  let timer: NodeJS.Timeout | undefined
  let killSent = false
  const t0 = Date.now()
  const running = startCli(plan.args, {cwd, env: plan.env, input: plan.input})
  const kill = (child: ChildProcess) => {
    if (killSent || child.exitCode !== null || child.signalCode !== null) return
    killSent = true
    child.kill('SIGKILL')
  }

  if (strategy === 'uniform') {
    timer = setTimeout(() => kill(running.child), delayMs)
  } else {
    watcher = watch(dataDir, (_event, name) => {
      if (!name) return
      if (strategy === 'lock' && name === LOCK_DIR) {
        watcher?.close()
        // The lock is held from here to the end of the write: a few ms at most on this path.
        timer = setTimeout(() => kill(running.child), Math.random() * 12)
      } else if (strategy === 'temp' && TEMP_FILE.test(name)) {
        watcher?.close()
        if (Math.random() < 0.5) kill(running.child)
        else setImmediate(() => kill(running.child))
      }
    })
  }

  const done = await running.done
  watcher?.close()
  if (timer) clearTimeout(timer)
  return {code: done.code, killed: done.signal === 'SIGKILL' && killSent, ms: Date.now() - t0, stderr: done.stderr}
}

/**
 * A keystore path that is a symbolic link (followed, as secret mounts need): the atomic write goes to
 * the link's target, so a kill mid-write leaves the temp file next to the target. The next successful
 * command must clean it there too.
 */
export async function checkSymlinkCrash(rounds: number): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  let leftBehind = 0
  let cleaned = 0
  try {
    const cwd = tmp.dir
    const targetDir = path.join(cwd, 'mounted')
    const created = await cli(['keystore', 'create', '--path.data', targetDir], {cwd})
    if (created.code !== 0) {
      fail(result, `symlinked keystore: create failed: ${created.stderr.trim()}`)
      return result
    }

    await fs.mkdir(path.join(cwd, 'data'), {mode: 0o700})
    await fs.symlink(path.join(targetDir, 'apm-server.keystore'), keystorePath(cwd))
    for (let round = 0; round < rounds; round++) {
      let child: ChildProcess | undefined
      const watcher = watch(targetDir, (_event, name) => {
        if (name && TEMP_FILE.test(name)) child?.kill('SIGKILL')
      })
      const running = startCli(['keystore', 'add', `K${round}`, '--stdin'], {cwd, input: `value-${round}`})
      child = running.child
      // eslint-disable-next-line no-await-in-loop -- one round at a time
      await running.done
      watcher.close()
      // eslint-disable-next-line no-await-in-loop -- what the kill left next to the target
      const temps = (await fs.readdir(targetDir)).filter((name) => TEMP_FILE.test(name))
      if (temps.length === 0) continue
      leftBehind++
      // eslint-disable-next-line no-await-in-loop -- age the dead holder's lock (see checkCrash)
      await fs.utimes(path.join(cwd, 'data', LOCK_DIR), new Date(0), new Date(0)).catch(() => {})
      // eslint-disable-next-line no-await-in-loop -- the next command
      const next = await cli(['keystore', 'add', `R${round}`, '--stdin'], {cwd, input: 'recovered'})
      if (next.code !== 0) fail(result, `symlinked keystore: the command after the kill exited ${next.code}: ${next.stderr.trim()}`)
      // eslint-disable-next-line no-await-in-loop -- must be clean now
      const still = (await fs.readdir(targetDir)).filter((name) => TEMP_FILE.test(name))
      if (still.length === 0) cleaned++
      // eslint-disable-next-line no-await-in-loop -- tidy so each round counts once
      for (const name of still) await fs.rm(path.join(targetDir, name), {force: true})
    }
  } finally {
    tmp.cleanup()
  }

  if (cleaned < leftBehind) fail(result, `symlinked keystore: ${leftBehind - cleaned} of ${leftBehind} temp files a kill left next to the link's target were still there after the next successful command`)
  result.figures.push({check: 'crash safety', figure: 'keystore path is a symlink: kills mid-write', value: `${leftBehind} temp files left next to the target, ${cleaned} cleaned by the next command`})
  return result
}
