/**
 * Expiry and `apm-server run` (issue 16), the real server with its clock fixed by APM_SERVER_TEST_NOW:
 * a token expiring within 14 days is logged as a warning; an expired one stops the start, and a reload
 * to one fails, closed (the running token stays the only one accepted).
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {makeTempDir, runCli} from '../helpers/cli.js'
import {killStartedServers, send, startRun} from '../helpers/run-server.js'

const NOW = '2026-11-27T10:00:00Z'
const BODY = `${JSON.stringify({metadata: {service: {agent: {name: 'nodejs', version: '4.18.0'}, name: 'svc'}}})}\n${JSON.stringify({transaction: {id: 't1', name: 'GET /'}})}\n`

describe('apm-server run: secret expiry', function () {
  this.timeout(60_000)
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir('apm-expiry-run-')
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), `apm-server:\n  host: "127.0.0.1:0"\n  auth.secret_token: "\${APM_SECRET_TOKEN}"\noutput.file.path: "${path.join(tmp.dir, 'out')}"\n`)
  })
  afterEach(() => {
    killStartedServers()
    tmp.cleanup()
  })

  const addToken = async (token: string, expires: string, now = NOW) => {
    const added = await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin', '--force', '--expires', expires], {cwd: tmp.dir, env: {APM_SERVER_TEST_NOW: now}, input: token})
    assert.equal(added.code, 0, added.stderr)
  }

  const status = (url: string, token: string) => send(url, {body: BODY, headers: {Authorization: `Bearer ${token}`}, path: '/intake/v2/events'}).then((reply) => reply.status)

  it('an expired secret token stops the start, exit 1, with both fixes in the message', async () => {
    await addToken('tok-expired', '1d', '2026-11-01T00:00:00Z')
    const result = await runCli(['run'], {cwd: tmp.dir, env: {APM_SERVER_TEST_NOW: NOW}})
    assert.equal(result.code, 1)
    const lines = result.stderr.trimEnd().split('\n')
    assert.equal(lines[0], 'warning: APM_SERVER_TEST_NOW is set: expiry is judged as of 2026-11-27T10:00:00.000Z; it is for tests only, unset it')
    assert.match(
      lines[1],
      /^error: .*apm-server\.yml:3: apm-server\.auth\.secret_token: the secret token \$\{APM_SECRET_TOKEN\} in the keystore expired on 2026-11-02T00:00:00\.000Z \(25 days ago\); rotate it \("apm-server keystore add APM_SECRET_TOKEN --generate --force", .*\) or extend it \("apm-server keystore add APM_SECRET_TOKEN --force --expires 90d", with its current value\)$/,
    )
    assert.equal(lines.at(-1), 'error: cannot start: a configuration problem; fix the configuration (check it with "apm-server test config")')
    assert.equal(result.stderr.includes('tok-expired'), false)
  })

  it('a token expiring within 14 days: starts, and logs the warning', async () => {
    await addToken('tok-soon', '3d')
    const run = await startRun(tmp.dir, [], {APM_SERVER_TEST_NOW: NOW})
    const warning = await run.waitFor(/in the keystore expires on 2026-11-30T10:00:00\.000Z \(in 3 days\)/)
    assert.equal(warning['log.level'], 'warn')
    assert.equal(await status(run.url, 'tok-soon'), 202)
    run.child.kill('SIGTERM')
    assert.equal(await run.exit, 0)
  })

  it('SIGHUP to an expired token: the reload fails, closed; the running token is still the one accepted', async () => {
    await addToken('tok-running', '90d')
    const run = await startRun(tmp.dir, [], {APM_SERVER_TEST_NOW: NOW})
    // Rotated by someone whose clock says a month earlier, for one day: expired by the server's clock.
    await addToken('tok-stale', '1d', '2026-10-27T10:00:00Z')
    const seen = run.logs().length
    run.child.kill('SIGHUP')
    const failed = await run.waitFor('reload failed; still serving with the previous configuration', seen)
    assert.match(JSON.stringify(failed.problems), /the secret token \$\{APM_SECRET_TOKEN\} in the keystore expired on 2026-10-28T10:00:00\.000Z/)
    assert.deepEqual([await status(run.url, 'tok-running'), await status(run.url, 'tok-stale')], [202, 401])
    run.child.kill('SIGTERM')
    assert.equal(await run.exit, 0)
    assert.equal(JSON.stringify(run.logs()).includes('tok-'), false)
  })
})
