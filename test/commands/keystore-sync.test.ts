import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {chmodSync, chownSync, lchownSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {createKeystore, inspectKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {CliOptions, makeTempDir, runCli} from '../helpers/cli.js'
import {ALL_BYTES, assertFailure, assertRun, CHEAP_KDF, defaultKeystore, namesIn, passwordOf} from '../helpers/keystore.js'
import {runCliAndKill} from '../helpers/kill.js'

const RULE = 'key names are 1 to 255 characters from A-Z a-z 0-9 _ . -'

/**
 * A mounted Kubernetes Secret, as the kubelet lays it out: the files in a timestamped folder, `..data` a
 * link to it, and each key a link to `..data/<key>`. An update writes a new folder and swaps `..data`.
 */
function writeSecretMount(dir: string, files: Record<string, Buffer | string>, stamp: string): void {
  mkdirSync(dir, {recursive: true})
  const folder = `..${stamp}`
  mkdirSync(path.join(dir, folder))
  for (const [name, value] of Object.entries(files)) writeFileSync(path.join(dir, folder, name), value)
  symlinkSync(folder, path.join(dir, '..data_tmp'))
  renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'))
  for (const name of namesIn(dir)) {
    if (!name.startsWith('.') && !(name in files)) rmSync(path.join(dir, name))
  }

  for (const name of Object.keys(files)) {
    rmSync(path.join(dir, name), {force: true})
    symlinkSync(path.join('..data', name), path.join(dir, name))
  }
}

function identity(file: string): string {
  const stat = statSync(file, {bigint: true})
  return `${stat.ino}:${stat.mtimeNs}`
}

describe('apm-server keystore sync', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  let secrets: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) => runCli(['keystore', ...args], {cwd: tmp.dir, ...options})
  beforeEach(() => {
    tmp = makeTempDir()
    file = defaultKeystore(tmp.dir)
    secrets = path.join(tmp.dir, 'secrets')
  })
  afterEach(() => tmp.cleanup())

  it('a Kubernetes Secret mount: each key file becomes a key, bytes exact; ..data, dot files and folders are skipped', async () => {
    writeSecretMount(secrets, {APM_SECRET_TOKEN: 'token\n', 'tls.key': ALL_BYTES}, '2026_11_27_10_00_00.000000001')
    writeFileSync(path.join(secrets, '.hidden'), 'not a key')
    mkdirSync(path.join(secrets, 'folder'))
    writeFileSync(path.join(secrets, 'folder', 'INSIDE'), 'not a key either')
    await createKeystore(file, {format: 'native'})
    assertRun(await ks(['sync', secrets]), {code: 0, stderr: '', stdout: 'added: APM_SECRET_TOKEN, tls.key\nunchanged: 0\n'})
    const keystore = await openKeystore(file)
    assert.deepEqual(keystore.keys(), ['APM_SECRET_TOKEN', 'tls.key'])
    assert.deepEqual(keystore.get('APM_SECRET_TOKEN'), Buffer.from('token\n'), 'the trailing newline is part of the file')
    assert.deepEqual(keystore.get('tls.key'), ALL_BYTES)
  })

  it('follows an update of the Secret: changed and new keys; removed ones only with --prune', async () => {
    await createKeystore(file, {format: 'native'})
    writeSecretMount(secrets, {A: 'one', B: 'two', C: 'three'}, '2026_11_27_10_00_00.1')
    assertRun(await ks(['sync', secrets]), {code: 0, stdout: 'added: A, B, C\nunchanged: 0\n'})
    writeSecretMount(secrets, {A: 'one!', C: 'three', D: 'four'}, '2026_11_27_10_05_00.2')
    assertRun(await ks(['sync', secrets, '--json']), {code: 0, stderr: '', stdout: `${JSON.stringify({added: ['D'], updated: ['A'], removed: [], unchanged: 1}, null, 2)}\n`})
    assert.deepEqual((await openKeystore(file)).keys(), ['A', 'B', 'C', 'D'], 'B is kept without --prune')
    assertRun(await ks(['sync', secrets, '--prune']), {code: 0, stderr: '', stdout: 'removed: B\nunchanged: 3\n'})
    const keystore = await openKeystore(file)
    assert.deepEqual(
      keystore.keys().map((name) => `${name}=${keystore.get(name)}`),
      ['A=one!', 'C=three', 'D=four'],
    )
  })

  it('writes nothing when the keystore already matches: same inode, mtime and bytes (native, password, Beats v1)', async () => {
    writeSecretMount(secrets, {A: 'one', B: ALL_BYTES}, '1')
    for (const [format, password] of [['native', undefined], ['native', 'pw'], ['beats-v1', undefined]] as const) {
      const data = path.join(tmp.dir, `${format}-${password ?? 'plain'}`)
      const at = path.join(data, 'apm-server.keystore')
      // eslint-disable-next-line no-await-in-loop -- three keystores
      await createKeystore(at, {format, kdfParams: CHEAP_KDF, password: password ? Buffer.from(password) : undefined})
      const env = {APM_SERVER_KEYSTORE_PASSWORD: password}
      // eslint-disable-next-line no-await-in-loop -- first sync writes
      assertRun(await ks(['sync', secrets, '--path.data', data], {env}), {code: 0, stdout: 'added: A, B\nunchanged: 0\n'})
      const before = identity(at)
      const bytes = readFileSync(at)
      // The next write, if any, would have a later mtime even on a coarse clock.
      utimesSync(at, new Date(1_700_000_000_000), new Date(1_700_000_000_000))
      const aged = identity(at)
      // eslint-disable-next-line no-await-in-loop -- second sync must not write
      assertRun(await ks(['sync', secrets, '--path.data', data, '--prune'], {env}), {code: 0, stderr: '', stdout: 'unchanged: 2\n'})
      assert.notEqual(before, aged)
      assert.equal(identity(at), aged, `${format} ${password ? 'with' : 'without'} password: rewritten`)
      assert.deepEqual(readFileSync(at), bytes)
      assert.deepEqual(namesIn(data), ['apm-server.keystore', 'apm-server.keystore.audit'], 'no lock or temp file left')
      // eslint-disable-next-line no-await-in-loop -- checked per format
      assert.deepEqual(await inspectKeystore(at), {format, passwordProtected: password !== undefined})
    }
  })

  it('--check changes nothing: exit 0 when it matches, else exit 1 with the names that would change', async () => {
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => {
      keystore.set('A', Buffer.from('one'))
      keystore.set('B', Buffer.from('two'))
      keystore.set('OLD', Buffer.from('old'))
    })
    writeSecretMount(secrets, {A: 'one', B: 'changed', NEW: 'new'}, '1')
    const bytes = readFileSync(file)
    const differs = 'Keystore ' + file + ' does not match ' + secrets + '; run sync without --check to apply.\n'
    assertRun(await ks(['sync', secrets, '--check']), {code: 1, stderr: differs, stdout: 'would add: NEW\nwould update: B\nunchanged: 1\n'})
    assertRun(await ks(['sync', secrets, '--check', '--prune']), {code: 1, stderr: differs, stdout: 'would add: NEW\nwould update: B\nwould remove: OLD\nunchanged: 1\n'})
    assertRun(await ks(['sync', secrets, '--check', '--prune', '--json']), {code: 1, stderr: '', stdout: `${JSON.stringify({added: ['NEW'], updated: ['B'], removed: ['OLD'], unchanged: 1}, null, 2)}\n`})
    assert.deepEqual(readFileSync(file), bytes)
    assertRun(await ks(['sync', secrets]), {code: 0, stdout: 'added: NEW\nupdated: B\nunchanged: 1\n'})
    assertRun(await ks(['sync', secrets, '--check']), {code: 0, stderr: '', stdout: 'unchanged: 3\n'})
    assertRun(await ks(['sync', secrets, '--check', '--prune']), {code: 1, stdout: 'would remove: OLD\nunchanged: 3\n'})
    // Without a keystore everything would be added, and nothing is created.
    assertRun(await ks(['sync', secrets, '--check', '--path.data', path.join(tmp.dir, 'none')]), {code: 1, stdout: 'would add: A, B, NEW\nunchanged: 0\n'})
    assert.deepEqual(namesIn(tmp.dir).includes('none'), false)
  })

  it('names every file that cannot become a key at once (bad name, empty, FIFO, /dev/zero, link loop, broken link, over 64 MiB), and changes nothing', async () => {
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('KEEP', Buffer.from('kept')))
    const bytes = readFileSync(file)
    mkdirSync(secrets)
    writeFileSync(path.join(secrets, 'GOOD'), 'fine')
    writeFileSync(path.join(secrets, 'bad name'), 'x')
    writeFileSync(path.join(secrets, 'EMPTY'), '')
    execFileSync('mkfifo', [path.join(secrets, 'FIFO')])
    symlinkSync('/dev/zero', path.join(secrets, 'ZERO'))
    symlinkSync('LOOP', path.join(secrets, 'LOOP'))
    symlinkSync('nowhere', path.join(secrets, 'DANGLING'))
    writeFileSync(path.join(secrets, 'BIG'), '')
    truncateSync(path.join(secrets, 'BIG'), 64 * 1024 * 1024 + 1)
    const run = await ks(['sync', secrets, '--prune'], {timeoutMs: 20_000})
    assert.equal(run.signal, null, 'sync hung on a FIFO or /dev/zero')
    assertFailure(
      run,
      1,
      'ESYNC',
      `${secrets} has 7 files that cannot become keys: a FIFO, not a regular file: "FIFO"; a broken symbolic link (or removed while being read): "DANGLING"; ` +
        `a character device, not a regular file: "ZERO"; a symbolic link loop: "LOOP"; empty: "EMPTY"; not a valid key name (${RULE}): "bad name"; ` +
        'over the 67108864-byte (64 MiB) limit for one value: "BIG"; nothing was changed: fix or remove them (names starting with "." and folders are skipped)',
    )
    assert.deepEqual(readFileSync(file), bytes)
  })

  it('groups the problems by kind, names five files of each and counts the rest, escapes odd names', async () => {
    await createKeystore(file, {format: 'native'})
    mkdirSync(secrets)
    for (let i = 0; i < 25; i++) writeFileSync(path.join(secrets, `E${String(i).padStart(2, '0')}`), '')
    writeFileSync(path.join(secrets, 'line\nbreak'), 'x')
    execFileSync('mkfifo', [path.join(secrets, 'Z_FIFO')])
    const run = await ks(['sync', secrets])
    assertFailure(
      run,
      1,
      'ESYNC',
      `${secrets} has 27 files that cannot become keys: a FIFO, not a regular file: "Z_FIFO"; empty: "E00", "E01", "E02", "E03", "E04" and 20 more; ` +
        `not a valid key name (${RULE}): "line\\nbreak"; nothing was changed: fix or remove them (names starting with "." and folders are skipped)`,
    )
  })

  it('refuses an empty, missing or non-directory DIR (a missing mount must not empty the keystore)', async () => {
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('KEEP', Buffer.from('kept')))
    mkdirSync(path.join(secrets, '..data'), {recursive: true})
    const check = 'check that the directory is mounted'
    assertFailure(await ks(['sync', secrets, '--prune']), 1, 'ESYNC', `${secrets} holds no file to sync (names starting with "." and folders are skipped); nothing was changed: ${check}`)
    const missing = path.join(tmp.dir, 'missing')
    assertFailure(await ks(['sync', missing]), 1, 'ESYNC', `${missing} does not exist; give the directory of files to sync (a mounted Secret)`)
    assertFailure(await ks(['sync', file]), 1, 'ESYNC', `${file} is not a directory; give the directory of files to sync (a mounted Secret)`)
    assert.deepEqual((await openKeystore(file)).keys(), ['KEEP'])
  })

  describe('under strict perms, a directory, file or link another user controls (as root, with a throwaway user)', () => {
    let other: {name: string; uid: number} | undefined
    before(function () {
      if (process.getuid?.() !== 0) this.skip()
      const name = `apms${randomBytes(3).toString('hex')}`
      try {
        execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name], {stdio: 'ignore'})
      } catch {
        this.skip()
      }

      other = {name, uid: Number(execFileSync('id', ['-u', name], {encoding: 'utf8'}).trim())}
    })
    after(() => {
      if (other) execFileSync('userdel', [other.name], {stdio: 'ignore'})
    })

    it('refuses the other user\'s files and links in a shared sticky directory, each named in the one line; --strict.perms=false allows them', async () => {
      const {uid} = other!
      await createKeystore(file, {format: 'native'})
      mkdirSync(secrets, {mode: 0o1777})
      chmodSync(secrets, 0o1777)
      writeFileSync(path.join(secrets, 'APM_SECRET_TOKEN'), 'the-real-token')
      // What the other user plants: their own files, a link of theirs to a file only root can read, and
      // (made by root, pointing at the other user's file) a link whose target they own.
      for (const name of ['NODE_OPTIONS', 'REDIS_PASSWORD']) {
        writeFileSync(path.join(secrets, name), '--require=/tmp/x.js')
        chownSync(path.join(secrets, name), uid, uid)
      }

      symlinkSync('/etc/shadow', path.join(secrets, 'SHADOW'))
      lchownSync(path.join(secrets, 'SHADOW'), uid, uid)
      const theirs = path.join(tmp.dir, 'theirs')
      writeFileSync(theirs, 'their value')
      chownSync(theirs, uid, uid)
      symlinkSync(theirs, path.join(secrets, 'LINKED'))
      const message = `${secrets} has 4 files that cannot become keys: a symbolic link another user owns or can re-point (not uid 0 or root): "SHADOW"; owned by another user (not uid 0 or root): "LINKED", "NODE_OPTIONS", "REDIS_PASSWORD"; nothing was changed: fix or remove them (names starting with "." and folders are skipped) (--strict.perms=false disables this check)`
      assertFailure(await ks(['sync', secrets]), 1, 'ESYNC', message)
      assertFailure(await ks(['sync', secrets, '--check']), 1, 'ESYNC', message)
      assert.deepEqual((await openKeystore(file)).keys(), [])
      const relaxed = await ks(['sync', secrets, '--strict.perms=false'])
      assertRun(relaxed, {code: 0, stderr: '', stdout: 'added: APM_SECRET_TOKEN, LINKED, NODE_OPTIONS, REDIS_PASSWORD, SHADOW\nunchanged: 0\n'})
    })

    it('refuses a directory the other user owns or can write (group-writable, not sticky), or whose ..data they own', async () => {
      const {uid} = other!
      await createKeystore(file, {format: 'native'})
      writeSecretMount(secrets, {APM_SECRET_TOKEN: 'token'}, '2026_12_04_10_00_00.000000001')
      chownSync(secrets, uid, uid)
      assertFailure(
        await ks(['sync', secrets]),
        1,
        'EPERMS',
        `sync directory ${secrets} is owned by uid ${uid}, not by the current user (uid 0) or root, and its owner could put any file in it; run "chown 0 ${secrets}" or run as its owner (--strict.perms=false disables this check)`,
      )
      chownSync(secrets, 0, 0)
      chmodSync(secrets, 0o775)
      assertFailure(
        await ks(['sync', secrets]),
        1,
        'EPERMS',
        `sync directory ${secrets} has mode 0775, writable by group or others, who could add, replace or remove its files; run "chmod go-w ${secrets}" (--strict.perms=false disables this check)`,
      )
      chmodSync(secrets, 0o755)
      lchownSync(path.join(secrets, '..data'), uid, uid)
      assertFailure(
        await ks(['sync', secrets]),
        1,
        'EPERMS',
        `sync directory ${path.join(secrets, '..data')} is a symbolic link owned by uid ${uid}, not by the current user (uid 0) or root; check where it points, then run "chown -h 0 ${path.join(secrets, '..data')}" (--strict.perms=false disables this check)`,
      )
      assert.deepEqual((await openKeystore(file)).keys(), [])
      lchownSync(path.join(secrets, '..data'), 0, 0)
      // The Kubernetes layout, root's links into root's ..data in a sticky world-writable mount, passes.
      chmodSync(secrets, 0o1777)
      assertRun(await ks(['sync', secrets]), {code: 0, stderr: '', stdout: 'added: APM_SECRET_TOKEN\nunchanged: 0\n'})
    })
  })

  it('creates a missing keystore, with the password from the environment when one is set; keeps the host key', async () => {
    writeSecretMount(secrets, {APM_SECRET_TOKEN: 'token'}, '1')
    const protectedHome = path.join(tmp.dir, 'protected')
    const env = {APM_SERVER_KEYSTORE_PASSWORD: 'pod password'}
    assertRun(await ks(['sync', secrets, '--path.data', protectedHome], {env}), {
      code: 0,
      stderr: `warning: created ${path.join(protectedHome, 'apm-server.keystore')}, password protected\n`,
      stdout: 'added: APM_SECRET_TOKEN\nunchanged: 0\n',
    })
    const at = path.join(protectedHome, 'apm-server.keystore')
    assert.deepEqual(await inspectKeystore(at), {format: 'native', passwordProtected: true})
    assert.equal((await openKeystore(at, {password: passwordOf('pod password')})).get('APM_SECRET_TOKEN').toString(), 'token')
    assertRun(await ks(['sync', secrets]), {
      code: 0,
      stderr: `warning: created ${file} without a password; run "apm-server keystore passwd" to protect it\n`,
      stdout: 'added: APM_SECRET_TOKEN\nunchanged: 0\n',
    })
    const recipient = await ks(['recipient'])
    const signer = await ks(['recipient', '--signer'])
    writeSecretMount(secrets, {APM_SECRET_TOKEN: 'rotated'}, '2')
    assertRun(await ks(['sync', secrets, '--prune']), {code: 0, stdout: 'updated: APM_SECRET_TOKEN\nunchanged: 0\n'})
    assertRun(await ks(['recipient']), {code: 0, stdout: recipient.stdout})
    assertRun(await ks(['recipient', '--signer']), {code: 0, stderr: '', stdout: signer.stdout})
  })

  it('a Beats v1 keystore stays Beats v1 (the Go apm-server keeps reading it)', async () => {
    await createKeystore(file, {format: 'beats-v1'})
    writeSecretMount(secrets, {A: 'one'}, '1')
    assertRun(await ks(['sync', secrets]), {code: 0, stdout: 'added: A\nunchanged: 0\n'})
    assert.equal(readFileSync(file).subarray(0, 2).toString(), 'v1')
    assert.equal((await openKeystore(file)).get('A').toString(), 'one')
  })

  it('kill -9 during sync leaves the old or the new keystore, and the next sync completes', async function () {
    this.timeout(120_000)
    await createKeystore(file, {format: 'native'})
    await updateKeystore(file, {}, (keystore) => keystore.set('KEEP', Buffer.from('kept')))
    // Enough files that the sync takes a while, each round with new values so each sync must write.
    const outcomes = {after: 0, before: 0}
    for (let round = 0; round < 6; round++) {
      rmSync(secrets, {force: true, recursive: true})
      const files = Object.fromEntries(Array.from({length: 1500}, (_, i) => [`K${i}`, `round-${round}-value-${i}`]))
      writeSecretMount(secrets, files, String(round))
      const before = await openKeystore(file)
      const beforeState = before
        .keys()
        .map((name) => `${name}=${before.get(name)}`)
        .sort()
      // Half the rounds at the temp file (mid-write), half at a random moment of the run.
      // eslint-disable-next-line no-await-in-loop -- one kill at a time
      const {killed, result} = await runCliAndKill(['keystore', 'sync', secrets, '--prune'], {cwd: tmp.dir}, path.dirname(file), round % 2 === 0 ? undefined : 200 + round * 60)
      // eslint-disable-next-line no-await-in-loop -- the state after the kill
      const seen = await openKeystore(file)
      const state = seen
        .keys()
        .map((name) => `${name}=${seen.get(name)}`)
        .sort()
      const afterState = Object.entries(files)
        .map(([name, value]) => `${name}=${value}`)
        .sort()
      if (!killed) assert.equal(result.code, 0, result.stderr)
      if (JSON.stringify(state) === JSON.stringify(afterState)) outcomes.after++
      else if (JSON.stringify(state) === JSON.stringify(beforeState)) outcomes.before++
      else assert.fail(`round ${round}: the keystore holds neither the state before nor after (${state.length} keys)`)
      // A dead holder's lock goes stale after 4 s; age it instead of waiting.
      for (const name of namesIn(path.dirname(file))) {
        if (name.endsWith('.lock')) utimesSync(path.join(path.dirname(file), name), new Date(0), new Date(0))
      }

      // eslint-disable-next-line no-await-in-loop -- the next sync completes the change
      const next = await ks(['sync', secrets, '--prune'])
      assert.equal(next.code, 0, next.stderr)
      assert.deepEqual(namesIn(path.dirname(file)), ['apm-server.keystore', 'apm-server.keystore.audit'], 'the next sync left the directory clean')
    }

    assert.ok(outcomes.before > 0, `no kill landed before the rename: ${JSON.stringify(outcomes)}`)
  })
})
