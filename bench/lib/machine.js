/** What the figures were measured on: machine, Node, commit, date, and how busy the machine was. */
import {spawnSync} from 'node:child_process'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {ROOT} from './proc.js'

function output(cmd, args) {
  const result = spawnSync(cmd, args, {cwd: ROOT, encoding: 'utf8'})
  return result.status === 0 ? result.stdout.trim() : undefined
}

export function hyperfineVersion() {
  return output('hyperfine', ['--version'])
}

export function machineInfo() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown'
  const memKiB = Number(/^MemTotal:\s*(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0)
  const commit = output('git', ['rev-parse', '--short', 'HEAD']) ?? 'unknown'
  // RESULTS.md itself is about to be rewritten; any other change means the figures are not of `commit` alone.
  const dirty = (output('git', ['status', '--porcelain', '--', '.', ':(exclude)bench/RESULTS.md']) ?? '') !== ''
  return {
    commit: dirty ? `${commit} (plus uncommitted changes in the working tree)` : commit,
    cpus: output('nproc', []) ?? String(os.availableParallelism()),
    kernel: `${os.type()} ${os.release()}`,
    memory: `${(memKiB / 1024 / 1024).toFixed(1)} GiB`,
    model,
    node: process.version,
  }
}

export function loadAverage() {
  return os.loadavg().map((load) => load.toFixed(2)).join(' / ')
}

/**
 * Newest modification time under dist/ and of the manifest: a rebuild during a run makes figures mix two
 * builds. A build that is missing (being cleaned or written) counts as changing now.
 */
export function buildStamp() {
  try {
    return newestBuildFile()
  } catch (error) {
    if (error.code === 'ENOENT') return Date.now()
    throw error
  }
}

function newestBuildFile() {
  let newest = 0
  const visit = (dir) => {
    for (const entry of readdirSync(dir, {withFileTypes: true})) {
      const file = path.join(dir, entry.name)
      if (entry.isDirectory()) visit(file)
      else newest = Math.max(newest, statSync(file).mtimeMs)
    }
  }

  visit(path.join(ROOT, 'dist'))
  return Math.max(newest, statSync(path.join(ROOT, 'oclif.manifest.json')).mtimeMs)
}
