/**
 * CLI cases: each group alternates its commands with `node -e 0` (Node's own start, the floor) in the
 * same run. Fixtures are built once per run by `prepareCli`.
 */
import {closeSync, copyFileSync, mkdirSync, openSync, writeFileSync, writeSync} from 'node:fs'
import path from 'node:path'

import {buildKeystore, BENCH_PASSWORD, cliEnv, keyName, keyNames, keystorePath, restoreKeystore, valueLines} from '../lib/fixtures.js'
import {cli, NODE, NODE_BASELINE, ROOT, runSync, timeSync} from '../lib/proc.js'

export const SIZES = [10, 1000, 10_000]

/** The keystores each group reads. */
const NEEDS = {
  add: ['plain10', 'plain1000', 'plain10000'],
  bulk: ['empty'],
  fleet: ['empty', 'plain10000'],
  list: ['plain10', 'plain1000', 'plain10000'],
  peers: ['plain10', 'plain1000'],
  pwlist: ['password10', 'password1000', 'password10000'],
  run: ['plain10'],
  version: [],
}

/** Builds the keystores the wanted groups read (all by default); returns every home. */
export function prepareCli(scratch, log, groupIds = Object.keys(NEEDS)) {
  const needed = new Set(groupIds.flatMap((id) => NEEDS[id] ?? []))
  const homes = {}
  for (const size of SIZES) {
    homes[`plain${size}`] = path.join(scratch, `plain-${size}`)
    homes[`password${size}`] = path.join(scratch, `password-${size}`)
    if (needed.has(`plain${size}`)) {
      log(`  passwordless keystore of ${size} keys`)
      buildKeystore(homes[`plain${size}`], size)
    }

    if (needed.has(`password${size}`)) {
      log(`  password keystore of ${size} keys (default argon2id)`)
      buildKeystore(homes[`password${size}`], size, {password: BENCH_PASSWORD})
    }
  }

  homes.empty = path.join(scratch, 'empty')
  if (needed.has('empty')) buildKeystore(homes.empty, 0)
  for (const name of ['add10', 'add1000', 'add10000', 'bulk', 'peerAdd', 'sync', 'importer']) {
    homes[name] = path.join(scratch, `work-${name}`)
    mkdirSync(homes[name], {recursive: true})
  }

  if (needed.has('plain10000') && groupIds.includes('fleet')) prepareFleet(scratch, homes, log)
  if (groupIds.includes('run')) prepareMasking(scratch, homes, log)
  return homes
}

/** Bytes of child output the masking case reads: 100 MB. */
export const MASKED_BYTES = 100 * 1000 * 1000

/**
 * The masking case's fixtures: a keystore of five tokens and a 100 MB text file of base64 lines (every
 * byte in the tokens' alphabet: the automaton never rests at its root) holding one of the tokens every
 * 64 KiB or so, for `keystore run -- cat` to print.
 */
function prepareMasking(scratch, homes, log) {
  log('  a keystore of 5 tokens and 100 MB of output that holds them')
  homes.mask = path.join(scratch, 'mask')
  buildKeystore(homes.mask, 5)
  const tokens = keyNames(5).map((name) => runSync(cli(['keystore', 'show', name], {cwd: homes.mask, env: cliEnv()})).stdout.toString('utf8'))
  homes.maskOutput = path.join(scratch, 'mask-output.txt')
  // ~64 KiB of base64 in 76-character lines, then a line holding a token; repeated, cut at 100 MB.
  const text = valueLines(2000).replaceAll('\n', '').match(/.{1,76}/g).join('\n')
  const blocks = tokens.map((token) => Buffer.from(`${text}\n${token}\n`))
  const fd = openSync(homes.maskOutput, 'w')
  for (let written = 0, i = 0; written < MASKED_BYTES; i++) written += writeSync(fd, blocks[i % 5], 0, Math.min(blocks[i % 5].length, MASKED_BYTES - written))
  closeSync(fd)
}

/**
 * The fleet group's fixtures: a directory of 10,000 files (one per key, as a mounted Secret), an importing
 * host (a keystore with its key pair and no keys, restored before each run) and the bundle of the 10,000
 * keys sealed to it.
 */
