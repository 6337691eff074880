/**
 * The attacks of issue 11's keystore items, each as it was made on 94ba340, against the built CLI:
 *
 * 3. another user who can write the data directory plants symbolic links at the temp names the writer
 *    would use (write-file-atomic's, predicted from the pid) and swaps any new temp file for one, while
 *    root rewrites the keystore; a 0777 data directory, and a planted keystore link, under strict perms;
 * 4. a writer SIGSTOPped while holding the lock, whose lock another writer takes over;
 * 6. a keystore without a password while APM_SERVER_KEYSTORE_PASSWORD is set; a weak KDF cost from the
 *    environment;
 * 10. a gigabyte on `add --stdin`, and values that fit alone but not together;
 * 11. the password file pointed at a FIFO, /dev/zero, /dev/urandom, a directory, a big file (also during
 *     a server's SIGHUP reload, which then held its shutdown).
 *
 * and the break-local review's attacks on the hardening that fixed them (497f6e7; see the section at the
 * end): a stale-lock tree walked into root's files, a planted ./apm-server.yml, two names for one
 * keystore, link chains and shared ancestors, and a config of many settings.
 *
 * Only the CLI and the core API 94ba340 already had are used, so the same checks run against it.
 */
import {ChildProcess, execFile, spawn} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {closeSync, promises as fs, openSync, readSync, watch} from 'node:fs'
import path from 'node:path'
import {promisify} from 'node:util'

import {openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {withKeystoreLock} from '../../src/core/keystore-file.js'
import {FileOutput} from '../../src/server/outputs/file.js'
import type {CliResult} from '../helpers/cli.js'
import {
  AUDIT_NAME,
  CheckResult,
  cli,
  cliMeasured,
  fail,
  KEYSTORE_NAME,
  keystorePath,
  leftovers,
  LOCK_DIR,
  memoryOf,
  ms,
  newResult,
  oneErrorLine,
  ROOT,
  sleep,
  snapshot,
  startCli,
  TEMP_FILE,
  tempDir,
} from './lib.js'

const run = promisify(execFile)

export interface ReviewCoreOptions {
  /** false: the fast versions `npm test` runs */
  full: boolean
}

/** Every check of this module, one after another. */
export async function checkReviewCore(options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const checks = [
    checkPlantedLinks,
    checkOpenDirectories,
    checkOutputLinks,
    checkConfigFifo,
    checkLostLock,
    checkStdinCap,
    checkValuesTogether,
    checkPasswordFile,
    checkPasswordFileReload,
    checkUnusedPassword,
    checkWeakKdf,
    checkStaleLockTree,
    checkPlantedConfig,
    checkLockAlias,
    checkLinkChainAndAncestors,
    checkManySettings,
  ]
  for (const check of checks) {
    // eslint-disable-next-line no-await-in-loop -- checks share the machine's two cores
    const part = await check(options)
    result.figures.push(...part.figures)
    result.failures.push(...part.failures)
    result.skipped.push(...part.skipped)
  }

  return result
}

/** Resident memory a CLI refusing bad input may reach: it alone is ~60 MiB, a 64 MiB value twice that. */
const MEMORY_BOUND_MIB = 300

/** A user for the attacker's side when running as root (removed by `cleanup`); else our own uid. */
async function attackerUser(): Promise<{uid: number; name: string; cleanup: () => Promise<void>}> {
  const own = {cleanup: async () => {}, name: 'the current user', uid: process.getuid?.() ?? 0}
  if (process.getuid?.() !== 0) return own
  const name = `apmr${randomBytes(3).toString('hex')}`
  try {
    await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name])
  } catch {
    return own
  }

  const uid = Number((await run('id', ['-u', name])).stdout.trim())
  return {cleanup: () => run('userdel', [name]).then(() => {}, () => {}), name, uid}
}

/** The temp name write-file-atomic 7 (bundled into dist/cli.cjs) gave its `invocation`-th write in process `pid`. */
function oldTempName(realFile: string, pid: number, invocation: number): string {
  const hash = createHash('sha1').update(path.join(ROOT, 'dist', 'cli.cjs')).update(String(pid)).update('0').update(String(invocation)).digest()
  return `${realFile}.${hash.readUInt32BE(0)}`
}

/**
 * The attacker, as its own process (and user, when we are root), started before the writer so that it
 * is ready when the writer's pid, and so write-file-atomic's names, are known: it then keeps a link to
 * `loot` at each name it is sent (the old writer removed leftovers just before writing), and swaps every
 * new temp file of the current naming for such a link as soon as inotify shows it.
 */
async function startAttacker(dir: string, loot: string, uid: number): Promise<{child: ChildProcess; target: (names: string[]) => void}> {
  const script = `
    const fs = require('node:fs'); const path = require('node:path')
    const [dir, loot] = [${JSON.stringify(dir)}, ${JSON.stringify(loot)}]
    let names = []
    const plant = (name) => { try { fs.symlinkSync(loot, name) } catch {} }
    fs.watch(dir, (event, name) => {
      if (!name || !/\\.tmp-[0-9a-f]{32}$/.test(name)) return
      try { fs.unlinkSync(path.join(dir, name)) } catch {}
      plant(path.join(dir, name))
    })
    process.on('message', (sent) => { names = sent })
    const tick = () => { for (const name of names) plant(name); setImmediate(tick) }
    tick()
    process.send('ready')`
  const asUser = process.getuid?.() === 0 ? {gid: uid, uid} : {}
  const child = spawn(process.execPath, ['-e', script], {stdio: ['ignore', 'ignore', 'ignore', 'ipc'], ...asUser})
  await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`the attacker process exited ${code}`)))
  })
  return {child, target: (names) => child.send(names)}
}

/** Issue 11 item 3: links planted where the writer writes, by another user, with strict perms off. */
export async function checkPlantedLinks(options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const attacker = await attackerUser()
  const rounds = options.full ? 10 : 2
  let written = 0
  let refused = 0
  try {
    for (let round = 0; round < rounds; round++) {
      // eslint-disable-next-line no-await-in-loop -- one round at a time
      const outcome = await plantedLinksRound(attacker.uid, round, result)
      if (outcome === 'written') written++
      if (outcome === 'refused') refused++
    }
  } finally {
    await attacker.cleanup()
  }

  result.figures.push({
    check: 'review-core',
    figure: `${rounds} rewrites by root (--strict.perms=false, 0777 data dir) while ${attacker.name} plants links at the old predicted temp names and swaps new temp files for links`,
    value: `${written} written, ${refused} refused (temp file replaced); the attacker's file ${result.failures.length === 0 ? 'never written, chowned or chmodded' : 'WAS WRITTEN OR CHANGED'}`,
  })
  return result
}

