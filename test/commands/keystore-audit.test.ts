/**
 * `keystore audit` (issue 16): every changing command appends a line, refusals as failed, never a
 * value; the history, a key's lines, --json, --verify (exit 1 naming the first bad line), and a real
 * kill -9 between the line and the keystore write, which --verify must not call tampering.
 */
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {readFileSync, renameSync, statSync, utimesSync, watch, writeFileSync} from 'node:fs'
import path from 'node:path'

import {BIN, cleanEnv, CliOptions, makeTempDir, runCli, startChild} from '../helpers/cli.js'
import {assertRun, defaultKeystore} from '../helpers/keystore.js'

const PASSWORD = 'audit cli password'
const VALUE = 'audit-secret-value'

describe('apm-server keystore audit', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  let trail: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) =>
    runCli(['keystore', ...args], {cwd: tmp.dir, ...options, env: {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD, ...options.env}})
  beforeEach(() => {
    tmp = makeTempDir('apm-audit-cli-')
    file = defaultKeystore(tmp.dir)
    trail = `${file}.audit`
  })
  afterEach(() => tmp.cleanup())

  async function history(): Promise<void> {
    for (const [args, input, code] of [
      [['create', '--password'], undefined, 0],
      [['add', 'TOKEN', '--stdin'], VALUE, 0],
      [['add', 'TOKEN', '--stdin'], VALUE, 1],
      [['add', 'ES_USER', 'ES_PASS', '--stdin'], `${VALUE}\n${VALUE}\n`, 0],
      [['remove', 'ES_USER'], undefined, 0],
      [['remove', 'NOPE'], undefined, 1],
      [['upgrade'], undefined, 0],
    ] as const) {
      // eslint-disable-next-line no-await-in-loop -- a history, in order
      const run = await ks([...args], {input})
      assert.equal(run.code, code, `${args.join(' ')}: ${run.stderr}`)
    }
  }

  it('prints the history, one line per change or refusal; KEY filters it; --json; never a value', async () => {
    await history()
    const run = await ks(['audit'])
    assertRun(run, {code: 0, stderr: ''})
    const who = String.raw`\S+ \(uid \d+\) on \S+, pid \d+`
    const time = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
    const expected = [
      'keystore create: ok',
      'keystore add TOKEN: ok',
      'keystore add TOKEN: failed (EKEYEXISTS)',
      'keystore add ES_USER, ES_PASS: ok',
      'keystore remove ES_USER: ok',
      'keystore remove NOPE: failed (ENOKEY)',
      'keystore upgrade: ok',
    ]
    const lines = run.stdout.split('\n').slice(0, -1)
    assert.equal(lines.length, expected.length, run.stdout)
    lines.forEach((line, i) => assert.match(line, new RegExp(`^${i + 1}  ${time}  ${who}: ${expected[i].replace(/[()]/g, String.raw`\$&`)}$`)))

    const token = await ks(['audit', 'TOKEN'])
    assert.deepEqual(
      token.stdout.split('\n').slice(0, -1).map((line) => line.split('  ')[0]),
      ['2', '3'],
    )
    const json = await ks(['audit', '--json'])
    assertRun(json, {code: 0, stderr: ''})
    const entries = JSON.parse(json.stdout).entries as Array<Record<string, unknown>>
    assert.deepEqual(entries[2], {...entries[2], command: 'keystore add', confirmed: false, error: 'EKEYEXISTS', keys: ['TOKEN'], line: 3, result: 'failed'})
    assert.deepEqual(entries.map((entry) => entry.confirmed), [true, true, false, true, true, false, true])
    for (const output of [run.stdout, json.stdout, readFileSync(trail, 'utf8')]) assert.equal(output.includes(VALUE) || output.includes(PASSWORD), false)
    // eslint-disable-next-line no-bitwise -- permission bits
    assert.equal(statSync(trail).mode & 0o777, 0o600)
  })

  it('--verify: OK with the counts; exit 1 naming the first bad line when one was edited, removed or cut off', async () => {
    await history()
    assertRun(await ks(['audit', '--verify']), {code: 0, stderr: ''})
    const ok = await ks(['audit', '--verify'])
    assert.equal(ok.stdout.split('\n').at(-2), `Audit trail ${trail} OK: 7 lines, 5 changes confirmed by the keystore, 2 refused.`)
    const original = readFileSync(trail, 'utf8').split('\n').slice(0, -1)
    const cases: Array<[string, string[], string]> = [
      ['edited', original.map((line, i) => (i === 3 ? line.replace('ES_PASS', 'ES_PAST') : line)), `line 4 of ${trail} was changed (line 5 records another hash for it), or lines between them were removed; restore the file from a backup`],
      ['removed', original.filter((_line, i) => i !== 1), `line 2 of ${trail} is numbered 3: 1 line was removed before it; restore the file from a backup`],
      ['cut off', original.slice(0, 5), `${trail} ends after line 5, but keystore ${file} records 7 lines: lines were removed from its end; restore the file from a backup`],
    ]
    for (const [what, lines, message] of cases) {
      writeFileSync(trail, lines.map((line) => `${line}\n`).join(''))
      // eslint-disable-next-line no-await-in-loop -- one file at a time
      const run = await ks(['audit', '--verify'])
      assert.equal(run.code, 1, `${what}: ${run.stdout}`)
      assert.equal(run.stderr, `error: ${message}\n`, what)
      // eslint-disable-next-line no-await-in-loop -- one file at a time
      const json = await ks(['audit', '--verify', '--json'])
      assert.equal(json.code, 1)
      assert.deepEqual(JSON.parse(json.stdout).verified.problem.message, message)
      // eslint-disable-next-line no-await-in-loop -- one file at a time
      const plain = await ks(['audit'])
      assert.equal(plain.code, 0)
      assert.equal(plain.stderr, `warning: ${message} ("keystore audit --verify" fails on it)\n`)
    }
  })

  it('kill -9 between a line and its keystore write: --verify passes, the line is not confirmed, the next change confirms on', async function () {
    this.timeout(60_000)
    await history()
    const data = path.dirname(file)
    // The temp file appears after the line is appended and fsynced, before the rename: kill there.
    const run = startChild(process.execPath, [BIN, 'keystore', 'add', 'KILLED', '--stdin'], {cwd: tmp.dir, env: cleanEnv({APM_SERVER_KEYSTORE_PASSWORD: PASSWORD}), input: VALUE, timeoutMs: 30_000})
    const watcher = watch(data, (_event, name) => {
      if (name?.includes('.tmp-')) run.child.kill('SIGKILL')
    })
    const result = await run.done
    watcher.close()
    assert.equal(result.signal, 'SIGKILL', 'the kill landed too late')
    const verified = await ks(['audit', '--verify'])
    assert.equal(verified.code, 0, verified.stderr)
    assert.match(verified.stdout, /8  .*: keystore add KILLED: ok, not confirmed by the keystore \(its command stopped before writing the keystore\)\n/)
    assert.match(verified.stdout, /OK: 8 lines, 5 changes confirmed by the keystore, 2 refused, 1 not confirmed\.\n$/)
    // The next change records that line 8 was never confirmed (the dead writer's lock aged past stale).
    utimesSync(`${file}.lock`, new Date(0), new Date(0))
    const next = await ks(['add', 'AFTER', '--stdin'], {input: VALUE})
    assert.equal(next.code, 0, next.stderr)
    const json = JSON.parse((await ks(['audit', '--verify', '--json'])).stdout)
    assert.deepEqual(json.entries.slice(-2).map((entry: {confirmed: boolean}) => entry.confirmed), [false, true])
    assert.equal(json.verified.ok, true)
  })

  it('an older copy of the keystore put back (a rotation undone) fails --verify, and still does after the next change', async () => {
    await history()
    const older = `${file}.older`
    writeFileSync(older, readFileSync(file), {mode: 0o600})
    for (const [args, input] of [[['add', 'TOKEN', '--stdin', '--force'], 'rotated'], [['add', 'OTHER', '--stdin'], VALUE]] as const) {
      // eslint-disable-next-line no-await-in-loop -- a history, in order
      const run = await ks([...args], {input})
      assert.equal(run.code, 0, run.stderr)
    }

    renameSync(older, file)
    const advice = 'the keystore was put back from an older copy (a change, a rotation among them, was undone); check its values, then restore the pair from one backup or run keystore audit --restart\n'
    const undone = await ks(['audit', '--verify'])
    assert.equal(undone.code, 1)
    assert.equal(undone.stderr, `error: line 9 of ${trail} is a change made when keystore ${file} recorded line 8, yet it now records only line 7: ${advice}`)
    // Two crashes in a row would have left line 9 counting line 8 as never confirmed; the next change cannot bless it.
    const next = await ks(['add', 'LATER', '--stdin'], {input: VALUE})
    assert.equal(next.code, 0, next.stderr)
    const still = await ks(['audit', '--verify'])
    assert.equal(still.code, 1)
    assert.equal(still.stderr, `error: line 9 of ${trail} is a change made when keystore ${file} recorded line 8, yet line 10 says it recorded only line 7: ${advice}`)
  })

  it('a chained line appended past the anchor that apm-server would not write is damage: --verify exits 1 naming it; the text never prints a control character', async () => {
    await history()
    const original = readFileSync(trail, 'utf8')
    const last = original.split('\n').at(-2)!
    const base = {command: 'keystore remove', host: 'vm', keys: ['A_KEY'], pid: 31_099, prev: createHash('sha256').update(last).digest('hex'), result: 'ok', seq: 8, time: '2026-12-04T16:49:14.000Z', uid: 0, user: 'root'}
    const fabricated = `vm\n8  2026-12-04T16:49:13.100Z  root (uid 0) on vm, pid 31077: keystore add APM_SECRET_TOKEN: ok\n9  2026-12-04T16:49:14.000Z  root (uid 0) on vm`
    const cases: Array<[string, Record<string, unknown>]> = [
      ['newlines in host, ESC[8m in command (the review\'s forgery)', {command: 'keystore remove\u001B[8m', host: fabricated}],
      ['ESC in host', {host: 'vm\u001B[2K'}],
      ['a C1 control (CSI) in user', {user: 'root\u009B8m'}],
      ['DEL in a key name', {keys: ['A\u007F']}],
      ['a key that is not a key name', {keys: ['A KEY']}],
      ['a command that does not write', {command: 'keystore show'}],
      ['a time that is not ISO', {time: 'yesterday'}],
      ['a control character in a field of a later version', {note: 'x\u001B[8m'}],
    ]
    for (const [what, fields] of cases) {
      writeFileSync(trail, `${original}${JSON.stringify({...base, ...fields})}\n`)
      // eslint-disable-next-line no-await-in-loop -- one file at a time
      const run = await ks(['audit', '--verify'])
      assert.equal(run.code, 1, `${what}: ${run.stdout}`)
      assert.equal(run.stderr, `error: line 8 of ${trail} is not an audit line: it was changed, or written by something else; restore the file from a backup\n`, what)
      assert.equal(run.stdout.split('\n').at(-2), '8  (not an audit line)', what)
      // eslint-disable-next-line no-control-regex -- no control character but the newlines that end lines
      assert.doesNotMatch(run.stdout, /[\u0000-\u0009\u000B-\u001F\u007F-\u009F]/, what)
    }

    // The same line as apm-server writes it passes (the check is not a blanket refusal of lines past the anchor).
    writeFileSync(trail, `${original}${JSON.stringify(base)}\n`)
    const honest = await ks(['audit', '--verify'])
    assert.equal(honest.code, 0, honest.stderr)
    assert.match(honest.stdout, /8  2026-12-04T16:49:14\.000Z  root \(uid 0\) on vm, pid 31099: keystore remove A_KEY: ok, not confirmed/)
  })

  it('--restart keeps the trail aside (pinned by its hash in the new trail\'s first line) and starts a new one that verifies', async () => {
    await history()
    const lines = readFileSync(trail, 'utf8').split('\n')
    writeFileSync(trail, lines.filter((_line, i) => i !== 2).join('\n'))
    const kept = readFileSync(trail)
    assert.equal((await ks(['audit', '--verify'])).code, 1)
    const restart = await ks(['audit', '--restart', '--json'])
    assertRun(restart, {code: 0, stderr: ''})
    const {entries, restarted} = JSON.parse(restart.stdout)
    assert.equal(restarted.bytes, kept.length)
    assert.equal(restarted.sha256, createHash('sha256').update(kept).digest('hex'))
    assert.deepEqual(readFileSync(restarted.file), kept)
    assert.match(path.basename(restarted.file), /^apm-server\.keystore\.audit\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z$/)
    assert.deepEqual(entries.map((entry: {command: string; line: number}) => [entry.line, entry.command]), [[1, 'keystore audit --restart']])
    assert.deepEqual(JSON.parse(readFileSync(trail, 'utf8')).restarted, restarted)
    assert.equal((await ks(['add', 'NEXT', '--stdin'], {input: VALUE})).code, 0)
    assert.match((await ks(['audit', '--verify'])).stdout, /OK: 2 lines, 2 changes confirmed by the keystore\.\n$/)
  })
})
