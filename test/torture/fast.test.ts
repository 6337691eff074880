/**
 * Reduced versions of every torture check (`npm run torture` runs them at full size), and the
 * regression tests of the defects the torture suite found. Runs the built CLI: `npm test` builds first.
 */
import assert from 'node:assert/strict'
import {promises as fs} from 'node:fs'
import path from 'node:path'

import type {CliResult} from '../helpers/cli.js'
import {checkConcurrency, checkStaleTakeoverRace} from './concurrency.js'
import {checkCrash, checkSymlinkCrash} from './crash.js'
import {forgeBeats, forgeCalibrated, forgeNative, validIndex, validValues} from './forge.js'
import {checkHostileFiles} from './hostile-files.js'
import {checkHostileInput} from './hostile-input.js'
import {checkLeaks} from './leaks.js'
import {CheckResult, cli, cliMeasured, keystorePath, oneErrorLine, shell, tempDir} from './lib.js'
import {checkOtlp} from './otlp.js'
import {checkPermissions} from './permissions.js'
import {checkRedis} from './redis.js'
import {checkServer, checkTiming} from './server.js'

/** A check passes when it has no failures; the figures are printed when it does not. */
function assertPassed(result: CheckResult): void {
  assert.deepEqual(result.failures, [], result.figures.map((f) => `${f.figure}: ${f.value}`).join('\n'))
}

const SEED = 20_240_611

describe('torture (fast versions; `npm run torture` runs them at full size)', function () {
  // Each runs tens of CLI processes; on 2 cores that is seconds, not the 60 s default.
  this.timeout(240_000)

  it('concurrency: 3 processes × 2 adds (native with password, beats-v1) land every key; an add/remove/passwd race leaves the exact final state', async () => {
    assertPassed(await checkConcurrency({full: false, keysEach: 2, processes: 3, raceOps: 3, raceWriters: 2, seed: SEED}))
  })

  it('crash safety: 30 SIGKILLs during add/remove/passwd/upgrade/sync/import leave the state before or after (host key kept), and the next command cleans up', async () => {
    assertPassed(await checkCrash({kills: 30, lanes: 2, naturalEvery: 0, seed: SEED}))
  })

  it('hostile files: 1,000 mutated keystores in-process and 12 through the CLI are refused with one clear error', async () => {
    assertPassed(await checkHostileFiles({cliSample: 12, extremes: false, hangMs: 30_000, mutations: 1000, seed: SEED, workers: 2}))
  })

  it('hostile input: bad key names exit 2, binary values round-trip byte for byte, empty/closed stdin and no TTY fail at once; bad recipients, hostile bundles and odd sync directories refused at once', async () => {
    assertPassed(await checkHostileInput({bigValueBytes: 2_000_000, full: false}))
  })

  it('leak hunt: no canary secret in argv, stdout (but show), stderr, --json, leftover files, bundles or the keystore in clear; the host key nowhere', async () => {
    assertPassed(await checkLeaks({crashes: 2, full: false}))
  })

  it('permissions: 0600 file and 0700 dirs after every command; open or foreign-owned keystores refused', async () => {
    assertPassed(await checkPermissions({full: false}))
  })

  it('server abuse: bad gzip, a big line, tiny lines, slowloris, 100 connections, injection, bad auth, bad TLS; agents still served, nothing lost', async () => {
    assertPassed(await checkServer({scale: 'fast', seed: SEED}))
  })

  it('OTLP abuse: mutated protobuf, deep nesting, a million values, gzip bombs, idle HTTP/2 streams, PING/SETTINGS floods, huge headers, too many streams; a valid exporter served, nothing lost', async () => {
    assertPassed(await checkOtlp({scale: 'fast', seed: SEED}))
  })

  it('hostile Redis: one that never answers, one that answers garbage or an endless bulk string, one that closes every connection after 16 KiB to 4 MiB: no crash, 503s, bounded memory, nothing answered 202 lost', async () => {
    assertPassed(await checkRedis({scale: 'fast'}))
  })

  it('timing: the right token, wrong ones of the right length and one of another length cannot be told apart', async () => {
    assertPassed(await checkTiming({httpSamples: 300, samples: 3000}))
  })
})