async function plantedLinksRound(uid: number, round: number, result: CheckResult): Promise<'failed' | 'refused' | 'written'> {
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    await fs.chmod(cwd, 0o755)
    const data = path.join(cwd, 'data')
    await fs.mkdir(data)
    await fs.chmod(data, 0o777)
    const file = keystorePath(cwd)
    const lax = ['--strict.perms=false']
    await cli(['keystore', 'create', ...lax], {cwd})
    await cli(['keystore', 'add', 'A', '--stdin', ...lax], {cwd, input: 'value-A'})
    const loot = path.join(cwd, 'loot')
    await fs.writeFile(loot, '')
    await fs.chmod(loot, 0o666)
    if (process.getuid?.() === 0) await fs.chown(loot, uid, uid)
    const lootBefore = await fs.stat(loot)
    // The attacker's descriptor, opened before: what root writes through a link can be read through it.
    const fd = openSync(loot, 'r')
    const attacker = await startAttacker(data, loot, uid)
    const writer = startCli(['keystore', 'add', 'B', '--stdin', '--force', ...lax], {cwd, input: `value-B-${round}`})
    attacker.target([1, 2, 3].map((invocation) => oldTempName(file, writer.child.pid!, invocation)))
    const done = await writer.done
    // Reaped before the next round: userdel refuses a user that still has a process, even a zombie.
    const gone = new Promise((resolve) => attacker.child.once('exit', resolve))
    attacker.child.kill('SIGKILL')
    await gone
    const stolen = Buffer.alloc(65_536)
    const stolenBytes = readSync(fd, stolen, 0, stolen.length, 0)
    closeSync(fd)
    const lootAfter = await fs.stat(loot)
    const link = (await fs.lstat(file)).isSymbolicLink()
    const where = `planted links, round ${round}`
    if (stolenBytes > 0) fail(result, `${where}: the writer wrote ${stolenBytes} bytes of the keystore into the attacker's file through a planted link`)
    if (lootAfter.uid !== lootBefore.uid || lootAfter.mode !== lootBefore.mode) {
      fail(result, `${where}: the attacker's file was changed by path: owner ${lootBefore.uid} -> ${lootAfter.uid}, mode ${lootBefore.mode.toString(8)} -> ${lootAfter.mode.toString(8)}`)
    }

    if (link) fail(result, `${where}: the keystore was replaced by the attacker's link (exit ${done.code}: ${done.stderr.trim()})`)
    if (link || stolenBytes > 0) return 'failed'
    const keys = await openKeystore(file, {strictPerms: false}).then(
      (keystore) => keystore.keys().join(','),
      (error: Error) => `unreadable (${error.message})`,
    )
    if (done.code === 0 && keys === 'A,B') return 'written'
    if (done.code === 1 && oneErrorLine(done.stderr) && /temp file was removed or replaced/.test(done.stderr) && keys === 'A') return 'refused'
    fail(result, `${where}: add exited ${done.code} (${done.stderr.trim()}) and the keystore holds ${keys}`)
    return 'failed'
  } finally {
    tmp.cleanup()
  }
}

/**
 * Issue 11 item 3, under strict perms (the default): a data directory others can write is refused, by
 * readers and writers, before anything is written; and a keystore link another user planted there, to
 * a file of root's, is not followed by `create --force` (it replaced that file before).
 */
export async function checkOpenDirectories(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    await cli(['keystore', 'create'], {cwd})
    await cli(['keystore', 'add', 'A', '--stdin'], {cwd, input: 'value-A'})
    const before = await fs.readFile(file)
    const data = path.dirname(file)
    await fs.chmod(data, 0o777)
    const runs = await Promise.all([cli(['keystore', 'list'], {cwd}), cli(['keystore', 'add', 'B', '--stdin'], {cwd, input: 'b'}), cli(['keystore', 'create', '--force'], {cwd})])
    const expected = `error: directory ${data} of keystore ${file} has mode 0777, writable by group or others, who could replace the keystore; run "chmod go-w ${data}" (--strict.perms=false disables this check)\n`
    for (const [i, done] of runs.entries()) {
      const command = ['list', 'add', 'create --force'][i]
      if (done.code !== 1 || done.stderr !== expected) fail(result, `0777 data dir: ${command} exited ${done.code}: ${done.stderr.trim() || '(no error)'}`)
    }

    if (!(await fs.readFile(file)).equals(before)) fail(result, '0777 data dir: the keystore was rewritten')
    // Another user's link at the keystore's name, to a file only root may write (an SSH key, say).
    const secrets = path.join(cwd, 'secrets')
    await fs.mkdir(secrets, {mode: 0o700})
    const victim = path.join(secrets, 'id_ed25519')
    await fs.writeFile(victim, 'root-only', {mode: 0o600})
    await fs.rm(file)
    await fs.symlink(victim, file)
    const planted = await cli(['keystore', 'create', '--force'], {cwd})
    if (planted.code !== 1 || !oneErrorLine(planted.stderr)) fail(result, `planted keystore link: create --force exited ${planted.code}: ${planted.stderr.trim()}`)
    if ((await fs.readFile(victim, 'utf8')) !== 'root-only') fail(result, 'planted keystore link: create --force replaced the file it points to')
    result.figures.push({
      check: 'review-core',
      figure: 'strict perms: 0777 data dir (list, add, create --force); a keystore link planted there to a 0600 file of root\'s (create --force)',
      value: result.failures.length === 0 ? 'all refused with the chmod fix; nothing written, the linked file intact' : 'SEE FAILURES',
    })
  } finally {
    tmp.cleanup()
  }

  return result
}

/**
 * Issue 11 item 3, the same class in the server's output: a link another user planted at the output
 * file's name, or at the rotation's `.apm-server.next`, made the server append agents' events to the
 * file of their choice. Through the output module itself.
 */
export async function checkOutputLinks(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const dir = path.join(tmp.dir, 'out')
    await fs.mkdir(dir)
    const victim = path.join(tmp.dir, 'victim')
    await fs.writeFile(victim, 'theirs\n')
    const options = {filename: 'apm-server', numberOfFiles: 3, path: dir, rotateEveryKb: 1}
    await fs.symlink(victim, path.join(dir, 'apm-server'))
    const planted = await FileOutput.open(options).then(
      async (output) => {
        output.write('{"event":1}')
        await output.close()
        return 'opened'
      },
      (error: Error) => error.message,
    )
    if (!/is a symbolic link, which the output never follows/.test(planted)) fail(result, `output: a link at the output file's name was ${planted === 'opened' ? 'followed' : `refused unclearly: ${planted}`}`)
    await fs.rm(path.join(dir, 'apm-server'))
    const output = await FileOutput.open(options)
    await fs.symlink(victim, path.join(dir, '.apm-server.next'))
    // 1 KiB files: 40 lines of 100 bytes rotate a few times.
    for (let i = 0; i < 40; i++) output.write(`{"event":${i},"pad":"${'x'.repeat(80)}"}`)
    await output.flush().catch(() => {})
    await output.close()
    if ((await fs.readFile(victim, 'utf8')) !== 'theirs\n') fail(result, 'output: events were appended to the target of a link planted at .apm-server.next')
    const current = await fs.lstat(path.join(dir, 'apm-server'))
    if (!current.isFile()) fail(result, 'output: the current output file is a link after rotating')
    result.figures.push({
      check: 'review-core',
      figure: 'server output: a link planted at the output file, and at .apm-server.next before rotations',
      value: result.failures.length === 0 ? 'refused, and not followed: the linked file untouched' : 'SEE FAILURES',
    })
  } finally {
    tmp.cleanup()
  }

  return result
}

