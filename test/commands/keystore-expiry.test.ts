/**
 * Expiry through the CLI (issue 16): --expires on add (also with --generate), sync and import; list
 * --long and its JSON; show --json; Beats v1 refusing it. The clock is fixed with APM_SERVER_TEST_NOW.
 */
import assert from 'node:assert/strict'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {openKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {assertFailure, assertRun, defaultKeystore} from '../helpers/keystore.js'

const NOW = '2026-11-27T10:00:00Z'
const CLOCK = {APM_SERVER_TEST_NOW: NOW}
const CLOCK_WARNING = 'warning: APM_SERVER_TEST_NOW is set: expiry is judged as of 2026-11-27T10:00:00.000Z; it is for tests only, unset it\n'
const DAY = 86_400_000

describe('apm-server keystore: expiry (--expires, list --long)', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options, env: {...CLOCK, ...options.env}})
  beforeEach(() => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
  })
  afterEach(() => tmp.cleanup())

  it('add --expires (a duration, a date, with --generate); list --long shows created, updated, expires; --json with it', async () => {
    assert.equal((await ks(['create'])).code, 0)
    assertRun(await ks(['add', 'TOKEN', '--stdin', '--expires', '10d'], {input: 'tok'}), {code: 0, stderr: CLOCK_WARNING})
    assertRun(await ks(['add', 'OTHER', '--stdin', '--expires', '2027-03-01'], {input: 'other'}), {code: 0, stderr: CLOCK_WARNING})
    const generated = await ks(['add', 'GEN', '--generate', '--expires', '2d'])
    assert.equal(generated.code, 0, generated.stderr)
    assertRun(await ks(['add', 'PLAIN', '--stdin'], {input: 'plain'}), {code: 0, stderr: ''})
    const keystore = await openKeystore(file)
    const now = Date.parse(NOW)
    assert.deepEqual(
      ['GEN', 'OTHER', 'PLAIN', 'TOKEN'].map((name) => keystore.expiry(name)),
      [now + 2 * DAY, Date.parse('2027-03-01T00:00:00Z'), undefined, now + 10 * DAY],
    )

    // A day before the token's ten are up: it expires soon; a year later, all of them have.
    const iso = (name: string) => new Date(keystore.describe(name).created).toISOString()
    const long = await ks(['list', '--long'], {env: {APM_SERVER_TEST_NOW: '2026-12-06T10:00:00Z'}})
    assertRun(long, {
      code: 0,
      stdout: [
        'NAME   CREATED                   UPDATED                   EXPIRES',
        `GEN    ${iso('GEN')}  ${iso('GEN')}  2026-11-29T10:00:00.000Z (expired)`,
        `OTHER  ${iso('OTHER')}  ${iso('OTHER')}  2027-03-01T00:00:00.000Z`,
        `PLAIN  ${iso('PLAIN')}  ${iso('PLAIN')}  -`,
        `TOKEN  ${iso('TOKEN')}  ${iso('TOKEN')}  2026-12-07T10:00:00.000Z (expires soon)`,
        '',
      ].join('\n'),
    })
    const json = await ks(['list', '--long', '--json'])
    assertRun(json, {code: 0, stderr: ''})
    assert.deepEqual(JSON.parse(json.stdout)[1], {created: iso('OTHER'), expires: '2027-03-01T00:00:00.000Z', name: 'OTHER', updated: iso('OTHER')})
    assert.deepEqual(JSON.parse((await ks(['list', '--json'])).stdout), ['GEN', 'OTHER', 'PLAIN', 'TOKEN'], 'list --json keeps its shape')
    assert.equal(JSON.parse((await ks(['show', 'TOKEN', '--json'])).stdout).expires, '2026-12-07T10:00:00.000Z')
    assert.doesNotMatch(long.stdout + json.stdout, /tok|other|plain/)
  })

  it('a replaced value keeps no expiry unless --expires is given again, and says so', async () => {
    assert.equal((await ks(['create'])).code, 0)
    assert.equal((await ks(['add', 'TOKEN', '--stdin', '--expires', '90d'], {input: 'one'})).code, 0)
    assertRun(await ks(['add', 'TOKEN', '--stdin', '--force'], {input: 'two'}), {
      code: 0,
      stderr: 'warning: TOKEN had an expiry; the new value has none: give --expires to set one\n',
      stdout: `Replaced TOKEN in ${file}.\n`,
    })
    assert.equal((await openKeystore(file)).expiry('TOKEN'), undefined)
    assert.equal((await ks(['add', 'TOKEN', '--stdin', '--force', '--expires', '30d'], {input: 'three'})).code, 0)
    assert.equal((await openKeystore(file)).expiry('TOKEN'), Date.parse(NOW) + 30 * DAY)
  })

  it('sync --expires and import --expires give the keys they add or replace an expiry, not the unchanged ones', async () => {
    assert.equal((await ks(['create'])).code, 0)
    const dir = path.join(tmp.dir, 'secrets')
    mkdirSync(dir)
    writeFileSync(path.join(dir, 'A'), 'a')
    assert.equal((await ks(['sync', dir])).code, 0)
    writeFileSync(path.join(dir, 'B'), 'b')
    assert.equal((await ks(['sync', dir, '--expires', '7d'])).code, 0)
    let keystore = await openKeystore(file)
    assert.deepEqual([keystore.expiry('A'), keystore.expiry('B')], [undefined, Date.parse(NOW) + 7 * DAY])

    const recipient = (await ks(['recipient'])).stdout.trim()
    const sealed = await runCli(['keystore', 'seal', '--to', recipient, 'C', '--stdin', '--out', 'c.bundle'], {cwd: tmp.dir, input: 'c'})
    assert.equal(sealed.code, 0, sealed.stderr)
    assert.equal((await ks(['import', 'c.bundle', '--expires', '2027-01-01'])).code, 0)
    keystore = await openKeystore(file)
    assert.equal(keystore.expiry('C'), Date.parse('2027-01-01T00:00:00Z'))
  })

  it('refuses a bad --expires before anything is asked or changed (exit 2), and any --expires on a Beats v1 keystore (exit 1)', async () => {
    assert.equal((await ks(['create'])).code, 0)
    assertFailure(
      await ks(['add', 'K', '--stdin', '--expires', 'soon'], {env: {APM_SERVER_TEST_NOW: undefined}, input: 'v'}),
      2,
      'EUSAGE',
      '--expires "soon" is neither a duration (90d, 12w, 36h) nor a date (2027-03-01, or 2027-03-01T12:00:00Z); give one of those',
    )
    const past = await ks(['add', 'K', '--stdin', '--expires', '2026-01-01'], {input: 'v'})
    assert.equal(past.code, 2)
    assert.match(past.stderr, /--expires 2026-01-01 is not in the future \(now is 2026-11-27T10:00:00.000Z\); give a later date/)
    assert.deepEqual((await openKeystore(file)).keys(), [])

    const beats = path.join(tmp.dir, 'beats')
    assert.equal((await ks(['create', '--format', 'beats-v1', '--path.data', beats])).code, 0)
    const refused = await ks(['add', 'K', '--stdin', '--expires', '90d', '--path.data', beats], {input: 'v'})
    assertRun(refused, {code: 1})
    assert.match(refused.stderr, /is in Beats v1 format, which cannot hold an expiry; run "apm-server keystore upgrade" first/)
  })
})
