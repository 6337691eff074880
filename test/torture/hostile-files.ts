/**
 * Hostile keystore files: thousands of mutated and crafted files opened through the core API in
 * watched child processes (a hang is killed and reported, peak memory is read), then a sample through
 * the real CLI (exit 1, one `error:` line, no stack trace, nothing on stdout), then special files and
 * size extremes.
 */
import {spawn} from 'node:child_process'
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {forgeBeats, forgeCalibrated, forgeNative, validIndex, validValues} from './forge.js'
import type {WorkerJob, WorkerReport} from './fuzz-worker.js'
import {CheckResult, cli, cliMeasured, fail, keystorePath, ms, newResult, oneErrorLine, pool, prng, ROOT, tempDir} from './lib.js'
import {BASE_PASSWORD, makeBases, mutation} from './mutate.js'

export interface HostileFileOptions {
  mutations: number
  cliSample: number
  workers: number
  seed: number
  /** also the slow extremes: argon2 at its caps, a 250 MiB keystore */
  extremes: boolean
  /** a worker that reports no progress for this long is hung */
  hangMs?: number
  /** keep the offending files of a failed run (the torture run does; tests leave nothing behind) */
  keepFailures?: boolean
}

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fuzz-worker.ts')

export async function checkHostileFiles(options: HostileFileOptions): Promise<CheckResult> {
  const result = newResult()
  const forger = await forgeCalibrated()
  if (forger) result.skipped.push(`forged native payloads: ${forger}`)
  await inProcess(options, result)
  await throughCli(options, result)
  await specialFiles(options, result)
  return result
}

async function inProcess(options: HostileFileOptions, result: CheckResult): Promise<void> {
  const per = Math.ceil(options.mutations / options.workers)
  const started = Date.now()
  const reports = await pool(
    Array.from({length: options.workers}, (_, i) => i),
    options.workers,
    (i) => runWorker({count: Math.min(per, options.mutations - i * per), dir: '', keep: options.keepFailures ?? false, seed: options.seed, start: i * per}, options, result),
  )
  const seconds = (Date.now() - started) / 1000
  const done = reports.filter((report): report is WorkerReport => report !== undefined)
  const sum = (pick: (r: WorkerReport) => Record<string, number>) => {
    const out: Record<string, number> = {}
    for (const report of done) for (const [key, n] of Object.entries(pick(report))) out[key] = (out[key] ?? 0) + n
    return out
  }

  for (const report of done) for (const failure of report.failures) fail(result, `hostile file ${failure}`)
  // Files inside the caps cost at most 64 MiB of argon2 here; anything near this bound is a blow-up.
  const memoryBoundMiB = 768
  for (const report of done) if (report.peakRssMiB > memoryBoundMiB) fail(result, `hostile files: a worker peaked at ${report.peakRssMiB} MiB, over ${memoryBoundMiB} MiB`)
  const tried = done.reduce((n, r) => n + r.tried, 0)
  const slowest = done.reduce((a, b) => (b.maxMs > a.maxMs ? b : a), done[0])
  const list = (record: Record<string, number>) =>
    Object.entries(record)
      .sort((a, b) => b[1] - a[1])
      .map(([key, n]) => `${key} ${n}`)
      .join(', ')
  result.figures.push(
    {
      check: 'hostile files',
      figure: `mutated keystores opened in-process (native, native+password, beats-v1 bases) (${seconds.toFixed(0)} s)`,
      value: `${tried} tried: ${list(sum((r) => r.byKind))}`,
    },
    {check: 'hostile files', figure: 'outcome', value: `${list(sum((r) => r.byCode))}; ${result.failures.length === 0 ? 'every one refused with a KeystoreError naming the file' : 'SEE FAILURES'}`},
    {
      check: 'hostile files',
      figure: 'slowest file; peak memory of a worker',
      value: slowest ? `${ms(slowest.maxMs)} (${slowest.maxDetail}); ${Math.max(...done.map((r) => r.peakRssMiB))} MiB` : 'n/a',
    },
  )
}