/** Every keystore command reads ./apm-server.yml: a FIFO planted there hung them all. */
export async function checkConfigFifo(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    await run('mkfifo', [path.join(cwd, 'apm-server.yml')])
    const done = await cli(['keystore', 'list'], {cwd, timeoutMs: 20_000})
    const good = done.code === 1 && oneErrorLine(done.stderr) && /is a FIFO, not a regular file/.test(done.stderr)
    if (!good) fail(result, `a FIFO at ./apm-server.yml: keystore list exited ${done.code ?? done.signal}: ${done.stderr.trim()}`)
    result.figures.push({check: 'review-core', figure: 'a FIFO at ./apm-server.yml (keystore list)', value: good ? 'one error at once' : 'SEE FAILURES'})
  } finally {
    tmp.cleanup()
  }

  return result
}

/** Whether process `pid` is stopped (state T in /proc). */
async function isStopped(pid: number): Promise<boolean> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'T'
}

/** 256 MiB, 4 passes: about a second per key derivation here, so a writer is still busy when stopped. */
const SLOW_KDF = 'm=262144,t=4,p=1'

/**
 * Issue 11 item 4: P1 (`add K1` on a password keystore) is SIGSTOPped while it holds the lock, in its
 * key derivation; P2 takes the stale lock over after 4 s and adds K2; P1 resumes. P1 must exit 1 without
 * writing, and the file hold K0 and K2 (before: P1 wrote K0 K1 and K2, reported added, was lost).
 */
export async function checkLostLock(options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  // Where P1 is stopped: ms after the lock appears (reading, first KDF, second KDF), or as its temp file appears.
  const moments: Array<number | 'temp'> = options.full ? [0, 250, 600, 1000, 1400, 'temp', 'temp'] : [20]
  const outcomes: string[] = []
  for (const moment of moments) {
    // eslint-disable-next-line no-await-in-loop -- one stopped writer at a time
    outcomes.push(await lostLockRound(moment, result))
  }

  const shown = moments.map((moment) => (moment === 'temp' ? 'as its temp file appeared' : `${moment} ms after the lock`)).join(', ')
  result.figures.push({check: 'review-core', figure: `writer SIGSTOPped holding the lock (${shown}), lock taken over by another`, value: outcomes.join('; ')})
  return result
}

async function lostLockRound(moment: number | 'temp', result: CheckResult): Promise<string> {
  const tmp = tempDir()
  const where = `lost lock (stopped ${moment === 'temp' ? 'as its temp file appeared' : `${moment} ms after the lock`})`
  try {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    const password = 'pw-lost-lock'
    const env = {APM_SERVER_KEYSTORE_KDF_PARAMS: SLOW_KDF, APM_SERVER_KEYSTORE_PASSWORD: password}
    await cli(['keystore', 'create', '--password'], {cwd, env})
    await cli(['keystore', 'add', 'K0', '--stdin'], {cwd, env, input: 'v0'})
    const lock = path.join(cwd, 'data', LOCK_DIR)
    // The crash check's way to hit a narrow window: inotify on the data dir, and the stop at once.
    const watcher = watch(path.dirname(file), (_event, name) => {
      if (moment === 'temp' && name && TEMP_FILE.test(name)) p1.child.kill('SIGSTOP')
    })
    const p1 = startCli(['keystore', 'add', 'K1', '--stdin'], {cwd, env, input: 'v1', timeoutMs: 120_000})
    const deadline = Date.now() + 30_000
    const stopped = async () => (moment === 'temp' ? isStopped(p1.child.pid!) : Boolean(await fs.stat(lock).catch(() => undefined)))
    // eslint-disable-next-line no-await-in-loop -- polling for the lock directory, or the stop
    while (!(await stopped()) && p1.child.exitCode === null && Date.now() < deadline) await sleep(2)
    watcher.close()
    if (moment !== 'temp') {
      await sleep(moment)
      p1.child.kill('SIGSTOP')
    }
    const before = await snapshot(file, [password])
    const heldWhenStopped = (await isStopped(p1.child.pid!)) && Boolean(await fs.stat(lock).catch(() => undefined))
    const untouched = !('error' in before) && [...before.entries.keys()].join(',') === 'K0'
    if (!heldWhenStopped || !untouched) {
      p1.child.kill('SIGCONT')
      await p1.done
      // Not the defect: the stop landed outside the window this round meant to hit.
      result.skipped.push(`${where}: P1 was not stopped inside its critical section (${heldWhenStopped ? 'it had already written' : 'no lock held'})`)
      return 'stop missed'
    }

    const t0 = Date.now()
    const p2 = await cli(['keystore', 'add', 'K2', '--stdin'], {cwd, env, input: 'v2', timeoutMs: 60_000})
    const p2Ms = Date.now() - t0
    p1.child.kill('SIGCONT')
    const p1Done = await p1.done
    const state = await snapshot(file, [password])
    const keys = 'error' in state ? `unreadable (${String(state.error)})` : [...state.entries.keys()].sort().join(',')
    const lostMessage = `error: lost the lock on ${file}: this process stalled for over 4s and another one took the lock over; nothing was written, check the keystore ("apm-server keystore list") and retry\n`
    if (p2.code !== 0) fail(result, `${where}: P2 (add K2) exited ${p2.code}: ${p2.stderr.trim()}`)
    if (p1Done.code !== 1 || p1Done.stderr !== lostMessage) fail(result, `${where}: P1 exited ${p1Done.code}: ${p1Done.stderr.trim() || '(nothing on stderr)'}`)
    if (keys !== 'K0,K2') fail(result, `${where}: the keystore holds ${keys}, expected K0,K2 (P2's K2 was reported added)`)
    const left = await leftovers(cwd)
    if (left.length > 0) fail(result, `${where}: left in the data dir: ${left.join(', ')}`)
    return `P2 took over after ${ms(p2Ms)}, P1 exit ${p1Done.code}, file ${keys}`
  } finally {
    tmp.cleanup()
  }
}

/** Resolves when `stream` drains or closes (the reader went away), leaving no listener behind. */
function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done)
      stream.off('close', done)
      resolve()
    }

    stream.on('drain', done)
    stream.on('close', done)
  })
}

