/**
 * Benchmarks take minutes, and `npm test` rebuilds dist/ (pretest) whenever anyone runs it. So the run
 * measures a snapshot of the build taken at its start, once the build has been quiet for a few seconds:
 * bin/, dist/, oclif.manifest.json and package.json copied, node_modules hard-linked (same files, no
 * symlinks to resolve, so the CLI loads exactly as from a real install).
 */
import {spawnSync} from 'node:child_process'
import {copyFileSync, cpSync, mkdirSync, rmSync, symlinkSync} from 'node:fs'
import path from 'node:path'

import {buildStamp} from './machine.js'
import {ROOT} from './proc.js'

const QUIET_MS = 3000
const MAX_WAIT_MS = 180_000

export async function snapshotBuild(scratch, log) {
  const dir = path.join(scratch, 'cli')
  const deadline = Date.now() + MAX_WAIT_MS
  for (;;) {
    const stamp = buildStamp()
    if (Date.now() - stamp >= QUIET_MS) {
      rmSync(dir, {force: true, recursive: true})
      mkdirSync(dir, {recursive: true})
      for (const name of ['bin', 'dist']) cpSync(path.join(ROOT, name), path.join(dir, name), {recursive: true})
      for (const name of ['oclif.manifest.json', 'package.json']) copyFileSync(path.join(ROOT, name), path.join(dir, name))
      const linked = spawnSync('cp', ['-al', path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules')])
      if (linked.status !== 0) symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
      if (buildStamp() === stamp) return {dir, stamp}
    }

    if (Date.now() > deadline) {
      throw new Error(`dist/ or oclif.manifest.json kept changing or missing for ${MAX_WAIT_MS / 1000} s; run "npm run build" and benchmark when no build is running`)
    }

    log('  waiting for dist/ and oclif.manifest.json to be built and quiet')
    // eslint-disable-next-line no-await-in-loop -- polling
    await new Promise((resolve) => setTimeout(resolve, 1000))
  }
}
