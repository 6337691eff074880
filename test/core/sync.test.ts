/**
 * core/sync reading a directory that changes while it is read: a Kubernetes Secret whose `..data` the
 * kubelet swaps (as sync-swap-race.sh of the break-new review does, here at a fixed point through the
 * reader's hook), and a plain directory whose file is replaced. The keys must be one version's, never a
 * mix that never existed.
 */
import assert from 'node:assert/strict'
import {mkdirSync, renameSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {KeystoreError} from '../../src/core/errors.js'
import {readSyncDirectory} from '../../src/core/sync.js'
import {makeTempDir} from '../helpers/cli.js'

const KEYS = 200

/** The kubelet's layout: ..v1 and ..v2 folders, ..data a link to one, each key a link to ..data/KEY. */
function writeTwoVersions(dir: string): void {
  for (const version of ['v1', 'v2']) {
    mkdirSync(path.join(dir, `..${version}`), {recursive: true})
    for (let i = 0; i < KEYS; i++) writeFileSync(path.join(dir, `..${version}`, `K${i}`), `${version === 'v1' ? 'old' : 'new'}-${i}`)
  }

  for (let i = 0; i < KEYS; i++) symlinkSync(`..data/K${i}`, path.join(dir, `K${i}`))
  symlinkSync('..v1', path.join(dir, '..data'))
}

/** What AtomicWriter does: a new link, renamed over ..data. */
function swapData(dir: string, to: string): void {
  symlinkSync(to, path.join(dir, '..data_tmp'))
  renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'))
}

function versionsIn(files: ReadonlyMap<string, Buffer>): string[] {
  return [...new Set([...files.values()].map((value) => value.toString().split('-')[0]))].sort()
}

describe('core/sync: one version of a directory that changes while it is read', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let dir: string
  beforeEach(() => {
    tmp = makeTempDir('apm-sync-core-')
    dir = path.join(tmp.dir, 'secret')
    writeTwoVersions(dir)
  })
  afterEach(() => tmp.cleanup())

  it('a Secret whose ..data is swapped after the first file is read: every key from one version (read again)', async () => {
    let reads = 0
    const files = await readSyncDirectory(dir, {
      afterRead() {
        if (++reads === 1) swapData(dir, '..v2')
      },
    })
    assert.equal(files.size, KEYS)
    assert.deepEqual(versionsIn(files), ['new'])
    assert.equal(files.get('K0')!.toString(), 'new-0')
    assert.ok(reads > KEYS, 'the directory was read again')
  })

  it('a Secret swapped at every read: refused after 3 reads, saying it kept changing', async () => {
    let version = 1
    let reads = 0
    await assert.rejects(
      readSyncDirectory(dir, {
        afterRead() {
          if (++reads % KEYS === 1) swapData(dir, `..v${(version = 3 - version)}`)
        },
      }),
      (error: KeystoreError) => {
        assert.equal(error.code, 'ESYNC')
        assert.equal(error.message, `${dir} kept changing while it was read (3 times: a Secret being updated, or another writer); nothing was changed: run sync again once it is still`)
        return true
      },
    )
  })

  it('a plain directory whose file is replaced after it was read: read again, the new bytes', async () => {
    const plain = path.join(tmp.dir, 'plain')
    mkdirSync(plain)
    for (let i = 0; i < KEYS; i++) writeFileSync(path.join(plain, `K${i}`), `old-${i}`)
    let replaced = ''
    const files = await readSyncDirectory(plain, {
      afterRead(name) {
        if (replaced) return
        replaced = name
        // An atomic replace (another inode), as config management writes files; the others stay as they were.
        writeFileSync(path.join(plain, '.tmp'), `new-${name.slice(1)}`)
        renameSync(path.join(plain, '.tmp'), path.join(plain, name))
      },
    })
    assert.equal(files.get(replaced)!.toString(), `new-${replaced.slice(1)}`)
    assert.equal(files.size, KEYS)
  })
})