/** Starts the CLI and writes `totalBytes` of zeros to its stdin as fast as it reads; samples its peak memory. */
async function cliFedZeros(args: string[], cwd: string, totalBytes: number): Promise<CliResult & {peakMiB: number; ms: number; fed: number}> {
  const t0 = Date.now()
  const running = startCli(args, {cwd, input: 'keep-open', timeoutMs: 120_000})
  let peakMiB = 0
  const sampler = setInterval(() => {
    const memory = memoryOf(running.child.pid!)
    if (memory) peakMiB = Math.max(peakMiB, memory.peakMiB)
  }, 20)
  const chunk = Buffer.alloc(1024 * 1024)
  let fed = 0
  let open = true
  running.child.stdin.on('error', () => {
    open = false
  })
  running.child.on('close', () => {
    open = false
  })
  while (open && fed < totalBytes) {
    fed += chunk.length
    // eslint-disable-next-line no-await-in-loop -- back-pressure: wait until the child has read it
    if (!running.child.stdin.write(chunk)) await drained(running.child.stdin)
  }

  running.child.stdin.end()
  try {
    return {...(await running.done), fed, ms: Date.now() - t0, peakMiB}
  } finally {
    clearInterval(sampler)
  }
}

/** Issue 11 item 10: `head -c 1000000000 /dev/zero | apm-server keystore add BIG --stdin`. */
export async function checkStdinCap(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    await cli(['keystore', 'create'], {cwd})
    await cli(['keystore', 'add', 'A', '--stdin'], {cwd, input: 'value-A'})
    const before = await fs.readFile(file)
    const big = await cliFedZeros(['keystore', 'add', 'BIG', '--stdin'], cwd, 1_000_000_000)
    const message = 'error: stdin holds more than 67108864 bytes (64 MiB), the most a value may be; store a smaller value\n'
    if (big.code !== 2 || big.stderr !== message) fail(result, `1 GB on add --stdin: exit ${big.code ?? big.signal}, stderr ${JSON.stringify(big.stderr.slice(0, 300))}`)
    if (big.peakMiB >= MEMORY_BOUND_MIB) fail(result, `1 GB on add --stdin: peak resident memory ${big.peakMiB} MiB`)
    if (!(await fs.readFile(file)).equals(before)) fail(result, '1 GB on add --stdin: the keystore changed')
    // --file is read with the same cap: a sparse file of 64 MiB + 1 is refused without being read.
    const sparse = path.join(cwd, 'big.bin')
    await fs.writeFile(sparse, '')
    await fs.truncate(sparse, 64 * 1024 * 1024 + 1)
    const overFile = await cli(['keystore', 'add', 'BIG', '--file', sparse], {cwd})
    if (overFile.code !== 2 || !oneErrorLine(overFile.stderr)) fail(result, `64 MiB + 1 on add --file: exit ${overFile.code}: ${overFile.stderr.trim()}`)
    result.figures.push({
      check: 'review-core',
      figure: '1,000,000,000 zero bytes piped to add --stdin',
      value: `exit ${big.code}, ${(big.fed / 2 ** 20).toFixed(0)} MiB taken before it stopped reading, ${big.peakMiB} MiB peak RSS, ${ms(big.ms)}; keystore untouched`,
    })
  } finally {
    tmp.cleanup()
  }

  return result
}

/**
 * Issue 11 item 10: values that each fit but together make a keystore over the 256 MiB the readers
 * accept are refused before the write. Fast: five 60 MiB values in one update through the core API;
 * full: three `add --file` of 64 MiB each to a Beats v1 keystore through the CLI.
 */
export async function checkValuesTogether(options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    await cli(['keystore', 'create', ...(options.full ? ['--format', 'beats-v1'] : [])], {cwd})
    await cli(['keystore', 'add', 'A', '--stdin'], {cwd, input: 'value-A'})
    let refusal: string
    if (options.full) {
      const value = path.join(cwd, 'value.bin')
      await fs.writeFile(value, randomBytes(64 * 1024 * 1024))
      const adds: CliResult[] = []
      // eslint-disable-next-line no-await-in-loop -- each add builds on the last
      for (const name of ['V1', 'V2', 'V3']) adds.push(await cli(['keystore', 'add', name, '--file', value], {cwd, timeoutMs: 300_000}))
      if (adds[0].code !== 0 || adds[1].code !== 0) fail(result, `values together: the first two 64 MiB adds failed: ${adds.map((a) => a.stderr.trim()).join(' | ')}`)
      refusal = adds[2].code === 1 ? adds[2].stderr : `exit ${adds[2].code}: ${adds[2].stderr}`
    } else {
      const before = await fs.readFile(file)
      refusal = await updateKeystore(file, {}, (keystore) => {
        // Zero-filled: untouched pages until set() copies them, so the test costs 300 MiB, not 600.
        for (let i = 0; i < 5; i++) keystore.set(`V${i}`, Buffer.alloc(60 * 1024 * 1024))
      }).then(
        () => 'accepted',
        (error: Error) => `error: ${error.message}\n`,
      )
      if (!(await fs.readFile(file)).equals(before)) fail(result, 'values together: the keystore changed')
    }

    if (!new RegExp(`^error: keystore ${file} would be \\d+ bytes, over the 268435456-byte limit, and could then not be read again; nothing was written`).test(refusal)) {
      fail(result, `values together: not refused before the write: ${refusal.trim().slice(0, 300)}`)
    }

    const state = await snapshot(file)
    const readable = !('error' in state)
    if (!readable) fail(result, `values together: the keystore does not open afterwards: ${String(state.error)}`)
    result.figures.push({
      check: 'review-core',
      figure: options.full ? 'three 64 MiB values added one by one to a Beats v1 keystore' : 'five 60 MiB values in one update',
      value: `${/nothing was written/.test(refusal) ? 'refused before the write' : 'NOT REFUSED'}; keystore ${readable ? 'still opens' : 'BROKEN'}`,
    })
  } finally {
    tmp.cleanup()
  }

  return result
}

