import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {makeTempDir, runCli} from '../helpers/cli.js'

describe('apm-server autocomplete', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => tmp.cleanup())

  it('builds bash and zsh completions that know the keystore commands and their flags', async () => {
    const env = {XDG_CACHE_HOME: path.join(tmp.dir, 'cache')}
    for (const shell of ['bash', 'zsh']) {
      const result = await runCli(['autocomplete', shell], {cwd: tmp.dir, env})
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stdout, new RegExp(`apm-server autocomplete script ${shell}`))
    }

    const functions = path.join(tmp.dir, 'cache', 'apm-server', 'autocomplete', 'functions')
    const bash = readFileSync(path.join(functions, 'bash', 'apm-server.bash'), 'utf8')
    assert.match(bash, /^keystore:add .*--stdin/m)
    assert.match(bash, /^keystore:create .*--password/m)
    assert.match(bash, /^run .*-E|^run .*--E/m)
    const zsh = readFileSync(path.join(functions, 'zsh', '_apm-server'), 'utf8')
    assert.match(zsh, /"add\[Add keys to the keystore/)
  })
})
