import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import {promises as fsPromises} from 'node:fs'
import path from 'node:path'

import {
  ensureKeystoreDir,
  MAX_KEYSTORE_BYTES,
  readKeystoreFile,
  withKeystoreLock,
  writeKeystoreFile,
} from '../../src/core/keystore-file.js'
import {makeTempDir, ROOT} from '../helpers/cli.js'
import {assertKeystoreError, modeOf, namesIn} from '../helpers/keystore.js'

describe('core/keystore-file', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  beforeEach(() => {
    tmp = makeTempDir()
    file = path.join(tmp.dir, 'apm-server.keystore')
  })
  afterEach(() => tmp.cleanup())

  describe('readKeystoreFile', () => {
    it('returns undefined when there is no file, and the bytes when there is', async () => {
      assert.equal(await readKeystoreFile(file), undefined)
      writeFileSync(file, Buffer.from([0, 1, 2, 255]), {mode: 0o600})
      assert.deepEqual(await readKeystoreFile(file), Buffer.from([0, 1, 2, 255]))
    })

    it('strict perms: refuses a file open to group or others, naming the path and the chmod fix', async () => {
      writeFileSync(file, 'x')
      for (const mode of [0o644, 0o640, 0o604, 0o660, 0o610, 0o601, 0o777]) {
        chmodSync(file, mode)
        const shown = mode.toString(8).padStart(4, '0')
        // eslint-disable-next-line no-await-in-loop -- a table of modes
        await assertKeystoreError(
          readKeystoreFile(file),
          'EPERMS',
          `keystore ${file} has mode ${shown}, open to group or others; run "chmod 600 ${file}" (--strict.perms=false disables this check)`,
        )
        // eslint-disable-next-line no-await-in-loop -- a table of modes
        assert.deepEqual(await readKeystoreFile(file, {strictPerms: false}), Buffer.from('x'))
      }

      for (const mode of [0o600, 0o400, 0o700]) {
        chmodSync(file, mode)
        // eslint-disable-next-line no-await-in-loop -- a table of modes
        assert.deepEqual(await readKeystoreFile(file), Buffer.from('x'), mode.toString(8))
      }
    })

    it('strict perms: refuses a file owned by another user (not root), naming the uid and the fix', async function () {
      const uid = process.getuid?.()
      // chown to an arbitrary uid needs root; without it the case cannot be set up here.
      if (uid !== 0) this.skip()
      writeFileSync(file, 'x', {mode: 0o600})
      chownSync(file, 54_321, 54_321)
      await assertKeystoreError(
        readKeystoreFile(file),
        'EPERMS',
        `keystore ${file} is owned by uid 54321, not by the current user (uid 0) or root; run "chown 0 ${file}" or run as its owner (--strict.perms=false disables this check)`,
      )
      assert.deepEqual(await readKeystoreFile(file, {strictPerms: false}), Buffer.from('x'))
    })

    it('follows a symbolic link and checks the target; refuses a directory', async () => {
      const real = path.join(tmp.dir, 'real')
      writeFileSync(real, 'x', {mode: 0o600})
      symlinkSync(real, file)
      assert.deepEqual(await readKeystoreFile(file), Buffer.from('x'))
      chmodSync(real, 0o644)
      await assertKeystoreError(readKeystoreFile(file), 'EPERMS', new RegExp(`^keystore ${file} has mode 0644, open to group or others`))
      const dir = path.join(tmp.dir, 'dir.keystore')
      mkdirSync(dir, {mode: 0o700})
      await assertKeystoreError(readKeystoreFile(dir), 'EFORMAT', `keystore ${dir} is not a regular file; point keystore.path at a file`)
    })

    // Readers take no lock: a writer's rename between the path walk and the open is the normal case, not
    // an attack. Strict perms refused it ("changed while it was being opened"): `add`s run side by side failed.
    it('strict perms: reads while another process renames new versions into place never fail, and see a whole version', async () => {
      const versions = ['A'.repeat(4096), 'B'.repeat(4096)]
      writeFileSync(file, versions[0], {mode: 0o600})
      const writer = spawn(process.execPath, ['-e', `
        const fs = require('node:fs')
        const end = Date.now() + 3000
        for (let i = 0; Date.now() < end; i++) {
          const temp = process.argv[1] + '.tmp-' + i
          fs.writeFileSync(temp, process.argv[2 + (i % 2)], {mode: 0o600})
          fs.renameSync(temp, process.argv[1])
        }
      `, file, ...versions], {stdio: 'ignore'})
      const exited = new Promise((resolve) => writer.once('exit', resolve))
      const failures: string[] = []
      let reads = 0
      for (const deadline = Date.now() + 2500; Date.now() < deadline; reads++) {
        // eslint-disable-next-line no-await-in-loop -- one read after another, racing the writer
        const data = await readKeystoreFile(file).catch((error: Error) => failures.push(error.message))
        if (Buffer.isBuffer(data) && !versions.includes(data.toString())) failures.push(`a torn read of ${data.length} bytes`)
      }

      await exited
      assert.deepEqual(failures.slice(0, 3), [], `${failures.length} of ${reads} reads failed`)
      assert.ok(reads > 50, `only ${reads} reads`)
    })

    it('refuses a file over the size cap without reading it', async () => {
      writeFileSync(file, '', {mode: 0o600})
      truncateSync(file, MAX_KEYSTORE_BYTES + 1) // sparse: costs no disk
      await assertKeystoreError(
        readKeystoreFile(file),
        'ELIMITS',
        `keystore ${file} is ${MAX_KEYSTORE_BYTES + 1} bytes, over the ${MAX_KEYSTORE_BYTES}-byte limit; the file is not a keystore or is damaged`,
      )
    })

    it('a path under a regular file: EIO naming the path', async () => {
      writeFileSync(path.join(tmp.dir, 'plain'), 'x')
      const under = path.join(tmp.dir, 'plain', 'apm-server.keystore')
      await assertKeystoreError(readKeystoreFile(under), 'EIO', `cannot open keystore ${under}: ENOTDIR; check the path and its permissions`)
    })
  })

  describe('writeKeystoreFile', () => {
    it('creates missing directories 0700 and the file 0600, replacing a looser file', async () => {
      const deep = path.join(tmp.dir, 'x', 'y', 'apm-server.keystore')
      await writeKeystoreFile(deep, Buffer.from('one'))
      assert.equal(modeOf(path.join(tmp.dir, 'x')), 0o700)
      assert.equal(modeOf(path.join(tmp.dir, 'x', 'y')), 0o700)
      assert.equal(modeOf(deep), 0o600)
      chmodSync(deep, 0o644)
      await writeKeystoreFile(deep, Buffer.from('two'))
      assert.equal(modeOf(deep), 0o600)
      assert.deepEqual(await readKeystoreFile(deep), Buffer.from('two'))
      assert.deepEqual(namesIn(path.dirname(deep)), ['apm-server.keystore'])
    })

    it('removes temp files a killed writer left behind, and only those; a planted link is removed, not followed', async () => {
      const outside = path.join(tmp.dir, 'outside')
      writeFileSync(outside, 'not ours', {mode: 0o600})
      const leftover = `apm-server.keystore.tmp-${'0123456789abcdef'.repeat(2)}`
      for (const name of [leftover, 'apm-server.keystore.12345', 'apm-server.keystore.tmp-x', 'apm-server.keystore.bak', 'other.tmp-0123456789abcdef0123456789abcdef']) {
        writeFileSync(path.join(tmp.dir, name), 'left over')
      }

      const link = `apm-server.keystore.tmp-${'fedcba9876543210'.repeat(2)}`
      symlinkSync(outside, path.join(tmp.dir, link))
      await writeKeystoreFile(file, Buffer.from('x'))
      assert.deepEqual(namesIn(tmp.dir), [
        'apm-server.keystore',
        'apm-server.keystore.12345',
        'apm-server.keystore.bak',
        'apm-server.keystore.tmp-x',
        'other.tmp-0123456789abcdef0123456789abcdef',
        'outside',
      ])
      assert.equal(readFileSync(outside, 'utf8'), 'not ours')
    })

    it('an entry planted at the temp name the instant before it is opened (a link to another file) fails the write; the target is untouched', async () => {
      await writeKeystoreFile(file, Buffer.from('one'))
      const victim = path.join(tmp.dir, 'victim')
      writeFileSync(victim, 'precious', {mode: 0o644})
      // The attacker who wins every race: a link at exactly the name the writer opens, made just before.
      const realOpen = fsPromises.open
      let planted = ''
      fsPromises.open = (async (name: string, ...rest: unknown[]) => {
        if (typeof name === 'string' && name.includes('.tmp-')) {
          planted = name
          symlinkSync(victim, name)
        }

        return (realOpen as (...args: unknown[]) => Promise<unknown>)(name, ...rest)
      }) as typeof fsPromises.open
      try {
        await assertKeystoreError(writeKeystoreFile(file, Buffer.from('two')), 'EIO', `cannot write keystore ${file}: EEXIST; check the path and its permissions`)
      } finally {
        fsPromises.open = realOpen
      }

      assert.match(path.basename(planted), /^apm-server\.keystore\.tmp-[0-9a-f]{32}$/)
      assert.equal(readFileSync(victim, 'utf8'), 'precious')
      assert.equal(modeOf(victim), 0o644)
      assert.deepEqual(await readKeystoreFile(file), Buffer.from('one'))
      assert.deepEqual(namesIn(tmp.dir), ['apm-server.keystore', 'victim'])
    })

    it('a temp file swapped for a link after it was written is never renamed into place (a directory others can write)', async () => {
      await writeKeystoreFile(file, Buffer.from('one'))
      const victim = path.join(tmp.dir, 'victim')
      writeFileSync(victim, 'theirs', {mode: 0o600})
      const swap = async () => {
        const temp = readdirSync(tmp.dir).find((name) => name.includes('.tmp-'))!
        rmSync(path.join(tmp.dir, temp))
        symlinkSync(victim, path.join(tmp.dir, temp))
      }

      await assertKeystoreError(
        writeKeystoreFile(file, Buffer.from('two'), {beforeReplace: swap, strictPerms: false}),
        'EIO',
        `cannot write keystore ${file}: its temp file was removed or replaced by another process; make ${tmp.dir} writable by its owner only ("chmod go-w") and retry`,
      )
      assert.equal(lstatSync(file).isFile(), true)
      assert.deepEqual(await readKeystoreFile(file), Buffer.from('one'))
      assert.equal(readFileSync(victim, 'utf8'), 'theirs')
      assert.deepEqual(namesIn(tmp.dir), ['apm-server.keystore', 'victim'])
    })

    it('sets mode 0600 on the descriptor whatever the umask, and keeps the old owner when root rewrites another user\'s file', async function () {
      const previous = process.umask(0o777)
      try {
        await writeKeystoreFile(file, Buffer.from('one'))
      } finally {
        process.umask(previous)
      }

      assert.equal(modeOf(file), 0o600)
      if (process.getuid?.() !== 0) this.skip()
      chownSync(file, 54_321, 54_322)
      await writeKeystoreFile(file, Buffer.from('two'), {strictPerms: false})
      assert.deepEqual([statSync(file).uid, statSync(file).gid], [54_321, 54_322])
      assert.equal(modeOf(file), 0o600)
    })

    it('strict perms: refuses a directory writable by group or others, naming it and the chmod fix; writes nothing', async () => {
      const dir = path.join(tmp.dir, 'open')
      const inOpen = path.join(dir, 'apm-server.keystore')
      mkdirSync(dir)
      writeFileSync(inOpen, 'old', {mode: 0o600})
      for (const mode of [0o777, 0o770, 0o1777, 0o720, 0o702]) {
        chmodSync(dir, mode)
        const shown = mode.toString(8).padStart(4, '0')
        const message = `directory ${dir} of keystore ${inOpen} has mode ${shown}, writable by group or others, who could replace the keystore; run "chmod go-w ${dir}" (--strict.perms=false disables this check)`
        // eslint-disable-next-line no-await-in-loop -- a table of modes
        await assertKeystoreError(writeKeystoreFile(inOpen, Buffer.from('new')), 'EPERMS', message)
        // eslint-disable-next-line no-await-in-loop -- a table of modes
        await assertKeystoreError(readKeystoreFile(inOpen), 'EPERMS', message)
        // eslint-disable-next-line no-await-in-loop -- a table of modes
        assert.deepEqual(await readKeystoreFile(inOpen, {strictPerms: false}), Buffer.from('old'))
        assert.deepEqual(namesIn(dir), ['apm-server.keystore'])
      }

      chmodSync(dir, 0o755)
      await writeKeystoreFile(inOpen, Buffer.from('new'))
      assert.deepEqual(await readKeystoreFile(inOpen), Buffer.from('new'))
    })

    it('strict perms: refuses a directory owned by another user (not root), after resolving links', async function () {
      if (process.getuid?.() !== 0) this.skip()
      const dir = path.join(tmp.dir, 'theirs')
      mkdirSync(dir, {mode: 0o700})
      const real = path.join(dir, 'apm-server.keystore')
      writeFileSync(real, 'old', {mode: 0o600})
      chownSync(dir, 54_321, 54_321)
      symlinkSync(real, file)
      const message = `directory ${dir} of keystore ${file} is owned by uid 54321, not by the current user (uid 0) or root, and its owner could replace the keystore; run "chown 0 ${dir}" or run as its owner (--strict.perms=false disables this check)`
      await assertKeystoreError(readKeystoreFile(file), 'EPERMS', message)
      await assertKeystoreError(writeKeystoreFile(file, Buffer.from('new')), 'EPERMS', message)
      assert.equal(readFileSync(real, 'utf8'), 'old')
    })

    it('strict perms: a keystore link must be ours, in a directory others cannot write unless it is sticky (secret mounts)', async function () {
      const mount = path.join(tmp.dir, 'mount')
      const data = path.join(mount, '..data')
      mkdirSync(data, {recursive: true, mode: 0o755})
      const real = path.join(data, 'apm-server.keystore')
      writeFileSync(real, 'mounted', {mode: 0o600})
      const link = path.join(mount, 'apm-server.keystore')
      symlinkSync(real, link)
      chmodSync(mount, 0o1777)
      assert.deepEqual(await readKeystoreFile(link), Buffer.from('mounted'))
      chmodSync(mount, 0o777)
      await assertKeystoreError(
        readKeystoreFile(link),
        'EPERMS',
        `directory ${mount} of keystore ${link} has mode 0777, writable by group or others, who could replace the keystore; run "chmod go-w ${mount}" (--strict.perms=false disables this check)`,
      )
      if (process.getuid?.() !== 0) return
      chmodSync(mount, 0o1777)
      lchownSync(link, 54_321, 54_321)
      await assertKeystoreError(
        writeKeystoreFile(link, Buffer.from('x')),
        'EPERMS',
        `keystore ${link} is a symbolic link owned by uid 54321, not by the current user (uid 0) or root; check where it points, then run "chown -h 0 ${link}" (--strict.perms=false disables this check)`,
      )
      assert.equal(readFileSync(real, 'utf8'), 'mounted')
    })

    // The break-local review: only the first link and the final directory were judged.
    it('strict perms: every hop of a link chain is judged; a later link in a directory others can write is refused, readers and writers alike', async () => {
      const real = path.join(tmp.dir, 'real')
      const shared = path.join(tmp.dir, 'shared')
      const home = path.join(tmp.dir, 'home')
      for (const dir of [real, shared, home]) mkdirSync(dir, {mode: 0o755})
      writeFileSync(path.join(real, 'apm-server.keystore'), 'real', {mode: 0o600})
      const hop2 = path.join(shared, 'current')
      symlinkSync(path.join(real, 'apm-server.keystore'), hop2)
      const link = path.join(home, 'apm-server.keystore')
      symlinkSync(hop2, link)
      assert.deepEqual(await readKeystoreFile(link), Buffer.from('real'))
      chmodSync(shared, 0o777)
      const message = `directory ${shared}, holding the symbolic link ${hop2} on the path to keystore ${link}, has mode 0777, writable by group or others, who could re-point that link; run "chmod go-w ${shared}" (--strict.perms=false disables this check)`
      await assertKeystoreError(readKeystoreFile(link), 'EPERMS', message)
      await assertKeystoreError(writeKeystoreFile(link, Buffer.from('new')), 'EPERMS', message)
      await assertKeystoreError(withKeystoreLock(link, async () => 'locked'), 'EPERMS', message)
      assert.equal(readFileSync(path.join(real, 'apm-server.keystore'), 'utf8'), 'real')
      assert.deepEqual(namesIn(real), ['apm-server.keystore'])
      // Sticky, as /tmp: others cannot re-point a link root (or we) own there.
      chmodSync(shared, 0o1777)
      assert.deepEqual(await readKeystoreFile(link), Buffer.from('real'))
      if (process.getuid?.() !== 0) return
      lchownSync(hop2, 54_321, 54_321)
      await assertKeystoreError(
        readKeystoreFile(link),
        'EPERMS',
        `symbolic link ${hop2} on the path to keystore ${link} is owned by uid 54321, not by the current user (uid 0) or root; check where it points, then run "chown -h 0 ${hop2}" (--strict.perms=false disables this check)`,
      )
    })

    it('strict perms: an ancestor others can write (not sticky) is refused, so the data directory cannot be swapped for a link to an older keystore', async () => {
      const shared = path.join(tmp.dir, 'shared')
      const data = path.join(shared, 'data')
      mkdirSync(data, {mode: 0o700, recursive: true})
      const inData = path.join(data, 'apm-server.keystore')
      await writeKeystoreFile(inData, Buffer.from('new'))
      chmodSync(shared, 0o777)
      const message = `directory ${shared} on the path to keystore ${inData} has mode 0777, writable by group or others, who could swap what it holds; run "chmod go-w ${shared}" (--strict.perms=false disables this check)`
      await assertKeystoreError(readKeystoreFile(inData), 'EPERMS', message)
      await assertKeystoreError(writeKeystoreFile(inData, Buffer.from('newer')), 'EPERMS', message)
      // The swap itself: the data directory replaced by a link to another directory, with an old keystore.
      const old = path.join(tmp.dir, 'old')
      mkdirSync(old, {mode: 0o700})
      writeFileSync(path.join(old, 'apm-server.keystore'), 'old', {mode: 0o600})
      renameSync(data, path.join(shared, 'away'))
      symlinkSync(old, data)
      await assertKeystoreError(
        readKeystoreFile(inData),
        'EPERMS',
        `directory ${shared}, holding the symbolic link ${data} on the path to keystore ${inData}, has mode 0777, writable by group or others, who could re-point that link; run "chmod go-w ${shared}" (--strict.perms=false disables this check)`,
      )
      assert.deepEqual(await readKeystoreFile(inData, {strictPerms: false}), Buffer.from('old'))
      // Sticky and root's (or ours), as /tmp: fine.
      chmodSync(shared, 0o1777)
      assert.deepEqual(await readKeystoreFile(inData), Buffer.from('old'))
    })

    it('strict perms: a missing keystore in a directory others can write is refused too, before anything is made there', async () => {
      const open = path.join(tmp.dir, 'open')
      mkdirSync(open, {mode: 0o777})
      chmodSync(open, 0o777)
      const missing = path.join(open, 'data', 'apm-server.keystore')
      const message = `directory ${open} on the path to keystore ${missing} has mode 0777, writable by group or others, who could swap what it holds; run "chmod go-w ${open}" (--strict.perms=false disables this check)`
      await assertKeystoreError(readKeystoreFile(missing), 'EPERMS', message)
      await assertKeystoreError(withKeystoreLock(missing, async () => 'locked'), 'EPERMS', message)
      await assertKeystoreError(writeKeystoreFile(missing, Buffer.from('x')), 'EPERMS', message)
      assert.deepEqual(namesIn(open), [])
      assert.equal(await readKeystoreFile(missing, {strictPerms: false}), undefined)
    })

    it('ensureKeystoreDir leaves an existing directory alone', async () => {
      await ensureKeystoreDir(file)
      assert.ok(existsSync(tmp.dir))
    })
  })

  describe('withKeystoreLock', () => {
    it('holds <file>.lock while running and removes it after, also when fn throws', async () => {
      const seen = await withKeystoreLock(file, async () => existsSync(`${file}.lock`))
      assert.equal(seen, true)
      assert.equal(existsSync(`${file}.lock`), false)
      await assert.rejects(
        withKeystoreLock(file, async () => {
          throw new Error('inside')
        }),
        /inside/,
      )
      assert.equal(existsSync(`${file}.lock`), false)
    })

    it('verify() fails once another process took the lock over, and the new holder\'s lock is left in place', async () => {
      const lockDir = `${file}.lock`
      await writeKeystoreFile(file, Buffer.from('before'))
      await withKeystoreLock(file, async (lock) => {
        await lock.verify()
        // What a takeover does: the stale directory removed, a new one made (often the same inode number on ext4).
        rmSync(lockDir, {recursive: true})
        mkdirSync(lockDir)
        await assertKeystoreError(
          writeKeystoreFile(file, Buffer.from('stale'), {beforeReplace: lock.verify}),
          'ELOCKED',
          `lost the lock on ${file}: this process stalled for over 4s and another one took the lock over; nothing was written, check the keystore ("apm-server keystore list") and retry`,
        )
      })
      assert.deepEqual(await readKeystoreFile(file), Buffer.from('before'))
      assert.equal(existsSync(lockDir), true, 'the new holder\'s lock was removed')
      assert.deepEqual(namesIn(tmp.dir), ['apm-server.keystore', 'apm-server.keystore.lock'])
    })

    it('interrupted (SIGTERM) after its lock was taken over, a holder leaves the new holder\'s lock directory alone', () => {
      const script = [
        "import {mkdirSync, rmSync} from 'node:fs'",
        `import {withKeystoreLock} from ${JSON.stringify(path.join(ROOT, 'src', 'core', 'keystore-file.ts'))}`,
        `const file = ${JSON.stringify(file)}`,
        'await withKeystoreLock(file, async () => {',
        "  rmSync(`${file}.lock`, {recursive: true})",
        "  mkdirSync(`${file}.lock`)",
        "  process.kill(process.pid, 'SIGTERM')",
        '  await new Promise((resolve) => setTimeout(resolve, 5000))',
        '})',
      ].join('\n')
      const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {cwd: ROOT, encoding: 'utf8'})
      assert.equal(child.signal, 'SIGTERM', child.stderr)
      assert.equal(existsSync(`${file}.lock`), true, 'the exit handler removed the new holder\'s lock')
    })

    it('makes its lock directory 0700 whatever the umask', async () => {
      const previous = process.umask(0)
      try {
        assert.equal(await withKeystoreLock(file, async () => modeOf(`${file}.lock`)), 0o700)
      } finally {
        process.umask(previous)
      }
    })

    it('serialises holders and fails with ELOCKED after the timeout, naming the lock and the fix', async () => {
      let release!: () => void
      const held = withKeystoreLock(file, () => new Promise<void>((resolve) => (release = resolve)))
      // let the first holder take the lock
      while (!existsSync(`${file}.lock`)) {
        // eslint-disable-next-line no-await-in-loop -- polling for the lock directory
        await new Promise((resolve) => setTimeout(resolve, 5))
      }

      await assertKeystoreError(
        withKeystoreLock(file, async () => 'never', {timeoutMs: 200}),
        'ELOCKED',
        `keystore ${file} is locked by another process (waited 0s); retry, or remove ${file}.lock if no apm-server process is running`,
      )
      const order: string[] = []
      const second = withKeystoreLock(file, async () => order.push('second'))
      await new Promise((resolve) => setTimeout(resolve, 150))
      assert.deepEqual(order, [], 'the second holder ran while the first held the lock')
      release()
      await held
      await second
      assert.deepEqual(order, ['second'])
      assert.equal(existsSync(`${file}.lock`), false)
    })

    // The break-local review: the lock was `<name>.lock` but the write replaced the link's target, so a
    // keystore reached by two names had two locks, and concurrent writers lost each other's updates.
    it('locks the file that gets replaced: a link and its target share one lock, next to the target', async () => {
      const real = path.join(tmp.dir, 'real', 'apm-server.keystore')
      await writeKeystoreFile(real, Buffer.from('x'))
      const data = path.join(tmp.dir, 'data')
      mkdirSync(data, {mode: 0o700})
      const link = path.join(data, 'apm-server.keystore')
      symlinkSync(real, link)
      let release!: () => void
      const held = withKeystoreLock(link, async (lock) => {
        assert.equal(lock.target, real)
        await new Promise<void>((resolve) => (release = resolve))
      })
      while (!existsSync(`${real}.lock`)) {
        // eslint-disable-next-line no-await-in-loop -- polling for the lock directory
        await new Promise((resolve) => setTimeout(resolve, 5))
      }

      assert.deepEqual(namesIn(data), ['apm-server.keystore'])
      await assertKeystoreError(
        withKeystoreLock(real, async () => 'never', {timeoutMs: 200}),
        'ELOCKED',
        `keystore ${real} is locked by another process (waited 0s); retry, or remove ${real}.lock if no apm-server process is running`,
      )
      release()
      await held
      assert.deepEqual(namesIn(path.dirname(real)), ['apm-server.keystore'])
    })

    it('verify() and the write refuse when the name was re-pointed to another file while the lock was held', async () => {
      const a = path.join(tmp.dir, 'a.keystore')
      const b = path.join(tmp.dir, 'b.keystore')
      await writeKeystoreFile(a, Buffer.from('a'))
      await writeKeystoreFile(b, Buffer.from('b'))
      symlinkSync(a, file)
      await withKeystoreLock(file, async (lock) => {
        rmSync(file)
        symlinkSync(b, file)
        const message = `keystore ${file} no longer leads to ${a}, the file this process locked: it was re-pointed meanwhile; nothing was written, retry`
        await assertKeystoreError(lock.verify(), 'ELOCKED', message)
        await assertKeystoreError(writeKeystoreFile(file, Buffer.from('new'), {beforeReplace: lock.verify, target: lock.target}), 'ELOCKED', message)
      })
      assert.equal(readFileSync(a, 'utf8'), 'a')
      assert.equal(readFileSync(b, 'utf8'), 'b')
    })

    // The break-local review: a stale lock was removed with fs.rm({recursive: true}), a walk by path; another
    // user planted a "lock" whose subdirectories flipped to links to a root directory, and root's walk
    // deleted root's files there. A lock directory is always empty: removed with rmdir, or refused.
    it('a stale lock that is not an empty directory is refused, never removed recursively; nothing under it, or where its links point, is touched', async () => {
      const lockDir = `${file}.lock`
      const precious = path.join(tmp.dir, 'precious')
      mkdirSync(precious, {mode: 0o700})
      writeFileSync(path.join(precious, 'f1'), 'root data', {mode: 0o600})
      const old = new Date(Date.now() - 3_600_000)
      const plant: Array<[string, () => void, string]> = [
        ['a directory with a subdirectory and a link in it', () => {
          mkdirSync(path.join(lockDir, 'a'), {recursive: true})
          writeFileSync(path.join(lockDir, 'a', 'keep'), '')
          symlinkSync(precious, path.join(lockDir, 's0'))
        }, 'is not empty'],
        ['a link to a directory', () => symlinkSync(precious, lockDir), 'is a symbolic link'],
        ['a file', () => writeFileSync(lockDir, ''), 'is not a directory'],
      ]
      for (const [what, make, reason] of plant) {
        rmSync(lockDir, {force: true, recursive: true})
        make()
        lutimesSync(lockDir, old, old)
        // eslint-disable-next-line no-await-in-loop -- a table
        await assertKeystoreError(
          withKeystoreLock(file, async () => assert.fail(`the lock was taken over ${what}`), {timeoutMs: 2000}),
          'ELOCKED',
          `${lockDir} ${reason}, so it is not a lock apm-server made (those are empty directories of the user running it, or root); nothing was changed: check what it is, and remove it yourself if no apm-server process is running`,
        )
        assert.equal(lstatSync(lockDir).isSymbolicLink() || existsSync(lockDir), true, `${what}: removed`)
        assert.deepEqual(namesIn(precious), ['f1'], what)
      }

      assert.equal(namesIn(tmp.dir).includes('apm-server.keystore.lock.takeover'), false, 'a takeover marker was left')
      // An empty stale lock of ours is still taken over.
      rmSync(lockDir, {force: true, recursive: true})
      mkdirSync(lockDir, {mode: 0o700})
      utimesSync(lockDir, old, old)
      assert.equal(await withKeystoreLock(file, async () => 'taken over', {timeoutMs: 2000}), 'taken over')
      assert.equal(existsSync(lockDir), false)
    })

    it('strict perms: a data directory others can write is refused before a stale lock there is touched, also when there is no keystore', async () => {
      const open = path.join(tmp.dir, 'open')
      mkdirSync(open)
      chmodSync(open, 0o777)
      const inOpen = path.join(open, 'apm-server.keystore')
      const lockDir = `${inOpen}.lock`
      mkdirSync(path.join(lockDir, 'a'), {recursive: true})
      const old = new Date(Date.now() - 3_600_000)
      utimesSync(lockDir, old, old)
      await assertKeystoreError(
        withKeystoreLock(inOpen, async () => assert.fail('the lock was taken')),
        'EPERMS',
        `directory ${open} of keystore ${inOpen} has mode 0777, writable by group or others, who could replace the keystore; run "chmod go-w ${open}" (--strict.perms=false disables this check)`,
      )
      assert.deepEqual(namesIn(open), ['apm-server.keystore.lock'])
      assert.deepEqual(namesIn(lockDir), ['a'])
    })
  })
})