function prepareFleet(scratch, homes, log) {
  log('  a directory of 10,000 files, a host key, a bundle of 10,000 keys')
  homes.syncSource = path.join(scratch, 'sync-source')
  mkdirSync(homes.syncSource, {recursive: true})
  const values = valueLines(10_000).split('\n')
  keyNames(10_000).forEach((name, i) => writeFileSync(path.join(homes.syncSource, name), values[i]))
  buildKeystore(homes.importer, 0)
  homes.recipient = runSync(cli(['keystore', 'recipient'], {cwd: homes.importer, env: cliEnv()})).stdout.toString('utf8').trim()
  homes.importerSource = path.join(scratch, 'importer.keystore')
  copyFileSync(keystorePath(homes.importer), homes.importerSource)
  homes.bundle = path.join(scratch, 'fleet.bundle')
  runSync(cli(['keystore', 'seal', '--to', homes.recipient, '--out', homes.bundle], {cwd: homes.plain10000, env: cliEnv()}))
}

const node = {id: 'node', label: '`node -e 0`', measure: () => timeSync(NODE_BASELINE).ms, unit: 'ms'}

function expectLines(count) {
  return (result) => {
    const lines = result.stdout.toString('utf8').split('\n').filter(Boolean).length
    if (lines !== count) throw new Error(`expected ${count} lines of output, got ${lines}`)
  }
}

function list(home, count, options = {}) {
  return cli(['keystore', 'list'], {check: expectLines(count), cwd: home, env: cliEnv(options)})
}

/**
 * Groups of CLI cases; `runs` are rounds of the alternation. `baseline`: another built checkout whose
 * `keystore list` of 1,000 keys is measured in the same rounds (bench/run.js --baseline).
 */
