import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {COMMANDS} from '../../src/cli.js'
import {checkEnvironment, ENGINE_MINIMUM, ownCommandId} from '../../src/cli/execute.js'
import {ROOT} from '../helpers/cli.js'

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

describe('cli/execute checkEnvironment: the Node version warning oclif gave, without semver', () => {
  const pjson = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {engines: {node: string}}

  it('package.json engines.node is a minimum (>=x.y.z), the one form checkEnvironment reads', () => {
    assert.match(pjson.engines.node, ENGINE_MINIMUM)
  })

  const warnings = (nodeVersion: string, engines = '>=20.17.0'): string[] => {
    const seen: string[] = []
    const original = process.emitWarning
    process.emitWarning = ((warning: string | Error) => seen.push(String(warning))) as typeof process.emitWarning
    try {
      checkEnvironment({engines: {node: engines}, name: 'apm-server-keystore', oclif: {}, version: '0.1.0'}, nodeVersion)
    } finally {
      process.emitWarning = original
    }

    return seen
  }

  const table: Array<[string, boolean]> = [
    ['20.16.9', true],
    ['20.9.0', true],
    ['19.99.99', true],
    ['18.20.4', true],
    ['20.17.0', false],
    ['20.17.1', false],
    ['20.20.2', false],
    ['22.0.0', false],
    ['100.0.0', false],
  ]
  for (const [version, older] of table) {
    it(`Node ${version} ${older ? 'is warned' : 'is not warned'} for >=20.17.0`, () => {
      assert.deepEqual(warnings(version), older ? [`Node version must be >=20.17.0 to use this CLI. Current node version: ${version}`] : [])
    })
  }
})