/** Issue 11 item 11: the password file is a FIFO, a device, a directory or big: one error at once, bounded memory. */
export async function checkPasswordFile(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  const seen: string[] = []
  try {
    const cwd = tmp.dir
    await cli(['keystore', 'create', '--password'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD: 'pw'}})
    const fifo = path.join(cwd, 'fifo')
    await run('mkfifo', [fifo])
    const dir = path.join(cwd, 'dir')
    await fs.mkdir(dir)
    const big = path.join(cwd, 'big')
    await fs.writeFile(big, Buffer.alloc(1024 * 1024, 0x61))
    const table: Array<[string, string, RegExp]> = [
      ['FIFO', fifo, /is a FIFO, not a regular file/],
      ['/dev/zero', '/dev/zero', /is a character device, not a regular file/],
      ['/dev/urandom', '/dev/urandom', /is a character device, not a regular file/],
      ['directory', dir, /is a directory, not a regular file/],
      ['1 MiB file', big, /is over 4096 bytes/],
    ]
    for (const [name, file, expected] of table) {
      // The cap only turns a hang into a failure; a correct CLI answers at once.
      // eslint-disable-next-line no-await-in-loop -- one at a time, each measured
      const done = await cliMeasured(['keystore', 'list'], {cwd, env: {APM_SERVER_KEYSTORE_PASSWORD_FILE: file}, timeoutMs: 20_000})
      const good = done.code === 1 && oneErrorLine(done.stderr) && expected.test(done.stderr) && done.stderr.includes(file)
      if (!good) fail(result, `password file ${name}: exit ${done.code ?? done.signal} after ${ms(done.ms)}: ${done.stderr.trim().slice(0, 200)}`)
      if (done.peakMiB >= MEMORY_BOUND_MIB) fail(result, `password file ${name}: peak resident memory ${done.peakMiB} MiB`)
      seen.push(`${name} ${ms(done.ms)}/${done.peakMiB} MiB`)
    }
  } finally {
    tmp.cleanup()
  }

  result.figures.push({check: 'review-core', figure: 'APM_SERVER_KEYSTORE_PASSWORD_FILE at a FIFO, devices, a directory, 1 MiB (keystore list: time / peak RSS)', value: seen.join(', ')})
  return result
}

/** Starts `apm-server run` in `cwd` and resolves once it listens; the stderr seen so far is in `logs()`. */
async function startServer(cwd: string, env: Record<string, string>): Promise<{child: ChildProcess; logs: () => string; done: Promise<CliResult>}> {
  const running = startCli(['run', '-E', 'apm-server.host=127.0.0.1:0', '-E', 'apm-server.auth.secret_token=${APM_TOKEN}'], {cwd, env, input: 'keep-open', timeoutMs: 120_000})
  let stderr = ''
  running.child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const deadline = Date.now() + 60_000
  // eslint-disable-next-line no-await-in-loop -- polling the log
  while (!stderr.includes('"listening"') && running.child.exitCode === null && Date.now() < deadline) await sleep(20)
  if (!stderr.includes('"listening"')) {
    running.child.kill('SIGKILL')
    throw new Error(`the server did not start: ${stderr.slice(-400)}`)
  }

  return {child: running.child, done: running.done, logs: () => stderr}
}

/**
 * Issue 11 item 11, as reported: a server reloading (SIGHUP) with its password file turned into a FIFO
 * kept serving after SIGTERM until something wrote to the FIFO. Now the reload fails at once, and
 * SIGTERM stops the server.
 */
export async function checkPasswordFileReload(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    const passwordFile = path.join(cwd, 'ks.pass')
    await fs.writeFile(passwordFile, 'pw-reload\n', {mode: 0o600})
    const env = {APM_SERVER_KEYSTORE_PASSWORD_FILE: passwordFile}
    await cli(['keystore', 'create', '--password'], {cwd, env})
    await cli(['keystore', 'add', 'APM_TOKEN', '--stdin'], {cwd, env, input: `token-${randomBytes(8).toString('hex')}`})
    const server = await startServer(cwd, env)
    await fs.rm(passwordFile)
    await run('mkfifo', [passwordFile])
    server.child.kill('SIGHUP')
    const reloadDeadline = Date.now() + 10_000
    // eslint-disable-next-line no-await-in-loop -- polling the log
    while (!/reload failed/.test(server.logs()) && Date.now() < reloadDeadline) await sleep(20)
    const t0 = Date.now()
    server.child.kill('SIGTERM')
    const timer = setTimeout(() => server.child.kill('SIGKILL'), 20_000)
    const done = await server.done
    clearTimeout(timer)
    const stopMs = Date.now() - t0
    const reloadFailed = /reload failed/.test(server.logs()) && /is a FIFO, not a regular file/.test(server.logs())
    if (!reloadFailed) fail(result, `password file turned FIFO at SIGHUP: no "reload failed" line naming the FIFO in the log: ${server.logs().slice(-300)}`)
    if (done.code !== 0) fail(result, `password file turned FIFO at SIGHUP: SIGTERM did not stop the server (exit ${done.code ?? done.signal} after ${ms(stopMs)})`)
    result.figures.push({check: 'review-core', figure: 'server reloading with its password file turned into a FIFO, then SIGTERM', value: `reload ${reloadFailed ? 'failed at once' : 'DID NOT FAIL'}, stopped in ${ms(stopMs)} (exit ${done.code ?? done.signal})`})
  } finally {
    tmp.cleanup()
  }

  return result
}

/**
 * Issue 11 item 6: with APM_SERVER_KEYSTORE_PASSWORD set, a keystore without a password (swapped in by
 * whoever could write it) is refused by run and test config, and the keystore commands warn once.
 */
export async function checkUnusedPassword(options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  for (const format of options.full ? ['native', 'beats-v1'] : ['native']) {
    const tmp = tempDir()
    try {
      const cwd = tmp.dir
      const file = keystorePath(cwd)
      // eslint-disable-next-line no-await-in-loop -- one format at a time
      await cli(['keystore', 'create', '--format', format], {cwd})
      // eslint-disable-next-line no-await-in-loop -- one format at a time
      await cli(['keystore', 'add', 'APM_TOKEN', '--stdin'], {cwd, input: 'attacker-chosen-token'})
      const env = {APM_SERVER_KEYSTORE_PASSWORD: 'the-real-password'}
      const problem = `keystore ${file} has no password, yet APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE is set, so it may have been replaced; protect it with "apm-server keystore passwd", or unset the password variables if it is meant to have none`
      const args = ['-E', 'apm-server.host=127.0.0.1:0', '-E', 'apm-server.auth.secret_token=${APM_TOKEN}']
      // eslint-disable-next-line no-await-in-loop -- one format at a time
      const [started, tested, listed] = await Promise.all([
        cli(['run', ...args], {cwd, env, timeoutMs: 30_000}),
        cli(['test', 'config', ...args], {cwd, env}),
        cli(['keystore', 'list'], {cwd, env}),
      ])
      const where = `unused password (${format})`
      if (started.code !== 1 || !started.stderr.startsWith(`error: ${problem}\n`) || started.stderr.includes('listening')) {
        fail(result, `${where}: run exited ${started.code ?? started.signal}: ${started.stderr.trim().slice(0, 300)}`)
      }

      if (tested.code !== 1 || tested.stderr !== `error: ${problem}\n`) fail(result, `${where}: test config exited ${tested.code}: ${tested.stderr.trim()}`)
      if (listed.code !== 0 || listed.stdout !== 'APM_TOKEN\n' || listed.stderr !== `warning: ${problem}\n`) fail(result, `${where}: keystore list exited ${listed.code}: ${listed.stderr.trim()}`)
    } finally {
      tmp.cleanup()
    }
  }

  result.figures.push({check: 'review-core', figure: 'password set, keystore without one (a swapped keystore)', value: result.failures.length === 0 ? 'run and test config refuse it, keystore commands warn once' : 'SEE FAILURES'})
  return result
}

