import assert from 'node:assert/strict'
import {readdirSync} from 'node:fs'
import path from 'node:path'

import {COMMANDS} from '../../src/cli.js'
import {ROOT} from '../helpers/cli.js'

function commandFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, {withFileTypes: true}).flatMap((entry) =>
    entry.isDirectory()
      ? commandFiles(path.join(dir, entry.name), `${prefix}${entry.name}:`)
      : entry.name.endsWith('.ts')
        ? [`${prefix}${entry.name.slice(0, -3)}`]
        : [],
  )
}

describe('src/cli.ts COMMANDS', () => {
  it('lists every file in src/commands under its oclif id, and nothing else', () => {
    assert.deepEqual(Object.keys(COMMANDS).sort(), commandFiles(path.join(ROOT, 'src', 'commands')).sort())
  })
})
