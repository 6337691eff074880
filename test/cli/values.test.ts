/**
 * src/cli/values.ts through its API: which sources are refused before anything is asked, and what a
 * --file gives. (stdin and the prompts are covered through the real command in test/commands/keystore-add.)
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {checkValueSource, readValues} from '../../src/cli/values.js'
import {makeTempDir} from '../helpers/cli.js'
import {ALL_BYTES, assertKeystoreError} from '../helpers/keystore.js'

describe('cli/values', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => tmp.cleanup())

  it('refuses --file or --generate for more than one key, naming the flag', () => {
    assert.throws(() => checkValueSource(['A', 'B'], {file: 'x'}), {code: 'EUSAGE', message: '--file sets one key; name exactly one'})
    assert.throws(() => checkValueSource(['A', 'B'], {generate: true}), {code: 'EUSAGE', message: '--generate sets one key; name exactly one'})
    assert.doesNotThrow(() => checkValueSource(['A', 'B'], {stdin: true}))
  })

  it('refuses to prompt when stdin is not a terminal', function () {
    if (process.stdin.isTTY) this.skip()
    assert.throws(() => checkValueSource(['A', 'B'], {}), {
      code: 'EUSAGE',
      message: 'no value for A, B: stdin is not a terminal; pipe the value with --stdin, or use --file PATH or --generate',
    })
  })

  it("gives a --file's bytes as they are, and refuses an empty file, a FIFO and a missing path", async () => {
    const file = path.join(tmp.dir, 'value')
    writeFileSync(file, ALL_BYTES)
    assert.deepEqual(await readValues(['K'], {file}), [ALL_BYTES])

    writeFileSync(file, '')
    await assertKeystoreError(readValues(['K'], {file}), 'EBADVALUE', 'empty value for key K; give a non-empty value')
    const fifo = path.join(tmp.dir, 'fifo')
    execFileSync('mkfifo', [fifo])
    await assertKeystoreError(readValues(['K'], {file: fifo}), 'EUSAGE', `--file ${fifo} is not a regular file of at most 64 MiB`)
    const missing = path.join(tmp.dir, 'missing')
    await assertKeystoreError(readValues(['K'], {file: missing}), 'EUSAGE', `cannot read --file ${missing}: ENOENT; check the path`)
  })
})
