/**
 * A cross-check of one headline figure with hyperfine (if installed). hyperfine runs each command's runs
 * back to back rather than alternating, so it checks the Node harness; it does not replace it.
 */
import {spawnSync} from 'node:child_process'
import {readFileSync, rmSync} from 'node:fs'
import path from 'node:path'

import {BIN, NODE} from './proc.js'

export function hyperfineCrossCheck(home, env) {
  const json = path.join(home, 'hyperfine.json')
  const commands = [`${NODE} -e 0`, `${NODE} ${BIN} keystore list`]
  const args = ['-N', '--warmup', '2', '--runs', '15', '--export-json', json, ...commands]
  const result = spawnSync('hyperfine', args, {cwd: home, encoding: 'utf8', env})
  if (result.status !== 0) return [`hyperfine failed (${result.status ?? result.signal}): ${(result.stderr ?? '').trim().split('\n').at(-1)}`]
  const {results} = JSON.parse(readFileSync(json, 'utf8'))
  rmSync(json, {force: true})
  const [node, list] = results
  const ms = (seconds) => `${(seconds * 1000).toFixed(0)} ms`
  return [
    '`hyperfine -N --warmup 2 --runs 15` in the 1,000-key passwordless keystore\'s directory (not alternating:',
    'all runs of one command, then the other):',
    '',
    '| command | median | mean ± σ |',
    '|---|---|---|',
    `| \`node -e 0\` | ${ms(node.median)} | ${ms(node.mean)} ± ${ms(node.stddev)} |`,
    `| \`apm-server keystore list\` (1,000 keys) | ${ms(list.median)} | ${ms(list.mean)} ± ${ms(list.stddev)} |`,
    '',
    `Ratio of medians: ${(list.median / node.median).toFixed(2)}x.`,
  ]
}
