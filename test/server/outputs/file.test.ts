import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import fsModule, {existsSync, promises as fs, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {syncBuiltinESMExports} from 'node:module'
import path from 'node:path'
import {setImmediate as nextTurn} from 'node:timers/promises'

import {FileOutput, FileOutputOptions, HIGH_WATER_BYTES, TICK_BUDGET_BYTES} from '../../../src/server/outputs/file.js'
import {makeTempDir} from '../../helpers/cli.js'

/** A line of exactly `bytes` bytes with its newline, numbered. */
function line(n: number, bytes = 100): string {
  const head = JSON.stringify({n})
  return `${head.slice(0, -1)},"pad":"${'x'.repeat(bytes - head.length - 10)}"}`
}

async function read(file: string): Promise<string[]> {
  const text = await fs.readFile(file, 'utf8')
  return text === '' ? [] : text.slice(0, -1).split('\n')
}

describe('server/outputs/file', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let dir: string
  beforeEach(() => {
    tmp = makeTempDir('apm-output-test-')
    dir = path.join(tmp.dir, 'data', 'apm-server')
  })
  afterEach(() => tmp.cleanup())

  const options = (overrides: Partial<FileOutputOptions> = {}): FileOutputOptions => ({filename: 'apm-server', numberOfFiles: 7, path: dir, rotateEveryKb: 10_240, ...overrides})

  it('appends one line per event, creating the directory and a 0600 file', async () => {
    const output = await FileOutput.open(options())
    output.write(line(1))
    output.write(line(2))
    await output.flush()
    assert.deepEqual(await read(path.join(dir, 'apm-server')), [line(1), line(2)])
    output.write(line(3))
    await output.close()
    assert.deepEqual(await read(path.join(dir, 'apm-server')), [line(1), line(2), line(3)])
    assert.equal((await fs.stat(path.join(dir, 'apm-server'))).mode & 0o777, 0o600)
  })

  it('appends to a file left by an earlier run', async () => {
    const first = await FileOutput.open(options())
    first.write(line(1))
    await first.close()
    const second = await FileOutput.open(options())
    second.write(line(2))
    await second.close()
    assert.deepEqual(await read(path.join(dir, 'apm-server')), [line(1), line(2)])
  })

  it('flush() waits only for what was queued before it, across many writers', async () => {
    const output = await FileOutput.open(options())
    const flushes: Promise<void>[] = []
    for (let i = 0; i < 50; i++) {
      output.write(line(i))
      if (i % 10 === 9) flushes.push(output.flush())
    }

    await Promise.all(flushes)
    assert.equal((await read(path.join(dir, 'apm-server'))).length, 50)
    await output.close()
  })

  it('flush() writes what is queued before it returns; lines nobody flushes are written by the end of the tick', async () => {
    const output = await FileOutput.open(options())
    output.write(line(1))
    const flushed = output.flush()
    assert.deepEqual(readFileSync(path.join(dir, 'apm-server'), 'utf8'), `${line(1)}\n`)
    await flushed
    output.write(line(2))
    assert.deepEqual(readFileSync(path.join(dir, 'apm-server'), 'utf8'), `${line(1)}\n`)
    await new Promise((resolve) => {
      setImmediate(resolve)
    })
    assert.deepEqual(await read(path.join(dir, 'apm-server')), [line(1), line(2)])
    await output.close()
  })

  it(`writes at once when ${HIGH_WATER_BYTES} bytes are queued, so memory stays bounded`, async () => {
    const output = await FileOutput.open(options({rotateEveryKb: 1024 * 1024}))
    const big = line(1, 64 * 1024)
    const count = HIGH_WATER_BYTES / (64 * 1024)
    for (let i = 0; i < count; i++) output.write(big)
    assert.equal(statSync(path.join(dir, 'apm-server')).size, HIGH_WATER_BYTES)
    await output.close()
  })

  it(`is congested once more than ${TICK_BUDGET_BYTES} bytes were written or queued in one turn of the event loop, until the next turn`, async () => {
    const output = await FileOutput.open(options({rotateEveryKb: 1024 * 1024}))
    const big = line(1, 64 * 1024)
    for (let written = 0; written < TICK_BUDGET_BYTES; written += big.length + 1) {
      assert.equal(output.congested, false, `after ${written} bytes`)
      output.write(big)
    }

    assert.equal(output.congested, false, 'the budget reached, not passed')
    output.write(line(2))
    assert.equal(output.congested, true)
    await output.flush()
    assert.equal(output.congested, true, 'written, but in this turn')
    await nextTurn()
    assert.equal(output.congested, false)
    output.write(line(3))
    assert.equal(output.congested, false)
    await output.close()
    assert.equal(statSync(path.join(dir, 'apm-server')).size, TICK_BUDGET_BYTES + 200)
  })

  it('counts a failed write and rejects the flush that made it; the next write is tried afresh', async function () {
    if (!existsSync('/dev/full')) this.skip()
    // /dev/full takes opens and refuses every write with ENOSPC.
    const output = await FileOutput.open({filename: 'full', numberOfFiles: 2, path: '/dev', rotateEveryKb: 1024})
    assert.equal(output.failures, 0)
    output.write(line(1))
    await assert.rejects(output.flush(), {code: 'ENOSPC'})
    assert.equal(output.failures, 1)
    output.write(line(2))
    await new Promise((resolve) => {
      setImmediate(resolve)
    })
    assert.equal(output.failures, 2, 'a write at the end of the tick that fails is counted too')
    assert.equal((output.lastFailure as NodeJS.ErrnoException).code, 'ENOSPC')
    await assert.rejects(output.close(), {code: 'EINVAL'}) // fsync of /dev/full
  })

  describe('a write that fails part way (a full disk, fix-net finding 4)', () => {
    /** Runs `body` with writevSync writing `first` bytes of its first call, then failing with ENOSPC; ftruncateSync fails with EIO when `noTruncate`. */
    async function withShortWrite<T>(first: number, noTruncate: boolean, body: () => Promise<T>): Promise<T> {
      const [realWritev, realTruncate] = [fsModule.writevSync, fsModule.ftruncateSync]
      let calls = 0
      fsModule.writevSync = ((fd: number, buffers: readonly NodeJS.ArrayBufferView[]) => {
        if (calls++ > 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), {code: 'ENOSPC'})
        return realWritev(fd, [Buffer.concat(buffers as Buffer[]).subarray(0, first)])
      }) as typeof fsModule.writevSync
      if (noTruncate) {
        fsModule.ftruncateSync = (() => {
          throw Object.assign(new Error('EIO: i/o error, ftruncate'), {code: 'EIO'})
        }) as typeof fsModule.ftruncateSync
      }

      syncBuiltinESMExports()
      try {
        return await body()
      } finally {
        fsModule.writevSync = realWritev
        fsModule.ftruncateSync = realTruncate
        syncBuiltinESMExports()
      }
    }

    for (const noTruncate of [false, true]) {
      it(`leaves no torn line for the next batch to be glued to${noTruncate ? ' (and when the file cannot be cut back, ends the torn line first)' : ''}`, async () => {
        const output = await FileOutput.open(options())
        output.write(line(1))
        await output.flush()
        await withShortWrite(50, noTruncate, async () => {
          output.write(line(2))
          output.write(line(3))
          await assert.rejects(output.flush(), {code: 'ENOSPC'})
        })
        output.write(line(4))
        await output.flush()
        await output.close()
        const lines = await read(path.join(dir, 'apm-server'))
        const readable = lines.filter((text) => {
          try {
            JSON.parse(text)
            return true
          } catch {
            return false
          }
        })
        assert.deepEqual(readable, [line(1), line(4)], 'every line of a batch that was written whole is readable')
        assert.equal(lines.length, noTruncate ? 3 : 2)
        if (!noTruncate) assert.equal(statSync(path.join(dir, 'apm-server')).size, 2 * (line(1).length + 1))
      })
    }
  })

  it('counts the events published, lost in failed writes, and still queued (stats)', async function () {
    const output = await FileOutput.open(options())
    assert.deepEqual(output.stats(), {failed: 0, pending: 0, published: 0})
    output.write(line(1))
    output.write(line(2))
    assert.deepEqual(output.stats(), {failed: 0, pending: 2, published: 0})
    await output.flush()
    output.write(line(3))
    await output.close()
    assert.deepEqual(output.stats(), {failed: 0, pending: 0, published: 3})
    if (!existsSync('/dev/full')) this.skip()
    const full = await FileOutput.open({filename: 'full', numberOfFiles: 2, path: '/dev', rotateEveryKb: 1024})
    full.write(line(1))
    full.write(line(2))
    await assert.rejects(full.flush(), {code: 'ENOSPC'})
    assert.deepEqual(full.stats(), {failed: 2, pending: 0, published: 0})
    await assert.rejects(full.close(), {code: 'EINVAL'})
  })

  it('rotates by size as Beats does: filename, filename.1 ... and keeps number_of_files', async () => {
    // 1 KiB files of 100-byte lines: 10 lines a file. 45 lines make 5 files; only 3 are kept.
    const output = await FileOutput.open(options({numberOfFiles: 3, rotateEveryKb: 1}))
    for (let i = 0; i < 45; i++) output.write(line(i))
    await output.close()
    const names = (await fs.readdir(dir)).sort()
    assert.deepEqual(names, ['apm-server', 'apm-server.1', 'apm-server.2'])
    const numbers = async (name: string) => (await read(path.join(dir, name))).map((text) => (JSON.parse(text) as {n: number}).n)
    assert.deepEqual(await numbers('apm-server'), [40, 41, 42, 43, 44])
    assert.deepEqual(await numbers('apm-server.1'), [30, 31, 32, 33, 34, 35, 36, 37, 38, 39])
    assert.deepEqual(await numbers('apm-server.2'), [20, 21, 22, 23, 24, 25, 26, 27, 28, 29])
    for (const name of names) {
      const stat = await fs.stat(path.join(dir, name)) // eslint-disable-line no-await-in-loop -- three files
      assert.ok(stat.size <= 1024, `${name} is ${stat.size} bytes`)
      assert.equal(stat.mode & 0o777, 0o600)
    }
  })

  it('rotates across separate flushes and restarts, counting what the file already holds', async () => {
    const first = await FileOutput.open(options({numberOfFiles: 2, rotateEveryKb: 1}))
    for (let i = 0; i < 8; i++) first.write(line(i))
    await first.close()
    const second = await FileOutput.open(options({numberOfFiles: 2, rotateEveryKb: 1}))
    for (let i = 8; i < 12; i++) {
      second.write(line(i))
      await second.flush() // eslint-disable-line no-await-in-loop -- one write at a time
    }

    await second.close()
    assert.equal((await read(path.join(dir, 'apm-server.1'))).length, 10)
    assert.deepEqual(await read(path.join(dir, 'apm-server')), [line(10), line(11)])
  })

  it('writes a line longer than the rotation size alone in its file', async () => {
    const output = await FileOutput.open(options({numberOfFiles: 3, rotateEveryKb: 1}))
    output.write(line(1))
    output.write(line(2, 3000))
    output.write(line(3))
    await output.close()
    assert.deepEqual(await read(path.join(dir, 'apm-server.2')), [line(1)])
    assert.deepEqual(await read(path.join(dir, 'apm-server.1')), [line(2, 3000)])
    assert.deepEqual(await read(path.join(dir, 'apm-server')), [line(3)])
  })

  describe('a rotation that fails', () => {
    const openDescriptors = () => readdirSync('/proc/self/fd').length
    /** The `n` of each line of a file. */
    const numbers = async (name: string) => (await read(path.join(dir, name))).map((text) => (JSON.parse(text) as {n: number}).n)
    /** Fills the output past its 1 KiB and flushes: a rotation is due. */
    const batch = (output: FileOutput, first: number) => {
      for (let i = first; i < first + 11; i++) output.write(line(i))
      return output.flush()
    }

    beforeEach(function () {
      if (!existsSync('/proc/self/fd')) this.skip()
    })

    it('when the oldest file cannot be removed: fails each batch cleanly, closes what it opened, keeps the history', async () => {
      // A full current file, a history file, and a non-empty directory where the oldest file goes: even
      // root cannot remove it as a file.
      mkdirSync(path.join(dir, 'apm-server.2', 'sub'), {recursive: true})
      const filled = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
      writeFileSync(path.join(dir, 'apm-server'), filled.map((n) => `${line(n)}\n`).join(''))
      writeFileSync(path.join(dir, 'apm-server.1'), `${line(1000)}\n`)
      const output = await FileOutput.open(options({numberOfFiles: 3, rotateEveryKb: 1}))
      const before = openDescriptors()
      for (let round = 0; round < 20; round++) {
        await assert.rejects(batch(output, 100 + round * 11), {code: 'EISDIR'}) // eslint-disable-line no-await-in-loop -- one batch after another
      }

      assert.equal(openDescriptors(), before, 'no descriptor left open')
      assert.deepEqual(await numbers('apm-server.1'), [1000])
      // The lines were refused; the file named apm-server is still the current one.
      assert.deepEqual(await numbers('apm-server'), filled)
      assert.deepEqual(readdirSync(dir).sort(), ['apm-server', 'apm-server.1', 'apm-server.2'], 'no temporary file left')
      // Once the directory is gone, the next line rotates as usual.
      await fs.rm(path.join(dir, 'apm-server.2'), {recursive: true})
      output.write(line(500))
      await output.flush()
      await output.close()
      assert.deepEqual(await numbers('apm-server'), [500])
      assert.deepEqual(await numbers('apm-server.1'), filled)
      assert.deepEqual(await numbers('apm-server.2'), [1000])
    })

    const current = () => path.join(dir, 'apm-server')
    /** Runs `body` with fs[name] replaced by `fake(real)` (ES module bindings included), restored after. */
    async function withPatchedFs<K extends 'openSync' | 'renameSync', T>(
      name: K,
      fake: (real: (typeof fsModule)[K]) => (typeof fsModule)[K],
      body: () => Promise<T>,
    ): Promise<T> {
      const real = fsModule[name]
      fsModule[name] = fake(real)
      syncBuiltinESMExports()
      try {
        return await body()
      } finally {
        fsModule[name] = real
        syncBuiltinESMExports()
      }
    }

    /** Runs `body` with fs.openSync failing with EMFILE (out of descriptors, say) for every append open. */
    const withoutAppendOpens = <T>(body: () => Promise<T>): Promise<T> =>
      withPatchedFs(
        'openSync',
        (realOpen) =>
          ((...args: Parameters<typeof fsModule.openSync>) => {
            if (args[1] === 'a' || (typeof args[1] === 'number' && (args[1] & fsModule.constants.O_APPEND) !== 0)) throw Object.assign(new Error(`EMFILE: too many open files, open '${String(args[0])}'`), {code: 'EMFILE'})
            return realOpen(...args)
          }) as typeof fsModule.openSync,
        body,
      )

    /** Runs `body` with fs.renameSync failing with EIO for every rename onto the current file. */
    const withoutRenamesToCurrent = <T>(body: () => Promise<T>): Promise<T> =>
      withPatchedFs(
        'renameSync',
        (realRename) =>
          ((from: fsModule.PathLike, to: fsModule.PathLike) => {
            if (to === current()) throw Object.assign(new Error(`EIO: i/o error, rename '${String(from)}' -> '${String(to)}'`), {code: 'EIO'})
            return realRename(from, to)
          }) as typeof fsModule.renameSync,
        body,
      )

    it('when the new file cannot be opened: nothing moves, no history is lost, and the next batch rotates', async () => {
      const output = await FileOutput.open(options({numberOfFiles: 4, rotateEveryKb: 1}))
      for (const [index, n] of [[1, 1001], [2, 1002], [3, 1003]]) writeFileSync(path.join(dir, `apm-server.${index}`), `${line(n)}\n`)
      const before = openDescriptors()
      await withoutAppendOpens(async () => {
        for (let round = 0; round < 5; round++) {
          await assert.rejects(batch(output, round * 11), {code: 'EMFILE'}) // eslint-disable-line no-await-in-loop -- one batch after another
        }
      })

      assert.equal(openDescriptors(), before, 'no descriptor left open')
      assert.deepEqual(readdirSync(dir).sort(), ['apm-server', 'apm-server.1', 'apm-server.2', 'apm-server.3'])
      assert.deepEqual(await numbers('apm-server.1'), [1001])
      assert.deepEqual(await numbers('apm-server.2'), [1002])
      assert.deepEqual(await numbers('apm-server.3'), [1003])
      // The lines before each failed rotation went to the current file, under its name.
      assert.deepEqual(await numbers('apm-server'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      output.write(line(100))
      await output.flush()
      await output.close()
      assert.deepEqual(readdirSync(dir).sort(), ['apm-server', 'apm-server.1', 'apm-server.2', 'apm-server.3'])
      assert.deepEqual(await numbers('apm-server'), [100])
      assert.deepEqual(await numbers('apm-server.1'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      assert.deepEqual(await numbers('apm-server.2'), [1001])
      assert.deepEqual(await numbers('apm-server.3'), [1002])
    })

    it('with a FIFO at the oldest slot (another user who can write the directory): rotates without opening it to wait (fix-net L1)', async () => {
      const output = await FileOutput.open(options({numberOfFiles: 4, rotateEveryKb: 1}))
      writeFileSync(path.join(dir, 'apm-server.1'), '')
      writeFileSync(path.join(dir, 'apm-server.2'), '')
      execFileSync('mkfifo', [path.join(dir, 'apm-server.3')])
      const before = openDescriptors()
      await batch(output, 0)
      await batch(output, 100)
      await output.close()
      assert.equal(openDescriptors(), before - 1, 'no descriptor left open but the closed output')
      assert.deepEqual(readdirSync(dir).sort(), ['apm-server', 'apm-server.1', 'apm-server.2', 'apm-server.3'])
      assert.ok(statSync(path.join(dir, 'apm-server.3')).isFile(), 'the FIFO was replaced by a history file')
    })

    it('with number_of_files 2, a failed open keeps the only history file', async () => {
      const output = await FileOutput.open(options({numberOfFiles: 2, rotateEveryKb: 1}))
      writeFileSync(path.join(dir, 'apm-server.1'), `${line(1000)}\n`)
      await withoutAppendOpens(() => assert.rejects(batch(output, 0), {code: 'EMFILE'}))
      assert.deepEqual(await numbers('apm-server.1'), [1000])
      assert.deepEqual(await numbers('apm-server'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      await output.close()
      assert.deepEqual(readdirSync(dir).sort(), ['apm-server', 'apm-server.1'])
    })

    it('when the current file was deleted and the new one cannot be opened: later batches write again once it can', async () => {
      const output = await FileOutput.open(options({numberOfFiles: 3, rotateEveryKb: 1}))
      for (let i = 0; i < 10; i++) output.write(line(i))
      await output.flush()
      await fs.rm(current())
      await withoutAppendOpens(() => assert.rejects(batch(output, 10), {code: 'EMFILE'}))
      output.write(line(100))
      await output.flush()
      await output.close()
      assert.deepEqual(readdirSync(dir).sort(), ['apm-server'])
      assert.deepEqual(await numbers('apm-server'), [100])
    })

    it('when the current file cannot be given its name back: later batches fail with their own error, then recover', async () => {
      const output = await FileOutput.open(options({numberOfFiles: 3, rotateEveryKb: 1}))
      const filled = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
      for (const n of filled) output.write(line(n))
      await output.flush()
      const before = openDescriptors()
      // The new file cannot take the current name, and the current file cannot take it back.
      await withoutRenamesToCurrent(() => assert.rejects(batch(output, 10), {code: 'EIO'}))
      assert.deepEqual(readdirSync(dir).sort(), ['apm-server.1'])
      // While the cause lasts, each batch fails with what fails now, not with the first error.
      await withoutAppendOpens(() => assert.rejects(batch(output, 100), {code: 'EMFILE'}))
      output.write(line(200))
      await output.flush()
      output.write(line(201))
      await output.close()
      assert.equal(openDescriptors(), before - 1, 'the output\'s own descriptor closed, nothing else left open')
      assert.deepEqual(readdirSync(dir).sort(), ['apm-server', 'apm-server.1'])
      assert.deepEqual(await numbers('apm-server.1'), filled)
      assert.deepEqual(await numbers('apm-server'), [200, 201])
    })
  })

  it('close() is idempotent and later writes are refused', async () => {
    const output = await FileOutput.open(options())
    output.write(line(1))
    await Promise.all([output.close(), output.close()])
    assert.throws(() => output.write(line(2)), /the output is closed/)
    assert.deepEqual(await read(path.join(dir, 'apm-server')), [line(1)])
  })

  const bad: [string, Partial<FileOutputOptions>, RegExp][] = [
    ['number_of_files 1', {numberOfFiles: 1}, /number_of_files must be between 2 and 1024/],
    ['number_of_files 1025', {numberOfFiles: 1025}, /number_of_files must be between 2 and 1024/],
    ['rotate_every_kb 0', {rotateEveryKb: 0}, /rotate_every_kb must be at least 1/],
  ]
  for (const [name, overrides, message] of bad) {
    it(`refuses ${name}`, async () => {
      await assert.rejects(FileOutput.open(options(overrides)), message)
    })
  }

  it('writes lines given as byte parts, thousands in one batch, and rotates between them', async () => {
    const output = await FileOutput.open(options({rotateEveryKb: 64}))
    const head = Buffer.from('{"n":')
    const lines: string[] = []
    for (let i = 0; i < 3000; i++) {
      output.write([head, Buffer.from(`${i},"pad":"${'x'.repeat(20)}"}`)])
      lines.push(`{"n":${i},"pad":"${'x'.repeat(20)}"}`)
    }

    await output.close()
    const files = [path.join(dir, 'apm-server.1'), path.join(dir, 'apm-server')]
    const stored = [...(await read(files[0])), ...(await read(files[1]))]
    assert.deepEqual(stored, lines)
    for (const file of files) assert.ok((await fs.stat(file)).size <= 64 * 1024)
  })
})
