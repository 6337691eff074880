import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {resolvePaths} from '../../src/core/settings.js'
import {makeTempDir} from '../helpers/cli.js'

describe('core/settings resolvePaths: references in path settings', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => {
    delete process.env.APM_TEST_DATA_DIR
    tmp.cleanup()
  })

  it('resolves ${VAR} from the environment and ${path.*}, as the server does', async () => {
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), 'path.data: ${APM_TEST_DATA_DIR}\nkeystore.path: ${path.data}/sub/ks\n')
    process.env.APM_TEST_DATA_DIR = path.join(tmp.dir, 'from-env')
    const paths = await resolvePaths({}, tmp.dir)
    assert.equal(paths.data, path.join(tmp.dir, 'from-env'))
    assert.equal(paths.keystore, path.join(tmp.dir, 'from-env', 'sub', 'ks'))
  })

  it('refuses an unset variable, naming the setting and the file', async () => {
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), 'path.data: ${APM_TEST_DATA_DIR}\n')
    await assert.rejects(resolvePaths({}, tmp.dir), {
      code: 'ECONFIG',
      message: `setting path.data in ${path.join(tmp.dir, 'apm-server.yml')}: \${APM_TEST_DATA_DIR} is not set in the environment; set the variable or fix the setting`,
    })
  })
})