export function cliGroups(homes, {baseline, scale = 1} = {}) {
  const runs = (n) => Math.max(3, Math.round(n * scale))
  const sourceAdd10 = keystorePath(homes.plain10)
  const sourceAdd1000 = keystorePath(homes.plain1000)
  const sourceAdd10000 = keystorePath(homes.plain10000)
  const newKey = keyName(99_999)
  const bulkNames = keyNames(10_000)
  const bulkInput = valueLines(10_000)
  const kdfScript = path.join(ROOT, 'bench', 'lib', 'kdf-once.js')

  return [
    {
      comparisons: [{base: 'node', case: 'version'}],
      id: 'version',
      runs: runs(15),
      series: [node, {id: 'version', label: '`apm-server --version`', measure: () => timeSync(cli(['--version'])).ms, unit: 'ms'}],
      title: '`--version`',
    },
    {
      comparisons: [
        {base: 'node', case: 'list10'},
        // issue 17: 1.75x (the issue 5 target was 1.6x)
        {base: 'node', case: 'list1000', target: {op: '<=', ratio: 1.75}},
        {base: 'node', case: 'list10000'},
        ...(baseline ? [{base: 'baselineList1000', case: 'list1000'}] : []),
      ],
      id: 'list',
      runs: runs(15),
      series: [
        node,
        ...SIZES.map((size) => ({
          id: `list${size}`,
          label: `\`keystore list\`, passwordless, ${size.toLocaleString('en-US')} keys`,
          measure: () => timeSync(list(homes[`plain${size}`], size)).ms,
          unit: 'ms',
        })),
        ...(baseline
          ? [
              {
                id: 'baselineList1000',
                label: `\`keystore list\`, passwordless, 1,000 keys, baseline (${baseline})`,
                measure: () => timeSync({...list(homes.plain1000, 1000), args: [path.join(baseline, 'bin', 'run.js'), 'keystore', 'list']}).ms,
                unit: 'ms',
              },
            ]
          : []),
      ],
      title: '`keystore list`, passwordless keystore',
    },
    {
      comparisons: [
        {base: 'node', case: 'kdfProcess'},
        ...SIZES.map((size) => ({base: 'node', case: `pwlist${size}`})),
        ...SIZES.map((size) => ({base: 'nodeKdf', case: `pwlist${size}`, target: size === 1000 ? {op: '<=', ratio: 1.6} : undefined})),
      ],
      derived: [{from: (round) => round.node + round.kdf, id: 'nodeKdf', label: '`node -e 0` + one KDF (per round: node\'s time plus the in-process KDF time)', unit: 'ms'}],
      extra: [{id: 'kdf', label: 'one argon2id, 64 MiB, t=3, p=4 (in process)', unit: 'ms'}],
      id: 'pwlist',
      runs: runs(9),
      series: [
        node,
        {
          id: 'kdfProcess',
          label: '`node kdf-once.js` (whole process: node + argon2 + one KDF)',
          measure() {
            const {ms, stdout} = timeSync({args: [kdfScript], cmd: NODE})
            return {extra: {kdf: Number(stdout.toString('utf8'))}, value: ms}
          },
          unit: 'ms',
        },
        ...SIZES.map((size) => ({
          id: `pwlist${size}`,
          label: `\`keystore list\`, password, ${size.toLocaleString('en-US')} keys`,
          measure: () => timeSync(list(homes[`password${size}`], size, {password: BENCH_PASSWORD})).ms,
          unit: 'ms',
        })),
      ],
      title: '`keystore list`, password keystore (default argon2id: 64 MiB, t=3, p=4)',
    },
    {
      comparisons: [
        {base: 'node', case: 'add10'},
        // issue 17: Kibana's keystore CLI adds without fsync or a lock; ours does both
        {base: 'node', case: 'add1000', target: {op: '<=', ratio: 2.2}},
        {base: 'node', case: 'add10000'},
        {base: 'add10', case: 'add10000', target: {op: '<=', ratio: 1.5}},
      ],
      id: 'add',
      runs: runs(15),
      series: [
        node,
        {
          id: 'add10',
          label: '`keystore add` of one key (`--stdin`) to 10 keys',
          measure: () => timeSync(cli(['keystore', 'add', newKey, '--stdin'], {cwd: homes.add10, env: cliEnv(), input: 'v'.repeat(32)})).ms,
          setup: () => restoreKeystore(sourceAdd10, homes.add10),
          unit: 'ms',
        },
        {
          id: 'add1000',
          label: '`keystore add` of one key (`--stdin`) to 1,000 keys',
          measure: () => timeSync(cli(['keystore', 'add', newKey, '--stdin'], {cwd: homes.add1000, env: cliEnv(), input: 'v'.repeat(32)})).ms,
          setup: () => restoreKeystore(sourceAdd1000, homes.add1000),
          unit: 'ms',
        },
        {
          id: 'add10000',
          label: '`keystore add` of one key (`--stdin`) to 10,000 keys',
          measure: () => timeSync(cli(['keystore', 'add', newKey, '--stdin'], {cwd: homes.add10000, env: cliEnv(), input: 'v'.repeat(32)})).ms,
          setup: () => restoreKeystore(sourceAdd10000, homes.add10000),
          unit: 'ms',
        },
      ],
      title: '`keystore add` of one key, passwordless keystore (restored before each run, untimed)',
    },
    {
      absolute: [{case: 'bulk', target: {op: '<=', value: 2000}}],
      comparisons: [{base: 'node', case: 'bulk'}],
      id: 'bulk',
      runs: runs(7),
      series: [
        node,
        {
          id: 'bulk',
          label: 'one `keystore add` of 10,000 keys through `--stdin` (one line each), to an empty keystore',
          measure: () => timeSync(cli(['keystore', 'add', ...bulkNames, '--stdin'], {cwd: homes.bulk, env: cliEnv(), input: bulkInput})).ms,
          setup: () => restoreKeystore(keystorePath(homes.empty), homes.bulk),
          unit: 'ms',
        },
      ],
      title: 'one `add` of 10,000 keys',
    },
    ...(homes.bundle ? [fleetGroup(homes, runs)] : []),
    ...(homes.maskOutput ? [runGroup(homes, runs)] : []),
  ]
}

