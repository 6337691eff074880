import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {assertFailure, assertRun, CHEAP_KDF} from '../helpers/keystore.js'

describe('apm-server keystore has-passwd', () => {
  let tmp: ReturnType<typeof makeTempDir>
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  const at = (name: string) => path.join(tmp.dir, name, 'apm-server.keystore')
  beforeEach(async () => {
    tmp = makeTempDir()
    await createKeystore(at('protected'), {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
    await createKeystore(at('plain'), {format: 'native'})
    await createKeystore(at('beats'), {format: 'beats-v1'})
  })
  afterEach(() => tmp.cleanup())

  it('exit 0 when protected (no password needed), 1 when not, 1 when there is no keystore', async () => {
    const [prot, plain, beats, none] = await Promise.all(
      ['protected', 'plain', 'beats', 'none'].map((name) => ks(['has-passwd', '--path.data', path.join(tmp.dir, name)])),
    )
    assertRun(prot, {code: 0, stderr: '', stdout: `Keystore ${at('protected')} is password protected.\n`})
    assertRun(plain, {code: 1, stderr: `Keystore ${at('plain')} is not password protected.\n`, stdout: ''})
    assertRun(beats, {code: 1, stderr: `Keystore ${at('beats')} is not password protected.\n`, stdout: ''})
    assertRun(none, {code: 1, stderr: `No keystore at ${at('none')}.\n`, stdout: ''})
  })

  it('--json: {exists, passwordProtected, path}, same exit codes, nothing on stderr', async () => {
    const [prot, plain, none] = await Promise.all(
      ['protected', 'plain', 'none'].map((name) => ks(['has-passwd', '--json', '--path.data', path.join(tmp.dir, name)])),
    )
    assertRun(prot, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(prot.stdout), {exists: true, passwordProtected: true, path: at('protected')})
    assertRun(plain, {code: 1, stderr: ''})
    assert.deepEqual(JSON.parse(plain.stdout), {exists: true, passwordProtected: false, path: at('plain')})
    assertRun(none, {code: 1, stderr: ''})
    assert.deepEqual(JSON.parse(none.stdout), {exists: false, passwordProtected: false, path: at('none')})
  })

  it('a crafted header (4 GiB argon2 memory) is an error, not a yes or no', async () => {
    const data = readFileSync(at('protected'))
    data.writeUInt32BE(4 * 1024 * 1024, 10)
    writeFileSync(at('protected'), data)
    assertFailure(
      await ks(['has-passwd', '--path.data', path.join(tmp.dir, 'protected')]),
      1,
      'ELIMITS',
      `${at('protected')}: keystore asks for argon2id memory=4194304KiB iterations=1 parallelism=1, outside the allowed range ` +
        '(memory 8KiB per lane to 1048576KiB, iterations 1-10, parallelism 1-16); the file is damaged or crafted, restore it from a backup',
    )
  })
})
