import assert from 'node:assert/strict'
import {chmodSync, chownSync, existsSync, mkdirSync, symlinkSync, truncateSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {
  ensureKeystoreDir,
  MAX_KEYSTORE_BYTES,
  readKeystoreFile,
  withKeystoreLock,
  writeKeystoreFile,
} from '../../src/core/keystore-file.js'
import {makeTempDir} from '../helpers/cli.js'
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

    it('removes temp files a killed writer left behind, and only those', async () => {
      for (const name of ['apm-server.keystore.12345', 'apm-server.keystore.4294967295', 'apm-server.keystore.bak', 'other.1']) {
        writeFileSync(path.join(tmp.dir, name), 'left over')
      }

      await writeKeystoreFile(file, Buffer.from('x'))
      assert.deepEqual(namesIn(tmp.dir), ['apm-server.keystore', 'apm-server.keystore.bak', 'other.1'])
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
  })
})
