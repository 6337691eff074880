import assert from 'node:assert/strict'
import {appendFileSync, chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {AuditSession, GENESIS, hashLine} from '../../src/core/audit.js'
import {readAuditTrail} from '../../src/core/audit-verify.js'
import {createKeystore, openKeystore, UpdateOptions, updateKeystore} from '../../src/core/keystore.js'
import {withKeystoreLock} from '../../src/core/keystore-file.js'
import {makeTempDir} from '../helpers/cli.js'
import {assertKeystoreError, CHEAP_KDF, modeOf, passwordOf} from '../helpers/keystore.js'

const PASSWORD = 'audit password'

describe('core/audit: the audit trail beside a keystore', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  let trail: string
  const options = (command: string, keys?: string[]): UpdateOptions => ({audit: {command, ...(keys ? {keys} : {})}, password: passwordOf(PASSWORD)})
  beforeEach(() => {
    tmp = makeTempDir('apm-audit-test-')
    file = path.join(tmp.dir, 'data', 'apm-server.keystore')
    trail = `${file}.audit`
  })
  afterEach(() => tmp.cleanup())

  const lines = () => readFileSync(trail, 'utf8').split('\n').slice(0, -1)
  const records = () => lines().map((line) => JSON.parse(line) as Record<string, unknown>)
  const verify = () => readAuditTrail(file, {password: passwordOf(PASSWORD)})

  /** Appends a change's line as a writer does, then "crashes": the keystore is never written. */
  async function crashBetweenTheWrites(name: string): Promise<void> {
    await withKeystoreLock(file, async (lock) => {
      const keystore = await openKeystore(file, {password: passwordOf(PASSWORD)})
      keystore.set(name, Buffer.from('never written'))
      const session = new AuditSession(file, {command: 'keystore add'}, undefined)
      await session.prepare(keystore)
      await keystore.encode()
      await session.commit(lock)
      await session.close()
    })
  }

  /**
   * Seven lines: create, add A, a refused add, add B, an add that crashed before its keystore write,
   * add C (which says so), remove B; the keystore's anchor is line 7.
   */
  async function sevenLines(): Promise<void> {
    await createKeystore(file, {audit: {command: 'keystore create'}, format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from(PASSWORD)})
    await updateKeystore(file, options('keystore add', ['A']), (keystore) => keystore.set('A', Buffer.from('value-a')))
    await assertKeystoreError(
      updateKeystore(file, options('keystore add', ['A']), (keystore) => keystore.set('A', Buffer.from('again'))),
      'EKEYEXISTS',
    )
    await updateKeystore(file, options('keystore add', ['B']), (keystore) => keystore.set('B', Buffer.from('value-b')))
    await crashBetweenTheWrites('X')
    await updateKeystore(file, options('keystore add', ['C']), (keystore) => keystore.set('C', Buffer.from('value-c')))
    await updateKeystore(file, options('keystore remove', ['B']), (keystore) => keystore.remove(['B']))
  }

  it('writes one chained line per change, refusals as failed with their code, never a value; the keystore anchors the last', async () => {
    await sevenLines()
    const written = records()
    assert.deepEqual(
      written.map(({command, error, keys, result, seq, unconfirmed}) => ({command, error, keys, result, seq, unconfirmed})),
      [
        {command: 'keystore create', error: undefined, keys: [], result: 'ok', seq: 1, unconfirmed: undefined},
        {command: 'keystore add', error: undefined, keys: ['A'], result: 'ok', seq: 2, unconfirmed: undefined},
        {command: 'keystore add', error: 'EKEYEXISTS', keys: ['A'], result: 'failed', seq: 3, unconfirmed: undefined},
        {command: 'keystore add', error: undefined, keys: ['B'], result: 'ok', seq: 4, unconfirmed: 1},
        {command: 'keystore add', error: undefined, keys: ['X'], result: 'ok', seq: 5, unconfirmed: undefined},
        {command: 'keystore add', error: undefined, keys: ['C'], result: 'ok', seq: 6, unconfirmed: 1},
        {command: 'keystore remove', error: undefined, keys: ['B'], result: 'ok', seq: 7, unconfirmed: undefined},
      ],
    )
    const text = lines()
    assert.equal(written[0].prev, GENESIS)
    for (let i = 1; i < text.length; i++) assert.equal(written[i].prev, hashLine(Buffer.from(text[i - 1])), `line ${i + 1} chains to line ${i}`)
    for (const record of written) {
      assert.equal(record.pid, process.pid)
      assert.deepEqual(Object.keys(record).slice(0, 10), ['seq', 'prev', 'time', 'uid', 'user', 'host', 'pid', 'command', 'keys', 'result'])
    }

    const all = readFileSync(trail, 'utf8')
    for (const value of ['value-a', 'value-b', 'value-c', 'again', 'never written', PASSWORD]) assert.equal(all.includes(value), false, value)
    assert.equal(modeOf(trail), 0o600)
    const anchor = (await openKeystore(file, {password: passwordOf(PASSWORD)})).auditAnchor
    assert.deepEqual(anchor, {bytes: statSync(trail).size, head: hashLine(Buffer.from(text[6])), lines: 7})
  })

  it('verifies an intact trail: a crash between a line and its keystore write is not tampering, only not confirmed', async () => {
    await sevenLines()
    const report = await verify()
    assert.equal(report.problem, undefined)
    assert.deepEqual(
      report.entries.map((entry) => entry.confirmed),
      // the refusal and the crashed add were never confirmed
      [true, true, false, true, false, true, true],
    )
  })

  it('a crash right before the keystore write leaves a line past the anchor: verified, not confirmed', async () => {
    await sevenLines()
    await crashBetweenTheWrites('Y')
    const report = await verify()
    assert.equal(report.problem, undefined)
    assert.equal(report.entries.length, 8)
    assert.equal(report.entries[7].confirmed, false)
    assert.deepEqual((await openKeystore(file, {password: passwordOf(PASSWORD)})).keys(), ['A', 'C'])
  })

  it('a crash inside a line\'s write (half a line at the end) is not tampering; the next change cuts it off', async () => {
    await sevenLines()
    appendFileSync(trail, '{"seq":8,"prev":"ab')
    const report = await verify()
    assert.equal(report.problem, undefined)
    assert.equal(report.partialBytes, 19)
    await updateKeystore(file, options('keystore add', ['D']), (keystore) => keystore.set('D', Buffer.from('d')))
    assert.equal((await verify()).problem, undefined)
    assert.deepEqual(records().map((record) => record.seq), [1, 2, 3, 4, 5, 6, 7, 8])
  })

  describe('every line edited, removed or cut off in turn is detected, naming it', () => {
    for (let n = 1; n <= 7; n++) {
      it(`line ${n}`, async () => {
        await sevenLines()
        const original = lines()
        const write = (kept: string[]) => writeFileSync(trail, kept.map((line) => `${line}\n`).join(''))
        const problemLine = async (what: string) => {
          const {problem} = await verify()
          assert.ok(problem, `${what} of line ${n} was not detected`)
          assert.ok(problem.message.includes(trail), problem.message)
          return problem.line
        }

        // Edited: one digit of its time, the line still valid JSON of the same length.
        const edited = original.map((line, i) => (i === n - 1 ? line.replace(/(\d)Z"/, (_m, digit: string) => `${(Number(digit) + 1) % 10}Z"`) : line))
        assert.notEqual(edited[n - 1], original[n - 1])
        write(edited)
        assert.equal(await problemLine('an edit'), n)
        // Edited into something that is not an audit line.
        write(original.map((line, i) => (i === n - 1 ? `${line.slice(0, -1)}x` : line)))
        assert.equal(await problemLine('a broken edit'), n)
        // Removed.
        write(original.filter((_line, i) => i !== n - 1))
        assert.equal(await problemLine('the removal'), n)
        // Cut off: the file ends before it, or inside it.
        write(original.slice(0, n - 1))
        assert.equal(await problemLine('a cut before'), n)
        writeFileSync(trail, `${original.slice(0, n - 1).map((line) => `${line}\n`).join('')}${original[n - 1].slice(0, 40)}`)
        assert.equal(await problemLine('a cut inside'), n)
        // And the original again verifies.
        write(original)
        assert.equal((await verify()).problem, undefined)
      })
    }
  })

  it('a removed trail is detected; a change after a cut keeps the cut visible', async () => {
    await sevenLines()
    const original = readFileSync(trail)
    unlinkSync(trail)
    assert.match((await verify()).problem?.message ?? '', /is gone, but keystore .* records 7 lines in it: it was removed/)
    writeFileSync(trail, original.subarray(0, original.indexOf('\n') + 1), {mode: 0o600})
    await updateKeystore(file, options('keystore add', ['E']), (keystore) => keystore.set('E', Buffer.from('e')))
    const {problem} = await verify()
    assert.equal(problem?.line, 2)
    assert.match(problem?.message ?? '', /line 2 of .* is numbered 8: 6 lines were removed before it/)
  })

  it('a trail whose native keystore records none does not belong to it', async () => {
    await sevenLines()
    await createKeystore(file, {format: 'native', overwrite: true})
    assert.match((await readAuditTrail(file)).problem?.message ?? '', /records no audit trail, yet .* holds 7 lines/)
  })

  it('Beats v1: the trail is chained but anchored nowhere; an edit inside it is still detected', async () => {
    await createKeystore(file, {audit: {command: 'keystore create'}, format: 'beats-v1'})
    await updateKeystore(file, {audit: {command: 'keystore add'}}, (keystore) => keystore.set('A', Buffer.from('a')))
    await updateKeystore(file, {audit: {command: 'keystore add'}}, (keystore) => keystore.set('B', Buffer.from('b')))
    const report = await readAuditTrail(file)
    assert.deepEqual([report.anchor, report.problem, report.entries.length], [undefined, undefined, 3])
    writeFileSync(trail, lines().map((line, i) => `${i === 0 ? line.replace('"keys":[]', '"keys":["Z"]') : line}\n`).join(''))
    assert.equal((await readAuditTrail(file)).problem?.line, 1)
  })

  it('refuses a change when its line cannot be written, and leaves the keystore as it was', async () => {
    await sevenLines()
    const before = readFileSync(file)
    unlinkSync(trail)
    mkdirSync(trail)
    await assertKeystoreError(
      updateKeystore(file, options('keystore add', ['F']), (keystore) => keystore.set('F', Buffer.from('f'))),
      'EIO',
      `cannot write audit file ${trail}: EISDIR; it must be writable by whoever changes the keystore (check its owner and permissions); nothing was changed`,
    )
    assert.deepEqual(readFileSync(file), before)
  })

  it('never writes through a symbolic link at the trail\'s name, nor to a trail open to others', async () => {
    await sevenLines()
    const before = readFileSync(file)
    const elsewhere = path.join(tmp.dir, 'elsewhere')
    writeFileSync(elsewhere, 'not a trail\n')
    const saved = readFileSync(trail)
    unlinkSync(trail)
    symlinkSync(elsewhere, trail)
    const add = () => updateKeystore(file, options('keystore add', ['G']), (keystore) => keystore.set('G', Buffer.from('g')))
    await assertKeystoreError(add(), 'EPERMS', `audit file ${trail} is a symbolic link; an audit trail must be a file of its own: move the link aside`)
    assert.equal(readFileSync(elsewhere, 'utf8'), 'not a trail\n')
    unlinkSync(trail)
    writeFileSync(trail, saved)
    chmodSync(trail, 0o644)
    await assertKeystoreError(add(), 'EPERMS', `audit file ${trail} has mode 0644, open to group or others; run "chmod 600 ${trail}" (--strict.perms=false disables this check)`)
    assert.deepEqual(readFileSync(file), before)
    // --strict.perms=false lets it through, as for the keystore.
    await updateKeystore(file, {...options('keystore add', ['G']), strictPerms: false}, (keystore) => keystore.set('G', Buffer.from('g')))
  })

  it('a keystore written without an audit request keeps its anchor', async () => {
    await sevenLines()
    await updateKeystore(file, {password: passwordOf(PASSWORD)}, (keystore) => keystore.touch())
    assert.equal((await verify()).problem, undefined)
    truncateSync(trail, 10)
    assert.equal((await verify()).problem?.line, 1)
  })
})