/** Issue 11 item 6: APM_SERVER_KEYSTORE_KDF_PARAMS below the default cost, outside test mode. */
export async function checkWeakKdf(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    const weak = {APM_SERVER_KEYSTORE_KDF_PARAMS: 'm=8,t=1,p=1', APM_SERVER_KEYSTORE_KDF_TEST_MODE: undefined, APM_SERVER_KEYSTORE_PASSWORD: 'pw'}
    const warning =
      'warning: APM_SERVER_KEYSTORE_KDF_PARAMS=m=8,t=1,p=1 is below the default argon2id cost (m=65536,t=3,p=4), so the default was used; ' +
      'unset it (weaker costs are for test suites, with APM_SERVER_KEYSTORE_KDF_TEST_MODE=1)\n'
    const header = async () => {
      const data = await fs.readFile(file)
      return `m=${data.readUInt32BE(10)},t=${data.readUInt32BE(14)},p=${data[18]}`
    }

    const created = await cli(['keystore', 'create', '--password'], {cwd, env: weak})
    const createdCost = await header()
    if (created.code !== 0 || created.stderr !== warning || createdCost !== 'm=65536,t=3,p=4') fail(result, `weak KDF: create --password exited ${created.code}, cost ${createdCost}: ${created.stderr.trim()}`)
    const changed = await cli(['keystore', 'passwd', '--stdin'], {cwd, env: weak, input: 'pw2\n'})
    const changedCost = await header()
    if (changed.code !== 0 || changed.stderr !== warning || changedCost !== 'm=65536,t=3,p=4') fail(result, `weak KDF: passwd exited ${changed.code}, cost ${changedCost}: ${changed.stderr.trim()}`)
    const testMode = await cli(['keystore', 'passwd', '--stdin'], {cwd, env: {...weak, APM_SERVER_KEYSTORE_KDF_TEST_MODE: '1', APM_SERVER_KEYSTORE_PASSWORD: 'pw2'}, input: 'pw3\n'})
    const testCost = await header()
    if (testMode.code !== 0 || testMode.stderr !== '' || testCost !== 'm=8,t=1,p=1') fail(result, `weak KDF in test mode: passwd exited ${testMode.code}, cost ${testCost}: ${testMode.stderr.trim()}`)
    result.figures.push({check: 'review-core', figure: 'APM_SERVER_KEYSTORE_KDF_PARAMS=m=8,t=1,p=1 without / with test mode', value: `create and passwd: ${createdCost} with one warning / passwd: ${testCost}, silent`})
  } finally {
    tmp.cleanup()
  }

  return result
}

/*
 * The break-local review (another local user against the landed hardening, 497f6e7), each attack as its
 * scripts made it: a stale-lock tree that root's recursive removal walked into root's files, a planted
 * ./apm-server.yml naming a root file as keystore.path, two names for one keystore with two locks, a
 * second link in a directory others can write, and a data directory swapped for a link to an old keystore.
 */

/** Another user's uid, for what they planted: files are given to it (root only; else ours, and the owner cases are skipped). */
const OTHER_UID = 54_321

async function giveToOther(...names: string[]): Promise<boolean> {
  if (process.getuid?.() !== 0) return false
  for (const name of names) {
    // eslint-disable-next-line no-await-in-loop -- a few names
    await fs.lchown(name, OTHER_UID, OTHER_UID)
  }

  return true
}

/** A directory of root's files that must survive: returns how many are left. */
async function preciousDir(dir: string, count: number): Promise<() => Promise<number>> {
  await fs.mkdir(dir, {mode: 0o700})
  for (let i = 0; i < count; i++) {
    // eslint-disable-next-line no-await-in-loop -- a few files
    await fs.writeFile(path.join(dir, `f${i}`), `root data ${i}`, {mode: 0o600})
  }

  return async () => (await fs.readdir(dir)).length
}

/**
 * break-local F2: another user who can write the data directory plants an old lock directory holding a
 * directory and links to a directory of root's (the reviewer flipped them with renameat2 while root's
 * recursive removal walked them). Under strict perms root must refuse the directory before touching the
 * lock; without, the lock is no empty directory of ours and is refused, never walked.
 */
export async function checkStaleLockTree(options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  const commands: string[][] = [['keystore', 'create', '--force'], ['keystore', 'add', 'K', '--stdin', '--force']]
  if (options.full) commands.push(['keystore', 'remove', 'K'], ['keystore', 'upgrade'], ['keystore', 'passwd', '--stdin'])
  const outcomes: string[] = []
  try {
    const cwd = tmp.dir
    await fs.chmod(cwd, 0o755)
    const data = path.join(cwd, 'data')
    // A keystore with a key, so that every command gets as far as taking the lock.
    await cli(['keystore', 'add', 'K', '--stdin', '--force'], {cwd, input: 'v'})
    await fs.chmod(data, 0o777)
    const left = await preciousDir(path.join(cwd, 'precious'), 20)
    const lock = path.join(data, LOCK_DIR)
    const plant = async () => {
      await fs.rm(lock, {force: true, recursive: true})
      await fs.mkdir(path.join(lock, 'a'), {recursive: true})
      await fs.writeFile(path.join(lock, 'a', 'keep'), '')
      for (let i = 0; i < 4; i++) await fs.symlink(path.join(cwd, 'precious'), path.join(lock, `s${i}`))
      await giveToOther(lock, path.join(lock, 'a'), path.join(lock, 'a', 'keep'), ...[0, 1, 2, 3].map((i) => path.join(lock, `s${i}`)))
      const old = new Date(Date.now() - 3_600_000)
      await fs.utimes(lock, old, old)
    }

    const strictMessage = `error: directory ${data} of keystore ${keystorePath(cwd)} has mode 0777, writable by group or others, who could replace the keystore; run "chmod go-w ${data}" (--strict.perms=false disables this check)\n`
    for (const [mode, extra] of [['strict', []], ['--strict.perms=false', ['--strict.perms=false']]] as const) {
      for (const args of commands) {
        await plant()
        const done = await cli([...args, ...extra], {cwd, input: 'v'})
        const where = `stale lock tree (${args.slice(1).join(' ')}, ${mode})`
        const refused = mode === 'strict' ? done.stderr === strictMessage : oneErrorLine(done.stderr) && /, so it is not a lock apm-server made .*remove it yourself if no apm-server process is running\n$/.test(done.stderr)
        if (done.code !== 1 || !refused) fail(result, `${where}: exit ${done.code}: ${done.stderr.trim()}`)
        const tree = await fs.readdir(lock).then((names) => names.sort().join(','), () => 'GONE')
        if (tree !== 'a,s0,s1,s2,s3') fail(result, `${where}: the planted lock was walked: it now holds ${tree}`)
        if ((await left()) !== 20) fail(result, `${where}: root's files under the linked directory were deleted: ${await left()} of 20 left`)
        outcomes.push(`${args[1]} ${mode}: exit ${done.code}`)
      }
    }
  } finally {
    tmp.cleanup()
  }

  result.figures.push({
    check: 'review-core',
    figure: 'stale lock directory planted with a subdirectory and links to root\'s directory, in a 0777 data dir',
    value: result.failures.length === 0 ? `all refused, nothing walked or removed (${outcomes.length} commands, strict and not)` : 'SEE FAILURES',
  })
  return result
}

