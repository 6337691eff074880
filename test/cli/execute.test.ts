import assert from 'node:assert/strict'

import {COMMANDS} from '../../src/cli.js'
import {ownCommandId} from '../../src/cli/execute.js'

describe('cli/execute ownCommandId: which runs take the light path (no help or autocomplete plugins)', () => {
  const ids = new Set(Object.keys(COMMANDS))
  const table: Array<[string[], string | undefined]> = [
    [['keystore', 'list'], 'keystore:list'],
    [['keystore:list', '--json'], 'keystore:list'],
    [['keystore', 'add', 'A', 'B', '--stdin'], 'keystore:add'],
    [['run', '-c', 'apm-server.yml'], 'run'],
    [['test', 'config'], 'test:config'],
    [['agent-config', 'node'], 'agent-config'],
    [['keystore'], undefined], // a topic: help
    [['keystore', 'lst'], undefined], // a typo: oclif's suggestion
    [['help', 'keystore'], undefined],
    [['autocomplete', 'bash'], undefined],
    [['--path.home', '/x', 'keystore', 'list'], undefined], // a flag first: the full path decides
    [[], undefined],
  ]
  for (const [args, expected] of table) {
    it(`${JSON.stringify(args)} -> ${expected ?? 'the full oclif path'}`, () => {
      assert.equal(ownCommandId(args, ids), expected)
    })
  }

  it('finds the command among 10,000 key names (the one-add of a provisioning script)', () => {
    const names = Array.from({length: 10_000}, (_, i) => `KEY_${i}`)
    // (Its speed is in the benchmark: the search was quadratic and cost 2 s of such an add's 3 s.)
    assert.equal(ownCommandId(['keystore', 'add', ...names, '--stdin'], ids), 'keystore:add')
    assert.equal(ownCommandId(['keystore', ...names], ids), undefined)
  })
})
