/**
 * Outside references in the same alternation: dotenvx (a Node secrets CLI) reading and writing one
 * value, and age (Go) decrypting a file as large as our 1,000-key keystore.
 */
import {existsSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {buildAge, buildDotenvx, cliEnv, fileSize, keyName, keystorePath, restoreKeystore} from '../lib/fixtures.js'
import {cleanEnv, cli, NODE_BASELINE, ROOT, timeSync} from '../lib/proc.js'

export const DOTENVX = path.join(ROOT, 'node_modules', '.bin', 'dotenvx')

export function peersAvailable() {
  const missing = []
  if (!existsSync(DOTENVX)) missing.push('dotenvx (node_modules/.bin/dotenvx: devDependency @dotenvx/dotenvx)')
  for (const tool of ['age', 'age-keygen']) {
    if (!['/usr/bin', '/usr/local/bin', '/bin'].some((dir) => existsSync(path.join(dir, tool)))) missing.push(`${tool} (Debian package age)`)
  }

  return missing
}

export function preparePeers(scratch, homes) {
  const dotenvxGet = path.join(scratch, 'dotenvx-get')
  const dotenvxSet = path.join(scratch, 'dotenvx-set')
  buildDotenvx(dotenvxGet, DOTENVX)
  const pristine = buildDotenvx(dotenvxSet, DOTENVX)
  const keystoreBytes = fileSize(keystorePath(homes.plain1000))
  const age = buildAge(path.join(scratch, 'age'), keystoreBytes)
  return {age, dotenvxGet, dotenvxSet, keystoreBytes, pristine}
}

export function peerGroup(homes, peers, {scale = 1} = {}) {
  const value = 'v'.repeat(32)
  const shown = keyName(500)
  return {
    comparisons: [
      {base: 'node', case: 'show'},
      {base: 'node', case: 'dotenvxGet'},
      {base: 'node', case: 'dotenvxSet'},
      {base: 'node', case: 'age'},
      {base: 'dotenvxGet', case: 'list1000', target: {op: '<', ratio: 1}},
      {base: 'dotenvxGet', case: 'show'},
      {base: 'dotenvxSet', case: 'add10'},
      {base: 'age', case: 'show'},
    ],
    id: 'peers',
    runs: Math.max(3, Math.round(11 * scale)),
    series: [
      {id: 'node', label: '`node -e 0`', measure: () => timeSync(NODE_BASELINE).ms, unit: 'ms'},
      {
        id: 'list1000',
        label: '`keystore list`, passwordless, 1,000 keys',
        measure: () => timeSync(cli(['keystore', 'list'], {cwd: homes.plain1000, env: cliEnv()})).ms,
        unit: 'ms',
      },
      {
        id: 'show',
        label: '`keystore show KEY`, passwordless, 1,000 keys',
        measure: () => timeSync(cli(['keystore', 'show', shown], {check: expectBytes(32), cwd: homes.plain1000, env: cliEnv()})).ms,
        unit: 'ms',
      },
      {
        id: 'add10',
        label: '`keystore add KEY --stdin`, passwordless, 10 keys',
        measure: () => timeSync(cli(['keystore', 'add', keyName(99_999), '--stdin'], {cwd: homes.peerAdd, env: cliEnv(), input: value})).ms,
        setup: () => restoreKeystore(keystorePath(homes.plain10), homes.peerAdd),
        unit: 'ms',
      },
      {
        id: 'dotenvxGet',
        label: '`dotenvx get KEY -f .env` (one encrypted value)',
        measure: () => timeSync({args: ['get', keyName(1), '-f', '.env'], check: expectBytes(32, 1), cmd: DOTENVX, cwd: peers.dotenvxGet, env: cleanEnv()}).ms,
        unit: 'ms',
      },
      {
        id: 'dotenvxSet',
        label: '`dotenvx set KEY value -f .env` (encrypts; .env restored before each run)',
        measure: () => timeSync({args: ['set', keyName(99_999), value, '-f', '.env'], cmd: DOTENVX, cwd: peers.dotenvxSet, env: cleanEnv()}).ms,
        setup: () => writeFileSync(path.join(peers.dotenvxSet, '.env'), peers.pristine.env),
        unit: 'ms',
      },
      {
        id: 'age',
        label: `\`age -d -i key.txt\` of ${peers.keystoreBytes.toLocaleString('en-US')} bytes (the 1,000-key keystore's size)`,
        measure: () => timeSync({args: ['-d', '-i', peers.age.identity, peers.age.encrypted], check: expectBytes(peers.keystoreBytes), cmd: 'age', env: cleanEnv()}).ms,
        unit: 'ms',
      },
    ],
    title: 'peers: dotenvx and age, next to `show`, `list` and `add`',
  }
}

function expectBytes(count, newlines = 0) {
  return (result) => {
    if (result.stdout.length !== count + newlines) throw new Error(`expected ${count} bytes of output, got ${result.stdout.length}`)
  }
}