/**
 * break-local F3: root, in a directory others can write (sticky, as /tmp), runs `keystore create --force`
 * where another user planted apm-server.yml with keystore.path naming a file of root's; and a config
 * root trusts naming a file that is no keystore.
 */
export async function checkPlantedConfig(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const shared = tmp.dir
    await fs.chmod(shared, 0o1777)
    const victims = path.join(shared, 'etc')
    await fs.mkdir(victims, {mode: 0o755})
    const victim = path.join(victims, 'victim.conf')
    await fs.writeFile(victim, 'important root config\n', {mode: 0o644})
    const config = path.join(shared, 'apm-server.yml')
    await fs.writeFile(config, `keystore.path: ${victim}\n`, {mode: 0o644})
    const intact = async () => (await fs.readFile(victim, 'utf8')) === 'important root config\n'
    if (await giveToOther(config)) {
      const planted = await cli(['keystore', 'create', '--force'], {cwd: shared})
      const message = `error: config file ${config} is owned by uid ${OTHER_UID}, not by the current user (uid 0) or root, and a config file decides where the keystore is and what is written where; check its contents, then run "chown 0 ${config}" (--strict.perms=false disables this check)\n`
      if (planted.code !== 1 || planted.stderr !== message) fail(result, `planted config: create --force exited ${planted.code}: ${planted.stderr.trim()}`)
      if (!(await intact())) fail(result, 'planted config: create --force replaced the file its keystore.path named')
      await fs.lchown(config, 0, 0)
    } else {
      result.skipped.push('planted config owned by another user: not root, cannot give a file away')
    }

    await fs.chmod(config, 0o666)
    const open = await cli(['keystore', 'create', '--force'], {cwd: shared})
    if (open.code !== 1 || open.stderr !== `error: config file ${config} has mode 0666, writable by group or others; run "chmod go-w ${config}" (--strict.perms=false disables this check)\n`) {
      fail(result, `0666 config: create --force exited ${open.code}: ${open.stderr.trim()}`)
    }

    // A config root trusts, naming a file that is no keystore: create --force replaces only keystores.
    await fs.chmod(config, 0o644)
    const named = await cli(['keystore', 'create', '--force'], {cwd: shared})
    const notKeystore = `error: ${victim} is not a keystore (it does not start like a native or Beats v1 keystore) and create replaces only keystores; check keystore.path and --path.data, or move it away first\n`
    if (named.code !== 1 || named.stderr !== notKeystore) fail(result, `keystore.path naming a non-keystore: create --force exited ${named.code}: ${named.stderr.trim()}`)
    if (!(await intact())) fail(result, 'keystore.path naming a non-keystore: create --force replaced it')
  } finally {
    tmp.cleanup()
  }

  result.figures.push({
    check: 'review-core',
    figure: 'apm-server.yml planted in a sticky shared cwd (keystore.path = a root file); a 0666 one; a trusted one naming a non-keystore (create --force)',
    value: result.failures.length === 0 ? 'all refused; the named file intact' : 'SEE FAILURES',
  })
  return result
}

/**
 * break-local F5: one keystore, two names (data/apm-server.keystore a link to it, the documented
 * secret-mount layout, and a keystore.path naming the target): writers through each must share one lock.
 * First deterministically (a lock held through the link must hold off a writer through the target),
 * then the reviewer's race, pairs of concurrent adds.
 */
export async function checkLockAlias(options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  const pairs = options.full ? 24 : 4
  let heldOff = 'not measured'
  try {
    const cwd = tmp.dir
    const real = path.join(cwd, 'real')
    await fs.mkdir(real, {mode: 0o700})
    await cli(['keystore', 'create', '--path.data', real], {cwd})
    const target = path.join(real, 'apm-server.keystore')
    const link = keystorePath(cwd)
    await fs.mkdir(path.dirname(link), {mode: 0o700})
    await fs.symlink(target, link)
    const direct = path.join(cwd, 'direct.yml')
    await fs.writeFile(direct, `keystore.path: ${target}\n`, {mode: 0o600})
    const viaTarget = (key: string) => cli(['keystore', 'add', key, '--stdin', '--force', '-c', direct], {cwd, input: 'v'})
    const viaLink = (key: string) => cli(['keystore', 'add', key, '--stdin', '--force'], {cwd, input: 'v'})
    const holdMs = 3000
    let exitedWhileHeld = false
    // Wrapped: an async function returning the promise itself would wait for it, holding the lock.
    const {writer} = await withKeystoreLock(link, async () => {
      const started = viaTarget('HELD')
      const raced = await Promise.race([started.then(() => 'exited'), sleep(holdMs).then(() => 'waiting')])
      exitedWhileHeld = raced === 'exited'
      return {writer: started}
    })
    const released = await writer
    if (released.code !== 0) fail(result, `lock alias: the add through the target, after the lock was released, exited ${released.code}: ${released.stderr.trim()}`)
    if (exitedWhileHeld) fail(result, 'lock alias: an add through the target name finished while the lock was held through the link')
    heldOff = exitedWhileHeld ? 'NOT held off' : `held off for ${ms(holdMs)} until released`
    const expected = ['HELD']
    for (let i = 0; i < pairs; i++) {
      // eslint-disable-next-line no-await-in-loop -- one pair at a time, as the reviewer ran them
      const [a, b] = await Promise.all([viaLink(`A${i}`), viaTarget(`B${i}`)])
      for (const [name, done] of [[`A${i}`, a], [`B${i}`, b]] as const) {
        if (done.code === 0) expected.push(name)
        else fail(result, `lock alias: add ${name} exited ${done.code}: ${done.stderr.trim()}`)
      }
    }

    const state = await snapshot(target)
    const keys = 'error' in state ? [] : [...state.entries.keys()]
    const lost = expected.filter((name) => !keys.includes(name))
    if (lost.length > 0) fail(result, `lock alias: ${lost.length} adds exited 0 but their keys are not in the keystore: ${lost.join(', ')}`)
    // The audit trail belongs beside the real file, once: both names must append to the one trail.
    const left = (await fs.readdir(real)).filter((name) => name !== KEYSTORE_NAME && name !== AUDIT_NAME)
    if (left.length > 0) fail(result, `lock alias: left next to the keystore: ${left.join(', ')}`)
    const besideLink = (await fs.readdir(path.dirname(link))).filter((name) => name !== path.basename(link))
    if (besideLink.length > 0) fail(result, `lock alias: left next to the link: ${besideLink.join(', ')}`)
    const verified = await cli(['keystore', 'audit', '--verify', '-c', direct], {cwd})
    if (verified.code !== 0) fail(result, `lock alias: the one audit trail written through both names does not verify (exit ${verified.code}): ${verified.stderr.trim()}`)
    result.figures.push({
      check: 'review-core',
      figure: `one keystore through a link and through keystore.path: a writer while the other name's lock is held; ${pairs} pairs of concurrent adds`,
      value: `${heldOff}; ${expected.length - 1} adds exited 0, ${lost.length} lost`,
    })
  } finally {
    tmp.cleanup()
  }

  return result
}

