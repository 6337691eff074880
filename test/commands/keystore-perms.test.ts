import assert from 'node:assert/strict'
import {chmodSync, chownSync, readFileSync} from 'node:fs'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {assertFailure, assertRun, defaultKeystore, modeOf} from '../helpers/keystore.js'

describe('apm-server keystore: strict permissions', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(async () => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('A', Buffer.from('a')))
  })
  afterEach(() => tmp.cleanup())

  it('a 0644 keystore is refused by reading and writing commands, naming the path and the chmod 600 fix', async () => {
    chmodSync(file, 0o644)
    const before = readFileSync(file)
    const message = `keystore ${file} has mode 0644, open to group or others; run "chmod 600 ${file}" (--strict.perms=false disables this check)`
    const runs = await Promise.all([
      ks(['show', 'A']),
      ks(['add', 'B', '--stdin'], {input: 'b'}),
      ks(['remove', 'A']),
      ks(['passwd', '--stdin'], {input: 'pw\n'}),
      ks(['list', '--json']),
    ])
    runs.forEach((run, i) => assertFailure(run, 1, 'EPERMS', message, i === runs.length - 1))
    assert.deepEqual(readFileSync(file), before)
    assert.equal(modeOf(file), 0o644)
  })

  it('--strict.perms=false and BEAT_STRICT_PERMS=false turn the check off; the flag beats the variable', async () => {
    chmodSync(file, 0o640)
    const [flag, env, envUpper, flagWins, bad] = await Promise.all([
      ks(['list', '--strict.perms=false']),
      ks(['list'], {env: {BEAT_STRICT_PERMS: 'false'}}),
      ks(['show', 'A'], {env: {BEAT_STRICT_PERMS: 'FALSE'}}),
      ks(['list', '--strict.perms=true'], {env: {BEAT_STRICT_PERMS: 'false'}}),
      ks(['list', '--strict.perms=no']),
    ])
    assertRun(flag, {code: 0, stderr: '', stdout: 'A\n'})
    assertRun(env, {code: 0, stderr: '', stdout: 'A\n'})
    assertRun(envUpper, {code: 0, stderr: '', stdout: 'a'})
    assertFailure(
      flagWins,
      1,
      'EPERMS',
      `keystore ${file} has mode 0640, open to group or others; run "chmod 600 ${file}" (--strict.perms=false disables this check)`,
    )
    assertRun(bad, {code: 2, stderr: 'error: expected --strict.perms=no to be one of: true, false; see --help\n', stdout: ''})
    // a write with the check off leaves the file 0600
    assertRun(await ks(['remove', 'A', '--strict.perms=false']), {code: 0, stderr: ''})
    assert.equal(modeOf(file), 0o600)
  })

  it('a keystore owned by another user (not root) is refused, naming the uid and the fix', async function () {
    // Giving a file to another uid needs root; elsewhere this case cannot be set up cheaply.
    if (process.getuid?.() !== 0) this.skip()
    chownSync(file, 54_321, 54_321)
    const [strict, relaxed] = await Promise.all([ks(['list']), ks(['list', '--strict.perms=false'])])
    assertFailure(
      strict,
      1,
      'EPERMS',
      `keystore ${file} is owned by uid 54321, not by the current user (uid 0) or root; run "chown 0 ${file}" or run as its owner (--strict.perms=false disables this check)`,
    )
    assertRun(relaxed, {code: 0, stderr: '', stdout: 'A\n'})
  })
})
