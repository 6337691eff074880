/**
 * The size rules (STYLE.md, habit 13), through scripts/check-sizes.js as a developer runs it: no
 * function or method in src/ over 80 lines, no command file over 120 lines. The checker is also run on
 * a tree made to break each rule, so a checker that never fails would fail here.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {makeTempDir, ROOT} from '../helpers/cli.js'

const CHECKER = path.join(ROOT, 'scripts', 'check-sizes.js')

function check(...args: string[]) {
  const result = spawnSync(process.execPath, [CHECKER, ...args], {cwd: ROOT, encoding: 'utf8'})
  return {code: result.status, stderr: result.stderr, stdout: result.stdout}
}

/** A function of exactly `lines` lines. */
function functionOf(name: string, lines: number): string {
  return [`export function ${name}(): number {`, '  let n = 0', ...Array.from({length: lines - 4}, () => '  n++'), '  return n', '}'].join('\n')
}

describe('structure: sizes (scripts/check-sizes.js)', () => {
  it('src/ holds to the rules', () => {
    assert.deepEqual(check(), {code: 0, stderr: '', stdout: ''})
  })

  it('reports a function of 81 lines, a method of 81 lines and a command file of 121 lines, and exits 1', () => {
    const tmp = makeTempDir('apm-sizes-test-')
    try {
      mkdirSync(path.join(tmp.dir, 'src', 'server'), {recursive: true})
      mkdirSync(path.join(tmp.dir, 'src', 'commands'), {recursive: true})
      // 80 lines is within the rule; 81 is not. Inner functions count towards the one holding them.
      writeFileSync(path.join(tmp.dir, 'src', 'server', 'long.ts'), `${functionOf('fits', 80)}\n\n${functionOf('tooLong', 81)}\n`)
      const method = functionOf('run', 81).replace('export function', '  async').replaceAll('\n', '\n  ')
      const command = `export default class Cmd {\n${method}\n}\n${'// filler\n'.repeat(121 - 83)}`
      writeFileSync(path.join(tmp.dir, 'src', 'commands', 'cmd.ts'), command)
      const result = check('--top', '2', tmp.dir)
      assert.equal(result.code, 1)
      assert.equal(result.stdout, '  81  Cmd.run  src/commands/cmd.ts:2\n  81  tooLong  src/server/long.ts:82\n')
      assert.equal(
        result.stderr,
        [
          'error: src/commands/cmd.ts:2: Cmd.run is 81 lines; at most 80',
          'error: src/commands/cmd.ts: the command file is 121 lines; at most 120',
          'error: src/server/long.ts:82: tooLong is 81 lines; at most 80',
          '',
        ].join('\n'),
      )
    } finally {
      tmp.cleanup()
    }
  })
})
