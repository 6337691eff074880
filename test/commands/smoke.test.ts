import assert from 'node:assert/strict'

import {makeTempDir, runCli} from '../helpers/cli.js'

describe('apm-server keystore (smoke)', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => tmp.cleanup())

  it('creates a keystore, adds a token from a pipe, lists, shows and removes it', async () => {
    const cwd = tmp.dir
    assert.equal((await runCli(['keystore', 'create'], {cwd})).code, 0)
    const add = await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin'], {cwd, input: 'tok-123\n'})
    assert.equal(add.code, 0, add.stderr)
    assert.equal((await runCli(['keystore', 'list'], {cwd})).stdout, 'APM_SECRET_TOKEN\n')
    assert.equal((await runCli(['keystore', 'show', 'APM_SECRET_TOKEN'], {cwd})).stdout, 'tok-123')
    assert.equal((await runCli(['keystore', 'remove', 'APM_SECRET_TOKEN'], {cwd})).code, 0)
    assert.equal((await runCli(['keystore', 'list'], {cwd})).stdout, '')
  })
})