/**
 * break-local F6: a chain of links whose second link lives in a directory others can write (re-pointed
 * at a 0600 file of root's), and a data directory whose parent others can write, swapped for a link to a
 * directory holding an older keystore (a rollback of the secrets).
 */
export async function checkLinkChainAndAncestors(_options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  try {
    const cwd = tmp.dir
    await fs.chmod(cwd, 0o755)
    const real = path.join(cwd, 'real')
    await fs.mkdir(real, {mode: 0o700})
    await cli(['keystore', 'create', '--path.data', real], {cwd})
    const home = path.join(cwd, 'apm')
    const shared = path.join(cwd, 'shared')
    await fs.mkdir(home, {mode: 0o755})
    await fs.mkdir(shared)
    await fs.chmod(shared, 0o777)
    const hop2 = path.join(shared, 'current')
    await fs.symlink(path.join(real, 'apm-server.keystore'), hop2)
    await fs.symlink(hop2, path.join(home, 'apm-server.keystore'))
    const chain = ['--path.data', home]
    const refusal = `error: directory ${shared}, holding the symbolic link ${hop2} on the path to keystore ${path.join(home, 'apm-server.keystore')}, has mode 0777, writable by group or others, who could re-point that link; run "chmod go-w ${shared}" (--strict.perms=false disables this check)\n`
    const listed = await cli(['keystore', 'list', ...chain], {cwd})
    if (listed.code !== 1 || listed.stderr !== refusal) fail(result, `link chain: list exited ${listed.code}: ${listed.stderr.trim()}`)
    const secrets = path.join(cwd, 'secrets')
    await fs.mkdir(secrets, {mode: 0o700})
    const victim = path.join(secrets, 'victim')
    await fs.writeFile(victim, 'root-only data', {mode: 0o600})
    await fs.rm(hop2)
    await fs.symlink(victim, hop2)
    await giveToOther(hop2)
    const created = await cli(['keystore', 'create', '--force', ...chain], {cwd})
    if (created.code !== 1 || !oneErrorLine(created.stderr) || !created.stderr.includes(shared)) fail(result, `link chain re-pointed: create --force exited ${created.code}: ${created.stderr.trim()}`)
    if ((await fs.readFile(victim, 'utf8')) !== 'root-only data') fail(result, 'link chain re-pointed: create --force replaced the file the second link was re-pointed at')
    // The ancestor: the parent of the data directory is shared; the data directory swapped for a link.
    const parent = path.join(cwd, 'parent')
    await fs.mkdir(path.join(parent, 'ks'), {mode: 0o700, recursive: true})
    const old = path.join(cwd, 'old')
    await fs.mkdir(old, {mode: 0o700})
    await cli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin', '--force', '--path.data', old], {cwd, input: 'OLD-leaked-token'})
    await cli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin', '--force', '--path.data', path.join(parent, 'ks')], {cwd, input: 'NEW-token'})
    await fs.chmod(parent, 0o777)
    await fs.rename(path.join(parent, 'ks'), path.join(parent, '.ks-away'))
    await fs.symlink(old, path.join(parent, 'ks'))
    await giveToOther(path.join(parent, 'ks'))
    const shown = await cli(['keystore', 'show', 'APM_SECRET_TOKEN', '--path.data', path.join(parent, 'ks')], {cwd})
    if (shown.code !== 1 || shown.stdout !== '' || !oneErrorLine(shown.stderr) || !shown.stderr.includes(`directory ${parent}`)) {
      fail(result, `data directory swapped through a shared parent: show exited ${shown.code}, printed ${JSON.stringify(shown.stdout)}: ${shown.stderr.trim()}`)
    }
  } finally {
    tmp.cleanup()
  }

  result.figures.push({
    check: 'review-core',
    figure: 'a second link in a 0777 directory (list; re-pointed at a root file: create --force); a data dir swapped via its 0777 parent (show)',
    value: result.failures.length === 0 ? 'all refused; the root file intact, the old token never printed' : 'SEE FAILURES',
  })
  return result
}

/**
 * break-local F4, the keystore commands' part: every one parses ./apm-server.yml, and duplicate-key
 * checking was quadratic in the number of settings (40,000 took 13.4 s). A config of many one-line
 * settings (fast: 60,000, 0.6 MB; full: 360,000, 3.8 MB, near the 4 MiB cap) must not stall `keystore
 * list`; judged against a tenth of the settings, so the machine's speed does not matter: linear work grows
 * ~10 times (less with the CLI's start-up), quadratic ~100 times.
 */
export async function checkManySettings(options: ReviewCoreOptions): Promise<CheckResult> {
  const result = newResult()
  const tmp = tempDir()
  const count = options.full ? 360_000 : 60_000
  try {
    const cwd = tmp.dir
    await cli(['keystore', 'create'], {cwd})
    const timed = async (n: number) => {
      const lines = ['apm-server.host: "127.0.0.1:0"']
      for (let i = 0; i < n; i++) lines.push(`x${i}: 1`)
      await fs.writeFile(path.join(cwd, 'apm-server.yml'), `${lines.join('\n')}\n`, {mode: 0o600})
      const t0 = Date.now()
      const done = await cli(['keystore', 'list'], {cwd, timeoutMs: 600_000})
      if (done.code !== 0) fail(result, `${n} settings: keystore list exited ${done.code ?? done.signal}: ${done.stderr.trim().slice(0, 200)}`)
      return Date.now() - t0
    }

    const small = Math.min(await timed(count / 10), await timed(count / 10))
    const large = await timed(count)
    if (large > 10 * small) fail(result, `${count} settings took ${ms(large)}, ${(large / small).toFixed(0)} times ${count / 10} settings (${ms(small)}): not linear`)
    result.figures.push({check: 'review-core', figure: `keystore list with ${count / 10} / ${count} one-line settings in ./apm-server.yml`, value: `${ms(small)} / ${ms(large)}`})
  } finally {
    tmp.cleanup()
  }

  return result
}