describe('defects found by the torture suite (regression tests)', function () {
  this.timeout(120_000)
  let tmp: ReturnType<typeof tempDir>
  beforeEach(() => {
    tmp = tempDir()
  })
  afterEach(() => tmp.cleanup())

  /**
   * Writes `data` as the keystore of the test's directory and runs `keystore list` on it, which must fail
   * with one error line and stay under 400 MiB resident (the CLI alone is ~60 MiB).
   */
  async function assertListRefusesWithinMemory(data: Buffer, describeRun = (run: CliResult) => run.stderr): Promise<void> {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    await fs.mkdir(path.dirname(file), {mode: 0o700})
    await fs.writeFile(file, data, {mode: 0o600})
    const run = await cliMeasured(['keystore', 'list'], {cwd, timeoutMs: 120_000})
    assert.equal(run.code, 1, describeRun(run))
    assert.ok(oneErrorLine(run.stderr), run.stderr)
    assert.ok(run.peakMiB < 400, `peak resident memory ${run.peakMiB} MiB`)
  }

  // A key named __proto__ is a valid name, but assigning it on a plain object sets the prototype: the
  // key vanished from the file on write while `add` reported success.
  for (const format of ['native', 'beats-v1']) {
    it(`keeps a key named __proto__ (${format})`, async () => {
      const cwd = tmp.dir
      assert.equal((await cli(['keystore', 'create', '--format', format], {cwd})).code, 0)
      const added = await cli(['keystore', 'add', '__proto__', 'constructor', '--stdin'], {cwd, input: 'proto-value\nctor-value\n'})
      assert.equal(added.code, 0, added.stderr)
      assert.equal((await cli(['keystore', 'list'], {cwd})).stdout, '__proto__\nconstructor\n')
      assert.equal((await cli(['keystore', 'show', '__proto__'], {cwd})).stdout, 'proto-value')
    })
  }

  // open(2) of a FIFO blocks until a writer appears: every command hung forever.
  it('refuses a FIFO at the keystore path at once instead of hanging', async () => {
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    await fs.mkdir(path.dirname(file), {mode: 0o700})
    const made = await shell(`mkfifo -m 600 ${file}`, {cwd})
    assert.equal(made.code, 0, made.stderr)
    // The cap only turns a hang into a failure; a correct CLI answers in well under a second.
    const run = await cli(['keystore', 'list'], {cwd, timeoutMs: 20_000})
    assert.equal(run.signal, null, 'keystore list hung on a FIFO')
    assert.equal(run.code, 1)
    assert.ok(oneErrorLine(run.stderr), run.stderr)
    assert.match(run.stderr, /not a regular file/)
  })

  // The index lengths were checked against the values only when values were read: `list` accepted the
  // file, `show` refused it with a message that did not name the file.
  it('refuses a native file whose index lengths do not match its values, in every command, naming the file', async function () {
    if (await forgeCalibrated()) this.skip()
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    await fs.mkdir(path.dirname(file), {mode: 0o700})
    const values = validValues([Buffer.from('one'), Buffer.from('two')])
    await fs.writeFile(file, await forgeNative({index: validIndex([['A', Buffer.from('one')], ['B', Buffer.from('twelve')]]), values}, Math.random), {mode: 0o600})
    for (const args of [['keystore', 'list'], ['keystore', 'show', 'A']]) {
      // eslint-disable-next-line no-await-in-loop -- two commands
      const run = await cli(args, {cwd})
      assert.equal(run.code, 1, `${args.join(' ')} accepted a file whose index does not match its values`)
      assert.ok(run.stderr.includes(file), `${args.join(' ')}: ${run.stderr}`)
    }

    // The same forger's well-formed file opens, so the refusal above is about the lengths.
    await fs.writeFile(file, await forgeNative({index: validIndex([['A', Buffer.from('one')], ['B', Buffer.from('two')]]), values}, Math.random), {mode: 0o600})
    assert.equal((await cli(['keystore', 'show', 'B'], {cwd})).stdout, 'two')
  })

  // Values (and times) are decrypted when first needed, outside the code that adds the path to messages.
  it('names the file when a value that fails to decode is first read', async function () {
    if (await forgeCalibrated()) this.skip()
    const cwd = tmp.dir
    const file = keystorePath(cwd)
    await fs.mkdir(path.dirname(file), {mode: 0o700})
    const values = validValues([Buffer.from('one')], [[Number.NaN, 0]])
    await fs.writeFile(file, await forgeNative({index: validIndex([['A', Buffer.from('one')]]), values}, Math.random), {mode: 0o600})
    const run = await cli(['keystore', 'show', 'A'], {cwd})
    assert.equal(run.code, 1)
    assert.ok(oneErrorLine(run.stderr), run.stderr)
    assert.ok(run.stderr.includes(file), run.stderr)
  })

  // JSON.parse allocates ~45 bytes for each "[" of nested arrays: a forged file with a big index (native,
  // no password needed to forge) or payload (Beats) cost gigabytes and minutes before it was refused.
  it('refuses a forged native keystore with a 40 MiB index of nested arrays without a memory blow-up', async function () {
    if (await forgeCalibrated()) this.skip()
    const index = () => Buffer.concat([Buffer.from('{"entries":'), Buffer.alloc(40 * 1024 * 1024, 0x5b)])
    // 2.7 GiB before the fix; the file is 40 MiB.
    await assertListRefusesWithinMemory(await forgeNative({index, values: validValues([])}, Math.random))
  })

  it('refuses a forged Beats keystore with 16 MiB of nested arrays without a memory blow-up', async () => {
    // 820 MiB before the fix; decoding the file costs a few copies of its 22 MiB.
    await assertListRefusesWithinMemory(forgeBeats(Buffer.alloc(16 * 1024 * 1024, 0x5b), Math.random))
  })

  // Defect 8 in docs/reliability.md: a shallow payload costs as much, millions of tiny rows or objects
  // (found after the depth check went in). Both fail until MAX_KEYS and the index size cap are in.
  it('refuses a forged native keystore whose index is 10 million empty rows without a memory blow-up', async function () {
    if (await forgeCalibrated()) this.skip()
    const index = () => Buffer.concat([Buffer.from('{"entries":['), Buffer.from('[],'.repeat(10 * 1024 * 1024)), Buffer.from('[]],"values":"x"}')])
    // 812 MiB before the fix (the index is 30 MiB and only 3 levels deep).
    await assertListRefusesWithinMemory(await forgeNative({index, values: validValues([])}, Math.random))
  })

  it('refuses a forged Beats keystore of 1.5 million tiny keys without a memory blow-up', async () => {
    const entries = Array.from({length: 1_500_000}, (_, i) => `"K${i.toString(36).padStart(5, '0')}":{"value":""}`)
    // 1,285 MiB and 16 s to list 1.5 million keys before the fix; more keys than any keystore may hold.
    await assertListRefusesWithinMemory(forgeBeats(Buffer.from(`{${entries.join(',')}}`), Math.random), (run) => `listed ${run.stdout.split('\n').length - 1} keys`)
  })

  // proper-lockfile's stale takeover is stat-then-rmdir: a writer paused between the two removed the lock
  // another writer had just taken over, both held it, and a write that exited 0 was lost.
  it('never loses a successful write when two writers take over a stale lock at once (forced with strace)', async function () {
    const result = await checkStaleTakeoverRace()
    if (result.skipped.length > 0) this.skip()
    assertPassed(result)
  })

  // The writer writes next to the link's target, but leftovers were looked for next to the link.
  it('cleans the temp file a kill left next to the target of a symlinked keystore', async () => {
    const result = await checkSymlinkCrash(3)
    assertPassed(result)
    assert.match(result.figures[0].value, /^[1-9]/, 'no kill landed mid-write: the check saw nothing')
  })
})
