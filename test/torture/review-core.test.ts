/**
 * Regression tests of issue 11's keystore items (3, 4, 6, 10, 11), each attack as it was made on 94ba340,
 * and of the break-local review of their fixes (497f6e7), in their fast versions (`npm run torture` runs
 * review-core.ts at full size). Runs the built CLI: `npm test` builds first.
 */
import assert from 'node:assert/strict'

import type {CheckResult} from './lib.js'
import {
  checkConfigFifo,
  checkLinkChainAndAncestors,
  checkLockAlias,
  checkLostLock,
  checkManySettings,
  checkOpenDirectories,
  checkOutputLinks,
  checkPasswordFile,
  checkPasswordFileReload,
  checkPlantedConfig,
  checkPlantedLinks,
  checkStaleLockTree,
  checkStdinCap,
  checkUnusedPassword,
  checkValuesTogether,
  checkWeakKdf,
} from './review-core.js'

/** A check passes when it has no failures; its figures explain a failure. */
function assertPassed(result: CheckResult): void {
  assert.deepEqual(result.failures, [], result.figures.map((f) => `${f.figure}: ${f.value}`).join('\n'))
}

const fast = {full: false}

describe('issue 11: keystore theft, lost updates, downgrades and unbounded reads (regression tests)', function () {
  // CLI processes on two shared cores; the lost-lock case waits out the 4 s stale time on purpose.
  this.timeout(240_000)

  // write-file-atomic's temp name was predictable and followed links: another user read the new keystore
  // through a planted link, and the keystore ended up as that link.
  it('item 3: links planted at the old predicted temp names, and swapped in for new temp files, are never written through', async () => {
    assertPassed(await checkPlantedLinks(fast))
  })

  it('item 3: under strict perms a 0777 data dir, and a keystore link planted there, are refused; nothing is written', async () => {
    assertPassed(await checkOpenDirectories(fast))
  })

  it('item 3: the server\'s output never follows a link planted at its file or at the rotation\'s temp file', async () => {
    assertPassed(await checkOutputLinks(fast))
  })

  it('item 11 (same class): a FIFO at ./apm-server.yml, which every keystore command reads, fails at once', async () => {
    assertPassed(await checkConfigFifo(fast))
  })

  // The compromised-lock check ran after the write: P1 wrote its stale state over P2's K2, then failed.
  it('item 4: a writer SIGSTOPped holding the lock, whose lock was taken over, exits 1 without writing; the other writer\'s key stays', async function () {
    const result = await checkLostLock(fast)
    if (result.skipped.length > 0 && result.failures.length === 0) this.skip()
    assertPassed(result)
  })

  it('item 6: with a password supplied, a keystore without one is refused by run and test config, and keystore commands warn once', async () => {
    assertPassed(await checkUnusedPassword(fast))
  })

  it('item 6: a KDF cost below the default from the environment is used only in test mode; elsewhere the default, with a warning', async () => {
    assertPassed(await checkWeakKdf(fast))
  })

  it('item 10: a gigabyte on add --stdin fails at once with bounded memory; the keystore is untouched', async () => {
    assertPassed(await checkStdinCap(fast))
  })

  it('item 10: values that fit alone but not together are refused before the write', async () => {
    assertPassed(await checkValuesTogether(fast))
  })

  it('item 11: a password file that is a FIFO, /dev/zero, /dev/urandom, a directory or 1 MiB: one error at once, bounded memory', async () => {
    assertPassed(await checkPasswordFile(fast))
  })

  it('item 11: a server whose password file became a FIFO fails its reload at once and stops on SIGTERM', async () => {
    assertPassed(await checkPasswordFileReload(fast))
  })
})

describe('break-local review of the issue 11 hardening: another local user against the keystore (regression tests)', function () {
  this.timeout(240_000)

  // Root removed a stale lock with fs.rm({recursive: true}) before judging the directory: a planted lock
  // whose subdirectories flipped to links made root delete its own files.
  it('F2: a stale lock tree planted in a 0777 data dir is never walked: refused before the lock (strict) or as no lock of ours', async () => {
    assertPassed(await checkStaleLockTree(fast))
  })

  it('F3: a planted or group/world-writable ./apm-server.yml is refused; create --force never replaces a file that is not a keystore', async () => {
    assertPassed(await checkPlantedConfig(fast))
  })

  // The lock was "<name>.lock", the write replaced the link's target: two names, two locks, lost adds.
  it('F5: a keystore reached through a link and through keystore.path has one lock; concurrent adds through both all stay', async () => {
    assertPassed(await checkLockAlias(fast))
  })

  it('F6: a second link in a directory others can write, and a data dir swapped through a shared parent, are refused', async () => {
    assertPassed(await checkLinkChainAndAncestors(fast))
  })

  it('F4 (keystore commands): a config of 60,000 settings costs linear time, not quadratic', async () => {
    assertPassed(await checkManySettings(fast))
  })
})