function runWorker(job: WorkerJob, options: HostileFileOptions, result: CheckResult): Promise<undefined | WorkerReport> {
  const hangMs = options.hangMs ?? 60_000
  const tmp = tempDir('apm-torture-fuzz-')
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER], {cwd: ROOT, stdio: ['ignore', 'inherit', 'pipe', 'ipc']})
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  let last = Date.now()
  let current = '(not started)'
  let report: undefined | WorkerReport
  let crashed: string | undefined
  child.on('message', (message: {progress?: number; detail?: string; done?: WorkerReport; crashed?: string}) => {
    last = Date.now()
    if (message.detail) current = message.detail
    if (message.done) report = message.done
    if (message.crashed) crashed = message.crashed
  })
  const watchdog = setInterval(() => {
    if (Date.now() - last > hangMs) {
      fail(result, `hostile file ${current}: no answer within ${hangMs / 1000} s (hang)${options.keepFailures ? `; file left in ${tmp.dir}` : ''}`)
      child.kill('SIGKILL')
    }
  }, 500)
  child.send({...job, dir: tmp.dir})
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearInterval(watchdog)
      if (crashed) fail(result, `hostile files: worker crashed: ${crashed}`)
      else if (!report) fail(result, `hostile files: worker exited ${code ?? signal} during ${current}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)
      // Keep the directory when something failed: it holds the offending files.
      if (!options.keepFailures || (report && report.failures.length === 0 && !crashed)) tmp.cleanup()
      resolve(report)
    })
  })
}

async function throughCli(options: HostileFileOptions, result: CheckResult): Promise<void> {
  const bases = await makeBases()
  const random = prng(options.seed + 77)
  const samples = []
  for (let i = 0; i < options.cliSample; i++) {
    // eslint-disable-next-line no-await-in-loop -- deterministic sequence
    const made = await mutation(bases, prng(Math.floor(random() * 2 ** 31)))
    // Only files the core refuses: equivalents (Beats' ignored bits) open by design.
    if (!made.equivalentTo) samples.push(made)
  }

  let ok = 0
  await pool(samples, 2, async (made, i) => {
    const tmp = tempDir()
    try {
      const file = keystorePath(tmp.dir)
      await fs.mkdir(path.dirname(file), {mode: 0o700})
      await fs.writeFile(file, made.data, {mode: 0o600})
      const json = i % 4 === 0
      const run = await cli(['keystore', 'list', ...(json ? ['--json'] : [])], {cwd: tmp.dir, env: {APM_SERVER_KEYSTORE_PASSWORD: BASE_PASSWORD}, timeoutMs: 60_000})
      const label = `hostile file via CLI (${made.kind} of ${made.base}: ${made.detail})`
      if (run.code !== 1) fail(result, `${label}: exit ${run.code ?? run.signal}, expected 1; stderr ${JSON.stringify(run.stderr.slice(0, 300))}`)
      else if (!oneErrorLine(run.stderr)) fail(result, `${label}: stderr is not one error line: ${JSON.stringify(run.stderr.slice(0, 300))}`)
      else if (json ? !isJsonError(run.stdout) : run.stdout !== '') fail(result, `${label}: unexpected stdout ${JSON.stringify(run.stdout.slice(0, 200))}`)
      else ok++
    } finally {
      tmp.cleanup()
    }
  })
  result.figures.push({check: 'hostile files', figure: 'a sample through `keystore list` (every 4th with --json)', value: `${ok}/${samples.length} exit 1 with one "error:" line, no stack trace`})
}

function isJsonError(stdout: string): boolean {
  try {
    const parsed = JSON.parse(stdout) as {error?: {code?: unknown; message?: unknown}}
    return typeof parsed.error?.code === 'string' && typeof parsed.error?.message === 'string' && Object.keys(parsed).length === 1
  } catch {
    return false
  }
}

/** Not-a-file keystores and size extremes, through the CLI. Each must end, with exit 1. */
async function specialFiles(options: HostileFileOptions, result: CheckResult): Promise<void> {
  // Bounds, generous on purpose: a hang or a blow-up, not a slow machine, should cross them.
  const cases: Array<{name: string; setup: (file: string) => Promise<void>; expectExit: number; timeoutMs?: number; maxMs?: number; maxMiB?: number}> = [
    {expectExit: 1, name: 'a directory', setup: (file) => fs.mkdir(file)},
    {expectExit: 0, name: 'a symlink to a valid keystore (followed: secret mounts use them)', setup: async (file) => symlinkToValid(file)},
    {expectExit: 1, name: 'a symlink to /dev/zero', setup: (file) => fs.symlink('/dev/zero', file)},
    {expectExit: 1, name: 'an empty file', setup: (file) => fs.writeFile(file, '', {mode: 0o600})},
    {
      expectExit: 1,
      name: 'a 300 MiB sparse file (over the 256 MiB cap)',
      async setup(file) {
        const handle = await fs.open(file, 'w', 0o600)
        await handle.truncate(300 * 1024 * 1024)
        await handle.close()
      },
    },
  ]
  if (options.extremes) {
    // (The fast test has its own FIFO case among the regression tests.)
    cases.push(
      {expectExit: 1, name: 'a FIFO', setup: (file) => mkfifo(file)},
      {
        expectExit: 1,
        // 1 GiB is what the caps allow a file to ask of argon2: the bound is the cap plus the CLI.
        maxMiB: 1400,
        maxMs: 120_000,
        name: 'argon2id at its caps (m=1 GiB, t=10, p=16) on a tampered file',
        timeoutMs: 300_000,
        async setup(file) {
          const [base] = (await makeBases()).filter((b) => b.kind === 'native-password')
          const data = Buffer.from(base.data)
          data.writeUInt32BE(1024 * 1024, 10)
          data.writeUInt32BE(10, 14)
          data[18] = 16
          await fs.writeFile(file, data, {mode: 0o600})
        },
      },
      // Decoding base64 and AES-GCM copies the file a few times before any check of its JSON can run: the
      // bound is linear in the size (the 256 MiB cap); what it must never do is grow with the JSON's shape.
      {expectExit: 1, maxMiB: 1536, name: 'a forged 250 MiB Beats keystore whose payload is "[[[[..."', setup: (file) => forgedBeatsBig(file, 'deep'), timeoutMs: 300_000},
      {expectExit: 1, maxMiB: 1536, name: 'a forged 250 MiB Beats keystore of 9 million tiny entries', setup: (file) => forgedBeatsBig(file, 'wide'), timeoutMs: 300_000},
    )
    if ((await forgeCalibrated()) === undefined) {
      cases.push(
        {expectExit: 1, name: 'a forged 250 MiB no-password keystore whose index is "[[[[..."', setup: (file) => forgedBig(file, 'deep'), timeoutMs: 300_000},
        {expectExit: 1, name: 'a forged 250 MiB no-password keystore whose index is 87 million empty rows', setup: (file) => forgedBig(file, 'wide'), timeoutMs: 300_000},
        {expectExit: 0, maxMiB: 1024, name: 'a valid 180 MiB no-password keystore (one 180 MiB value), listed', setup: (file) => forgedBig(file, 'valid'), timeoutMs: 300_000},
      )
    }
  }

  for (const test of cases) {
    const tmp = tempDir()
    try {
      const file = keystorePath(tmp.dir)
      await fs.mkdir(path.dirname(file), {mode: 0o700})
      await test.setup(file)
      const run = await cliMeasured(['keystore', 'list'], {cwd: tmp.dir, env: {APM_SERVER_KEYSTORE_PASSWORD: BASE_PASSWORD}, timeoutMs: test.timeoutMs ?? 30_000})
      const maxMiB = test.maxMiB ?? 512
      const maxMs = test.maxMs ?? 60_000
      const exited = run.code === test.expectExit && (test.expectExit === 0 || oneErrorLine(run.stderr))
      const bounded = run.peakMiB <= maxMiB && run.ms <= maxMs
      const good = exited && bounded
      if (!exited) {
        fail(result, `special file ${test.name}: exit ${run.code ?? `${run.signal} (killed after ${ms(run.ms)}: hang)`}, expected ${test.expectExit}; stderr ${JSON.stringify(run.stderr.slice(0, 300))}`)
      } else if (!bounded) {
        fail(result, `special file ${test.name}: took ${ms(run.ms)} and peaked at ${run.peakMiB} MiB (bounds: ${ms(maxMs)}, ${maxMiB} MiB)`)
      }

      result.figures.push({
        check: 'hostile files',
        figure: `keystore path is ${test.name}`,
        value: `${good ? 'ok' : 'FAILED'}: exit ${run.code ?? run.signal} in ${ms(run.ms)}, peak ${run.peakMiB} MiB${test.expectExit === 1 && run.stderr ? ` — ${run.stderr.trim().slice(0, 140)}` : ''}`,
      })
    } finally {
      tmp.cleanup()
    }
  }
}

function mkfifo(file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    spawn('mkfifo', ['-m', '600', file], {stdio: 'ignore'}).on('close', (code) => (code === 0 ? resolve() : reject(new Error(`mkfifo exited ${code}`))))
  })
}

async function symlinkToValid(file: string): Promise<void> {
  const [base] = await makeBases()
  const real = `${file}.real`
  await fs.writeFile(real, base.data, {mode: 0o600})
  await fs.symlink(real, file)
}

/** A Beats keystore needs no secret to forge either: a 250 MiB file of deep nesting or of tiny entries. */
async function forgedBeatsBig(file: string, shape: 'deep' | 'wide'): Promise<void> {
  // 250 MiB of base64 holds ~187 MiB of JSON.
  const bytes = 187 * 1024 * 1024
  let payload: Buffer
  if (shape === 'deep') {
    payload = Buffer.alloc(bytes, 0x5b)
  } else {
    const entry = (i: number) => `"K${i.toString(36).padStart(5, '0')}":{"value":""}`
    const per = entry(0).length + 1
    const count = Math.floor(bytes / per)
    payload = Buffer.from(`{${Array.from({length: count}, (_, i) => entry(i)).join(',')}}`)
  }

  await fs.writeFile(file, forgeBeats(payload, Math.random), {mode: 0o600})
}

/** A no-password native keystore is forgeable by anyone: build a 250 MiB one (or a valid 180 MiB one). */
async function forgedBig(file: string, shape: 'deep' | 'valid' | 'wide'): Promise<void> {
  const value = Buffer.alloc(shape === 'valid' ? 180 * 1024 * 1024 : 1, 0x61)
  const mib250 = 250 * 1024 * 1024
  // "[[[[..." is the most expensive thing to hand JSON.parse; "[],[],..." the most expensive at depth 3.
  const index =
    shape === 'valid'
      ? validIndex([['BIG', value]])
      : shape === 'deep'
        ? () => Buffer.concat([Buffer.from('{"entries":'), Buffer.alloc(mib250, 0x5b)])
        : () => Buffer.concat([Buffer.from('{"entries":['), Buffer.from('[],'.repeat(mib250 / 3)), Buffer.from('[]],"values":"x"}')])
  await fs.writeFile(file, await forgeNative({index, values: validValues(shape === 'valid' ? [value] : [])}, Math.random), {mode: 0o600})
}
