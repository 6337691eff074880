#!/usr/bin/env node
/**
 * `npm run bench`: every benchmark of issue 5, side by side, written to bench/RESULTS.md.
 *
 *   node bench/run.js [--scale=F] [--only=id,id] [--no-server] [--no-hyperfine] [--no-snapshot] [--out=FILE]
 *                     [--baseline=DIR]
 *
 * --scale multiplies the rounds (0.3 for a quick look); --only runs some groups (version, list, pwlist,
 * add, bulk, fleet, run, peers, server-start, intake, memory, otlp, redis; intake-stages, the intake decomposition, runs only
 * when named). A partial run (--scale or --only) writes
 * bench/tmp/RESULTS.partial.md unless --out says otherwise, so RESULTS.md always holds a full run.
 * The CLI measured is a snapshot of the build taken at the start (lib/snapshot.js), as `npm test`
 * rebuilds dist/; --no-snapshot runs the working tree's build in place. --baseline names another built
 * checkout (its bin/, dist/ and manifest, e.g. main's): the list group then also measures its `keystore
 * list` of 1,000 keys, the intake group its `apm-server run` with Bearer auth, and the redis group its
 * `apm-server run` with output.redis, in the same rounds, to compare two versions side by side.
 */
import {existsSync, mkdirSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {cliGroups, prepareCli} from './cases/cli.js'
import {peerGroup, peersAvailable, preparePeers} from './cases/peers.js'
import {prepareServer, serverGroups, serverNotMeasured} from './cases/server.js'
import {runAlternating} from './lib/alternate.js'
import {makeScratch, SCRATCH} from './lib/fixtures.js'
import {hyperfineCrossCheck} from './lib/hyperfine.js'
import {buildStamp, hyperfineVersion, loadAverage, machineInfo} from './lib/machine.js'
import {cleanEnv, ROOT, useCliRoot} from './lib/proc.js'
import {snapshotBuild} from './lib/snapshot.js'
import {evaluate, notMeasuredGroup, renderResults} from './lib/report.js'

const CLI_GROUPS = ['version', 'list', 'pwlist', 'add', 'bulk', 'fleet', 'run', 'peers']
const SERVER_GROUPS = ['server-start', 'intake', 'intake-stages', 'memory', 'otlp', 'redis']

const METHOD = [
  '## Method',
  '',
  '- Every figure is the median of repeated runs. The series of a group are measured in strict alternation,',
  '  each round starting one series later (A B C, B C A, C A B ...) so that no series always follows the same',
  '  one, one process at a time, after one untimed warm-up round; each ratio compares two',
  '  medians of the same run; targets are judged on it. The median of the per-round ratios (A/B of one',
  '  round) is shown next to it: it cancels load that changes between rounds, so where the two disagree',
  '  about a target the run was noisy. p25 – p75 shows how noisy a median is.',
  '- Whole-process times: `spawnSync` from the harness, `process.hrtime` around it (spawn to exit, output read',
  '  through pipes). `node -e 0` is measured the same way in every group, so spawn cost is in both sides.',
  '- The CLI is the built one (`node bin/run.js`, with `oclif.manifest.json`), run in a clean environment',
  '  (no `APM_SERVER_*`/`BEAT_*`); password keystores use the default argon2id cost (64 MiB, t=3, p=4:',
  '  `APM_SERVER_KEYSTORE_KDF_PARAMS` is unset), the password comes from `APM_SERVER_KEYSTORE_PASSWORD`.',
  '- Keystores hold keys named `BENCH_KEY_00001` ... with random 32-character values. Mutating cases restore',
  '  their keystore (or .env) before each run, untimed.',
  '- The machine may be shared with other work; the load average is recorded above. Medians and alternation',
  '  absorb most of it; compare ratios, not absolute times, across runs.',
]

function parseArgs(argv) {
  const options = {baseline: undefined, hyperfine: true, only: undefined, out: undefined, scale: 1, server: true, snapshot: true}
  for (const arg of argv) {
    if (arg.startsWith('--scale=')) options.scale = Number(arg.slice(8))
    else if (arg.startsWith('--only=')) options.only = new Set(arg.slice(7).split(','))
    else if (arg.startsWith('--out=')) options.out = path.resolve(arg.slice(6))
    else if (arg.startsWith('--baseline=')) options.baseline = path.resolve(arg.slice(11))
    else if (arg === '--no-server') options.server = false
    else if (arg === '--no-hyperfine') options.hyperfine = false
    else if (arg === '--no-snapshot') options.snapshot = false
    else {
      process.stderr.write(`error: unknown argument ${arg}; see the comment at the top of bench/run.js\n`)
      process.exit(2)
    }
  }

  if (!(options.scale > 0)) {
    process.stderr.write('error: --scale must be a positive number, e.g. --scale=0.3\n')
    process.exit(2)
  }

  return options
}

const began = Date.now()
const log = (line) => process.stderr.write(`[${String(Math.round((Date.now() - began) / 1000)).padStart(4)} s] ${line}\n`)

async function main() {
  const options = parseArgs(process.argv.slice(2))
  const partial = options.scale !== 1 || options.only !== undefined || !options.server || options.baseline !== undefined
  const out = options.out ?? (partial ? path.join(SCRATCH, 'RESULTS.partial.md') : path.join(ROOT, 'bench', 'RESULTS.md'))
  const wanted = (id) => !options.only || options.only.has(id)

  // With a snapshot, a build that is being rewritten right now is waited for instead (lib/snapshot.js).
  if (!options.snapshot && (!existsSync(path.join(ROOT, 'dist')) || !existsSync(path.join(ROOT, 'oclif.manifest.json')))) {
    log('error: the CLI is not built (dist/ or oclif.manifest.json missing); run "npm run build" first')
    process.exit(1)
  }

  const hyperfine = hyperfineVersion()
  if (!hyperfine) log('warning: hyperfine not found; the cross-check is skipped (apt-get install hyperfine). The Node harness measures everything else.')
  const missingPeers = wanted('peers') ? peersAvailable() : []
  if (missingPeers.length > 0) {
    log(`error: peers missing: ${missingPeers.join(', ')}; install them (npm ci for dotenvx, apt-get install age)`)
    process.exit(1)
  }

  const startedAt = new Date()
  const stampBefore = buildStamp()
  const loadBefore = loadAverage()
  const scratch = makeScratch()
  const cleanup = () => rmSync(scratch, {force: true, recursive: true})
  process.once('SIGINT', () => {
    cleanup()
    process.exit(130)
  })

  const groups = []
  const notMeasured = []
  let crossCheck
  let build = `dist/ in place, built ${new Date(stampBefore).toISOString().replace(/\.\d+Z$/, 'Z')}`
  const measure = async (group) => {
    log(`${group.id}: ${group.title}`)
    try {
      if (group.before) await group.before()
      try {
        const result = await runAlternating(group, log)
        groups.push({group, result, rows: evaluate(group, result.stats, result.samples)})
      } finally {
        if (group.after) await group.after()
      }
    } catch (error) {
      // One broken case must not cost the others: it is reported as not measured, with the reason.
      log(`  ${group.id} failed: ${error.message}`)
      notMeasured.push(notMeasuredGroup(group, `failed: ${error.message.split('\n')[0].slice(0, 300)}`))
    }
  }

  try {
    if (options.snapshot) {
      log('snapshot of the build')
      const snapshot = await snapshotBuild(scratch, log)
      useCliRoot(snapshot.dir)
      build = `snapshot of dist/ built ${new Date(snapshot.stamp).toISOString().replace(/\.\d+Z$/, 'Z')}, taken at the start (bin/, dist/, manifest copied; node_modules hard-linked)`
    }

    if (CLI_GROUPS.some(wanted)) {
      log(`building fixtures in ${path.relative(ROOT, scratch)}`)
      const homes = prepareCli(scratch, log, CLI_GROUPS.filter(wanted))
      const planned = cliGroups(homes, {baseline: options.baseline, scale: options.scale})
      if (wanted('peers')) planned.push(peerGroup(homes, preparePeers(scratch, homes), {scale: options.scale}))
      // eslint-disable-next-line no-await-in-loop -- groups run one after another
      for (const group of planned.filter((candidate) => wanted(candidate.id))) await measure(group)
      if (options.hyperfine && hyperfine && wanted('list')) {
        log('hyperfine cross-check')
        crossCheck = hyperfineCrossCheck(homes.plain1000, cleanEnv({APM_SERVER_KEYSTORE_KDF_PARAMS: undefined}))
      }
    }

    if (options.server && SERVER_GROUPS.some(wanted)) {
      log('server: fixtures')
      const server = await prepareServer(scratch, log)
      if (server.reason) {
        log(`  ${server.reason}`)
        notMeasured.push(...serverNotMeasured(server.reason).filter((row) => wanted(row.id)))
      } else {
        // eslint-disable-next-line no-await-in-loop -- groups run one after another
        // An optional group (the intake decomposition) runs only when --only names it.
        for (const group of serverGroups(server, {baseline: options.baseline, scale: options.scale}).filter((candidate) => (candidate.optional ? options.only?.has(candidate.id) : wanted(candidate.id)))) await measure(group)
      }
    }
  } finally {
    cleanup()
  }

  const rebuilt = !options.snapshot && buildStamp() !== stampBefore
  if (rebuilt) log('warning: dist/ or oclif.manifest.json changed during the run (a rebuild): the figures mix two builds; run again')
  const markdown = renderResults({
    build,
    buildWarning: rebuilt ? 'Warning: the build (dist/, oclif.manifest.json) changed during this run, so its figures mix two builds. Run it again.' : undefined,
    command: `node bench/run.js${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
    crossCheck,
    durationS: (Date.now() - startedAt.getTime()) / 1000,
    groups,
    hyperfine,
    loadAfter: loadAverage(),
    loadBefore,
    machine: machineInfo(),
    method: METHOD,
    notMeasured,
    startedAt: startedAt.toISOString().replace(/\.\d+Z$/, 'Z'),
  })
  mkdirSync(path.dirname(out), {recursive: true})
  writeFileSync(out, markdown)
  log(`wrote ${path.relative(ROOT, out)}`)
  const failed = groups.flatMap(({rows}) => rows).filter((row) => row.met === false).length
  log(`${failed === 0 ? 'every measured target met' : `${failed} target(s) not met`}; see the table in ${path.relative(ROOT, out)}`)
}

try {
  await main()
} catch (error) {
  log(`error: ${error.message}`)
  log('nothing was written; if the CLI failed, check that "npm run build" succeeds and that no rebuild is running')
  process.exitCode = 1
}
