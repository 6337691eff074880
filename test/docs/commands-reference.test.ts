import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {ROOT} from '../helpers/cli.js'

describe('docs/commands.md', () => {
  it('is what `oclif readme` makes from the commands today (run `npm run docs` after changing a command)', function () {
    this.timeout(60_000)
    const oclif = path.join(ROOT, 'node_modules', '.bin', 'oclif')
    const generated = execFileSync(oclif, ['readme', '--readme-path', 'docs/commands.md', '--no-aliases', '--dry-run'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: {...process.env, OCLIF_SKIP_UPDATE_CHECK: '1'},
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    // --dry-run prints a status line first and console.log's newline last.
    const expected = generated.slice(generated.indexOf('\n') + 1).replace(/\n$/, '')
    assert.equal(readFileSync(path.join(ROOT, 'docs', 'commands.md'), 'utf8'), expected)
  })
})
