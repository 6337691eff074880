import assert from 'node:assert/strict'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {assertFailure, assertRun} from '../helpers/keystore.js'

describe('apm-server keystore: -c/--config and keystore.path', () => {
  let tmp: ReturnType<typeof makeTempDir>
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => tmp.cleanup())

  it('-c with keystore.path: ${path.data} expanded (nested or dotted YAML), --path.data overriding the file', async () => {
    writeFileSync(path.join(tmp.dir, 'dotted.yml'), 'path.data: d1\nkeystore.path: ${path.data}/custom.keystore\n')
    writeFileSync(path.join(tmp.dir, 'nested.yml'), 'path:\n  data: d2\nkeystore:\n  path: "${path.data}/nested.keystore"\n')
    const dotted = path.join(tmp.dir, 'd1', 'custom.keystore')
    const nested = path.join(tmp.dir, 'd2', 'nested.keystore')
    const overridden = path.join(tmp.dir, 'flag', 'custom.keystore')
    const [a, b, c] = await Promise.all([
      ks(['create', '-c', 'dotted.yml', '--json']),
      ks(['create', '--config', path.join(tmp.dir, 'nested.yml'), '--json']),
      ks(['create', '-c', 'dotted.yml', '--path.data', 'flag', '--json']),
    ])
    for (const [run, file] of [
      [a, dotted],
      [b, nested],
      [c, overridden],
    ] as const) {
      assertRun(run, {code: 0})
      assert.equal(JSON.parse(run.stdout).path, file)
      assert.ok(existsSync(file), file)
    }

    await updateKeystore(dotted, {}, (keystore) => keystore.set('FROM_CONFIG', Buffer.from('yes')))
    assertRun(await ks(['show', 'FROM_CONFIG', '-c', 'dotted.yml']), {code: 0, stderr: '', stdout: 'yes'})
  })

  it('the default apm-server.yml in the current directory is read when present', async () => {
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), 'keystore.path: elsewhere/k.keystore\n')
    const file = path.join(tmp.dir, 'elsewhere', 'k.keystore')
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('K', Buffer.from('v')))
    assertRun(await ks(['list']), {code: 0, stderr: '', stdout: 'K\n'})
  })

  it('a config file with no keystore settings (or no file at all) is fine for keystore commands', async () => {
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), 'apm-server:\n  host: "localhost:8200"\n')
    const [withConfig, withoutConfig] = await Promise.all([
      ks(['create', '--json']),
      ks(['create', '--json', '--path.home', 'empty-home']),
    ])
    assertRun(withConfig, {code: 0})
    assert.equal(JSON.parse(withConfig.stdout).path, path.join(tmp.dir, 'data', 'apm-server.keystore'))
    assertRun(withoutConfig, {code: 0})
    assert.equal(JSON.parse(withoutConfig.stdout).path, path.join(tmp.dir, 'empty-home', 'data', 'apm-server.keystore'))
  })

  it('-c naming a missing file, bad YAML, or a non-string keystore.path: exit 1 naming the file, nothing created', async () => {
    writeFileSync(path.join(tmp.dir, 'bad.yml'), 'a: [\n')
    writeFileSync(path.join(tmp.dir, 'list.yml'), 'keystore.path: [1, 2]\n')
    mkdirSync(path.join(tmp.dir, 'data'))
    const [missingJson, bad, list] = await Promise.all([
      ks(['create', '--config', 'missing.yml', '--json']),
      ks(['list', '-c', 'bad.yml']),
      ks(['list', '-c', 'list.yml']),
    ])
    const message = `config file ${path.join(tmp.dir, 'missing.yml')} does not exist; check the -c/--config path`
    assertFailure(missingJson, 1, 'ECONFIG', message, true)
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, new RegExp(`^error: cannot parse config file ${path.join(tmp.dir, 'bad.yml')}: .+; fix the YAML\\n$`))
    assertFailure(list, 1, 'ECONFIG', `setting keystore.path in ${path.join(tmp.dir, 'list.yml')} must be a string path`)
    assert.equal(existsSync(path.join(tmp.dir, 'data', 'apm-server.keystore')), false)
  })

  it('--path.config points at the directory holding apm-server.yml', async () => {
    mkdirSync(path.join(tmp.dir, 'etc'))
    writeFileSync(path.join(tmp.dir, 'etc', 'apm-server.yml'), 'keystore.path: ${path.config}/ks\n')
    const result = await ks(['create', '--path.config', 'etc', '--json'])
    assertRun(result, {code: 0})
    assert.equal(JSON.parse(result.stdout).path, path.join(tmp.dir, 'etc', 'ks'))
    assert.deepEqual((await openKeystore(path.join(tmp.dir, 'etc', 'ks'))).keys(), [])
  })
})
