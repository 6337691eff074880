/**
 * Child process of the hostile-files check: opens `count` mutated keystores through the core API
 * (openKeystore on a real file) and reports every one that is not refused with a clear KeystoreError.
 * Runs as its own process so the parent can kill it on a hang and read its peak memory.
 *
 * Protocol (IPC): receives {seed, start, count, dir}; sends {progress, detail} before each file and
 * finally {done: WorkerReport}.
 */
import {promises as fs, readFileSync} from 'node:fs'
import path from 'node:path'

import {isKeystoreError} from '../../src/core/errors.js'
import {openKeystore} from '../../src/core/keystore.js'
import {errorText, prng, sameEntries} from './lib.js'
import {BASE_PASSWORD, makeBases} from './mutate.js'
import {mutation} from './mutate.js'

export interface WorkerJob {
  seed: number
  start: number
  count: number
  dir: string
  /** keep the offending files (else the parent removes the directory) */
  keep: boolean
}

export interface WorkerReport {
  tried: number
  byKind: Record<string, number>
  byCode: Record<string, number>
  equivalent: number
  maxMs: number
  maxDetail: string
  peakRssMiB: number
  failures: string[]
}

/** Codes a damaged or crafted file may be refused with. */
const REFUSAL_CODES = new Set(['EDECRYPT', 'EFORMAT', 'ELIMITS', 'EVERSION'])

function peakRssMiB(): number {
  const status = readFileSync('/proc/self/status', 'utf8')
  const match = /VmHWM:\s+(\d+) kB/.exec(status)
  return match ? Math.round(Number(match[1]) / 1024) : Math.round(process.memoryUsage().rss / 1024 / 1024)
}

async function run(job: WorkerJob): Promise<WorkerReport> {
  const bases = await makeBases()
  const file = path.join(job.dir, 'apm-server.keystore')
  const report: WorkerReport = {byCode: {}, byKind: {}, equivalent: 0, failures: [], maxDetail: '', maxMs: 0, peakRssMiB: 0, tried: 0}
  // Failures of one kind share a signature (digits and the path blanked): each is reported once, with a count.
  const seen = new Map<string, {count: number; message: string}>()
  const failed = async (index: number, data: Buffer, message: string) => {
    const signature = message.replaceAll(file, 'FILE').replaceAll(/#\d+|\d+/g, 'N')
    const known = seen.get(signature)
    if (known) {
      known.count++
      return
    }

    const kept = path.join(job.dir, `failure-${index}.keystore`)
    if (job.keep) await fs.writeFile(kept, data, {mode: 0o600})
    seen.set(signature, {count: 1, message: `${message}${job.keep ? ` (file kept at ${kept})` : ` (seed ${job.seed}, mutation ${index})`}`})
  }

  for (let index = job.start; index < job.start + job.count; index++) {
    // Each mutation has its own seeded stream: (seed, index) names it.
    // eslint-disable-next-line no-await-in-loop -- one file at a time
    const made = await mutation(bases, prng(job.seed * 1_000_003 + index))
    const label = `#${index} ${made.kind} of ${made.base}: ${made.detail}`
    process.send?.({detail: label, progress: index})
    report.tried++
    report.byKind[made.kind] = (report.byKind[made.kind] ?? 0) + 1
    // eslint-disable-next-line no-await-in-loop -- the file is rewritten for each mutation
    await fs.writeFile(file, made.data, {mode: 0o600})
    const t0 = performance.now()
    try {
      // eslint-disable-next-line no-await-in-loop -- one file at a time
      const keystore = await openKeystore(file, {password: async () => Buffer.from(BASE_PASSWORD)})
      const entries = new Map(keystore.keys().map((name) => [name, keystore.get(name).toString('base64')]))
      if (made.equivalentTo && sameEntries(entries, made.equivalentTo)) {
        report.equivalent++
        report.byCode.equivalent = (report.byCode.equivalent ?? 0) + 1
      } else {
        // eslint-disable-next-line no-await-in-loop -- record the failure
        await failed(index, made.data, `${label}: ACCEPTED, opened with keys ${keystore.keys().join(',')}`)
      }
    } catch (error) {
      const code = isKeystoreError(error) ? error.code : 'non-KeystoreError'
      report.byCode[code] = (report.byCode[code] ?? 0) + 1
      const message = error instanceof Error ? error.message : String(error)
      if (!isKeystoreError(error) || !REFUSAL_CODES.has(error.code)) {
        // eslint-disable-next-line no-await-in-loop -- record the failure
        await failed(index, made.data, `${label}: refused with ${errorText(error)}`)
      } else if (!message.includes(file) || /undefined|NaN|\[object|\n/.test(message)) {
        // eslint-disable-next-line no-await-in-loop -- record the failure
        await failed(index, made.data, `${label}: unclear message: ${JSON.stringify(message)}`)
      }
    }

    const took = performance.now() - t0
    if (took > report.maxMs) {
      report.maxMs = took
      report.maxDetail = label
    }
  }

  report.peakRssMiB = peakRssMiB()
  report.failures = [...seen.values()].map(({count, message}) => (count > 1 ? `${message} [and ${count - 1} more like it]` : message))
  return report
}

process.once('message', (job: WorkerJob) => {
  run(job).then(
    (report) => process.send?.({done: report}, () => process.exit(0)),
    (error) => process.send?.({crashed: errorText(error)}, () => process.exit(1)),
  )
})