/** Issue 16: `keystore run -- true` at most 1.2x `keystore list`; masking 100 MB of output at 100 MB/s or more (1 s, start included). */
function runGroup(homes, runs) {
  const masked = (mask) => cli(['keystore', 'run', ...(mask ? [] : ['--no-mask']), '--', 'cat', homes.maskOutput], {check: mask ? expectMasked : expectBytes(MASKED_BYTES), cwd: homes.mask, env: cliEnv()})
  return {
    absolute: [{case: 'mask100', target: {op: '<=', value: 1000}}],
    comparisons: [
      {base: 'list10', case: 'runTrue', target: {op: '<=', ratio: 1.2}},
      {base: 'node', case: 'runTrue'},
      {base: 'cat100', case: 'mask100'},
    ],
    derived: [{from: (round) => MASKED_BYTES / 1e6 / (round.mask100 / 1000), id: 'maskRate', label: 'masking throughput, start included (100 MB / the masked run\'s time)', unit: 'MB/s'}],
    id: 'run',
    runs: runs(9),
    series: [
      node,
      {id: 'list10', label: '`keystore list`, passwordless, 10 keys', measure: () => timeSync(list(homes.plain10, 10)).ms, unit: 'ms'},
      {id: 'runTrue', label: '`keystore run -- true`, the same keystore (10 keys as variables)', measure: () => timeSync(cli(['keystore', 'run', '--', 'true'], {cwd: homes.plain10, env: cliEnv()})).ms, unit: 'ms'},
      {id: 'cat100', label: '`cat` of the 100 MB file (no apm-server: the floor)', measure: () => timeSync({args: [homes.maskOutput], check: expectBytes(MASKED_BYTES), cmd: 'cat'}).ms, unit: 'ms'},
      {id: 'noMask100', label: '`keystore run --no-mask -- cat` of it (5 keys as variables)', measure: () => timeSync(masked(false)).ms, unit: 'ms'},
      {id: 'mask100', label: '`keystore run -- cat` of it, masked: 100 MB holding the 5 values ~1,500 times', measure: () => timeSync(masked(true)).ms, unit: 'ms'},
    ],
    title: '`keystore run`: its start against `keystore list`, and masking 100 MB of output',
  }
}

function expectBytes(count) {
  return (result) => {
    if (result.stdout.length !== count) throw new Error(`expected ${count} bytes of output, got ${result.stdout.length}`)
  }
}

/** The masked output: every token a mask (~1,500 of them), and no more than 100 MB. */
function expectMasked(result) {
  const masks = result.stdout.toString('latin1').split('<concealed by apm-server>').length - 1
  if (masks < 1000 || result.stdout.length > MASKED_BYTES) throw new Error(`expected ~1,500 masks in at most ${MASKED_BYTES} bytes, got ${masks} in ${result.stdout.length}`)
}

/** Issue 13: `sync` of 10,000 files, `seal` of 10,000 keys and `import` of them, each at most 2 s. */
function fleetGroup(homes, runs) {
  const outFile = path.join(homes.importer, 'sealed.bundle')
  return {
    absolute: ['sync10000', 'seal10000', 'import10000'].map((id) => ({case: id, target: {op: '<=', value: 2000}})),
    comparisons: [{base: 'node', case: 'sync10000'}, {base: 'node', case: 'seal10000'}, {base: 'node', case: 'import10000'}],
    id: 'fleet',
    runs: runs(7),
    series: [
      node,
      {
        id: 'sync10000',
        label: '`keystore sync` of a directory of 10,000 files into an empty keystore',
        measure: () => timeSync(cli(['keystore', 'sync', homes.syncSource], {check: expectLines(2), cwd: homes.sync, env: cliEnv()})).ms,
        setup: () => restoreKeystore(keystorePath(homes.empty), homes.sync),
        unit: 'ms',
      },
      {
        id: 'seal10000',
        label: '`keystore seal` of 10,000 keys to one recipient (`--out`)',
        measure: () => timeSync(cli(['keystore', 'seal', '--to', homes.recipient, '--out', outFile], {cwd: homes.plain10000, env: cliEnv()})).ms,
        unit: 'ms',
      },
      {
        id: 'import10000',
        label: '`keystore import` of a bundle of 10,000 keys into a keystore without them',
        measure: () => timeSync(cli(['keystore', 'import', homes.bundle], {check: expectLines(1), cwd: homes.importer, env: cliEnv()})).ms,
        setup: () => restoreKeystore(homes.importerSource, homes.importer),
        unit: 'ms',
      },
    ],
    title: '`sync`, `seal` and `import` of 10,000 keys (passwordless keystores; each mutated one restored before each run, untimed)',
  }
}
