/**
 * The torture suite (`npm run torture`): every check at full size, one table of figures at the end.
 *
 *   npm run torture                       everything (builds first)
 *   npm run torture -- --only=crash,leaks some checks (concurrency, crash, hostile-files, hostile-input,
 *                                         leaks, permissions, server, timing, otlp, redis,
 *                                         review-core, review-config, review-server)
 *   npm run torture -- --seed=42          repeat a run's random choices
 *   npm run torture -- --markdown=FILE    also write the table as Markdown
 *   npm run torture -- --no-build         use dist/ as it is
 *
 * Exits 1 when any check failed; failures are listed under the table with what reproduces them.
 */
import {execFileSync} from 'node:child_process'
import {existsSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {checkConcurrency, checkStaleLockStorm, checkStaleTakeoverRace, checkSynchronizedStorm} from './concurrency.js'
import {checkCrash, checkSymlinkCrash} from './crash.js'
import {checkHostileFiles} from './hostile-files.js'
import {checkHostileInput} from './hostile-input.js'
import {checkLeaks} from './leaks.js'
import {CheckResult, Figure, ROOT} from './lib.js'
import {checkPermissions} from './permissions.js'

const args = new Map(
  process.argv.slice(2).map((arg) => {
    const [name, value] = arg.replace(/^--/, '').split('=')
    return [name, value ?? 'true'] as const
  }),
)
const seed = Number(args.get('seed') ?? Math.floor(Math.random() * 1e6))
const only = args.get('only')?.split(',')

interface Check {
  name: string
  run: () => Promise<CheckResult>
}

async function serverChecks(): Promise<Check[]> {
  if (!existsSync(path.join(ROOT, 'test', 'torture', 'server.ts'))) return []
  const server = await import('./server.js')
  const otlp = await import('./otlp.js')
  return [
    {name: 'server', run: () => server.checkServer({scale: 'full', seed})},
    {name: 'timing', run: () => server.checkTiming({httpSamples: 2000, samples: 20_000})},
    {name: 'otlp', run: () => otlp.checkOtlp({scale: 'full', seed})},
  ]
}

const checks: Check[] = [
  {name: 'permissions', run: () => checkPermissions({full: true})},
  {name: 'hostile-input', run: () => checkHostileInput({bigValueBytes: 10_000_000, full: true})},
  {name: 'leaks', run: () => checkLeaks({crashes: 20, full: true})},
  {name: 'hostile-files', run: () => checkHostileFiles({cliSample: 200, extremes: true, keepFailures: true, mutations: 10_000, seed, workers: 2})},
  {name: 'concurrency', run: () => checkConcurrency({full: true, keysEach: 50, processes: 8, raceOps: 40, raceWriters: 4, seed})},
  {name: 'concurrency', run: () => checkStaleTakeoverRace()},
  {name: 'concurrency', run: () => checkSynchronizedStorm({processes: 8, rounds: 300})},
  {name: 'concurrency', run: () => checkStaleLockStorm({processes: 8, rounds: 10})},
  {name: 'crash', run: () => checkCrash({kills: 1000, lanes: 4, naturalEvery: 10, seed})},
  {name: 'crash', run: () => checkSymlinkCrash(20)},
  ...(await serverChecks()),
  {name: 'redis', run: async () => (await import('./redis.js')).checkRedis({scale: 'full'})},
  {name: 'review-core', run: async () => (await import('./review-core.js')).checkReviewCore({full: true})},
  {name: 'review-config', run: async () => (await import('./review-config.js')).checkReviewConfig({full: true})},
  {name: 'review-server', run: async () => (await import('./review-server.js')).checkReviewServer({scale: 'full'})},
]

function machine(): string {
  const cpus = os.cpus()
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}`
}

function table(figures: Figure[]): string {
  const escape = (text: string) => text.replaceAll('|', '\\|')
  return ['| check | figure | result |', '|---|---|---|', ...figures.map((f) => `| ${escape(f.check)} | ${escape(f.figure)} | ${escape(f.value)} |`)].join('\n')
}

if (args.get('build') !== 'false' && !args.has('no-build')) {
  process.stderr.write('building (npm run build)...\n')
  execFileSync('npm', ['run', 'build'], {cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit']})
}

const figures: Figure[] = []
const failures: string[] = []
const skipped: string[] = []
const started = new Date()
for (const check of checks) {
  if (only && !only.includes(check.name)) continue
  process.stderr.write(`[${new Date().toISOString()}] ${check.name}...\n`)
  const t0 = Date.now()
  let result: CheckResult
  try {
    // eslint-disable-next-line no-await-in-loop -- checks run one after another: each loads both cores
    result = await check.run()
  } catch (error) {
    result = {failures: [`${check.name} crashed: ${(error as Error).stack}`], figures: [], skipped: []}
  }

  figures.push(...result.figures)
  failures.push(...result.failures.map((failure) => `[${check.name}] ${failure}`))
  skipped.push(...result.skipped.map((reason) => `[${check.name}] ${reason}`))
  process.stderr.write(`[${new Date().toISOString()}] ${check.name}: ${result.failures.length === 0 ? 'ok' : `${result.failures.length} FAILURES`} (${Math.round((Date.now() - t0) / 1000)} s)\n`)
}

const minutes = ((Date.now() - started.getTime()) / 60_000).toFixed(1)
const report = [
  `Torture run of ${started.toISOString()}, seed ${seed}, ${minutes} min`,
  `Machine: ${machine()}`,
  `Command: npm run torture -- ${[...args]
    .filter(([name]) => name !== 'markdown' && name !== 'seed')
    .map(([name, value]) => `--${name}${value === 'true' ? '' : `=${value}`} `)
    .join('')}--seed=${seed}`,
  '',
  table(figures),
  '',
  ...(skipped.length > 0 ? ['Skipped:', ...skipped.map((reason) => `- ${reason}`), ''] : []),
  failures.length === 0 ? 'No failures.' : `FAILURES (${failures.length}):\n${failures.map((failure) => `- ${failure}`).join('\n')}`,
].join('\n')
process.stdout.write(`${report}\n`)
const markdown = args.get('markdown')
if (markdown) writeFileSync(path.resolve(markdown), `${report}\n`)
process.exitCode = failures.length === 0 ? 0 : 1
