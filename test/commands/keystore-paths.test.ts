import assert from 'node:assert/strict'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, openKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {assertRun, modeOf} from '../helpers/keystore.js'

describe('apm-server keystore: --path.home, --path.data and the default location', () => {
  let tmp: ReturnType<typeof makeTempDir>
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => tmp.cleanup())

  it('--path.home (relative or absolute) puts the keystore in <home>/data; missing dirs are made 0700', async () => {
    const relative = path.join(tmp.dir, 'rel', 'home', 'data', 'apm-server.keystore')
    const absolute = path.join(tmp.dir, 'abs', 'data', 'apm-server.keystore')
    const [rel, abs] = await Promise.all([
      ks(['create', '--path.home', 'rel/home']),
      ks(['create', '--json', `--path.home=${path.join(tmp.dir, 'abs')}`]),
    ])
    assertRun(rel, {code: 0, stdout: `Created native keystore at ${relative}.\n`})
    assertRun(abs, {code: 0})
    assert.equal(JSON.parse(abs.stdout).path, absolute)
    for (const dir of ['rel', 'rel/home', 'rel/home/data', 'abs', 'abs/data']) assert.equal(modeOf(path.join(tmp.dir, dir)), 0o700, dir)
    assert.equal(modeOf(relative), 0o600)
    assert.equal(modeOf(absolute), 0o600)
  })

  it('--path.data wins over --path.home for the keystore; every command follows it', async () => {
    const data = path.join(tmp.dir, 'var', 'lib')
    const file = path.join(data, 'apm-server.keystore')
    assertRun(await ks(['create', '--path.home', 'h', '--path.data', 'var/lib']), {code: 0, stdout: `Created native keystore at ${file}.\n`})
    assertRun(await ks(['add', 'A', '--stdin', '--path.data', data], {input: 'a'}), {code: 0, stdout: `Added A to ${file}.\n`})
    const [list, show] = await Promise.all([ks(['list', '--path.data', 'var/lib']), ks(['show', 'A', '--path.data', 'var/lib'])])
    assertRun(list, {code: 0, stderr: '', stdout: 'A\n'})
    assertRun(show, {code: 0, stderr: '', stdout: 'a'})
    assert.equal(existsSync(path.join(tmp.dir, 'h')), false)
    assert.equal(existsSync(path.join(tmp.dir, 'data')), false)
  })

  it('--path.home finds <home>/apm-server.yml, so its keystore.path applies', async () => {
    mkdirSync(path.join(tmp.dir, 'h'))
    writeFileSync(path.join(tmp.dir, 'h', 'apm-server.yml'), 'keystore.path: ${path.home}/secrets/ks\n')
    await createKeystore(path.join(tmp.dir, 'h', 'secrets', 'ks'), {format: 'native'})
    assertRun(await ks(['add', 'A', '--stdin', '--path.home', 'h'], {input: 'a'}), {code: 0, stderr: ''})
    assert.deepEqual((await openKeystore(path.join(tmp.dir, 'h', 'secrets', 'ks'))).keys(), ['A'])
  })
})
