/**
 * Shared machinery of the torture checks: the real CLI as a child process we can kill, temp dirs,
 * keystore state snapshots through the core API, a bounded worker pool, and the result shape every
 * check returns (figures for the table, and failures, which make the run fail).
 */
import {promises as fs, readFileSync} from 'node:fs'
import path from 'node:path'

import {isKeystoreError} from '../../src/core/errors.js'
import {openKeystore} from '../../src/core/keystore.js'
import {fingerprintOf} from '../../src/core/recipient.js'
import {BIN, cleanEnv, CliResult, makeTempDir, RunningChild, startChild} from '../helpers/cli.js'

export {BIN, ROOT, TEST_KDF_PARAMS} from '../helpers/cli.js'

export const KEYSTORE_NAME = 'apm-server.keystore'
/** The writer's temp file next to the keystore: `<file>.tmp-<32 random hex digits>` */
export const TEMP_FILE = /^apm-server\.keystore\.tmp-[0-9a-f]{32}$/
export const LOCK_DIR = 'apm-server.keystore.lock'
/** The audit trail beside the keystore (issue 16): every changing command keeps it there. */
export const AUDIT_NAME = 'apm-server.keystore.audit'

/** One line of the figures table. */
export interface Figure {
  check: string
  figure: string
  value: string
}

export interface CheckResult {
  figures: Figure[]
  /** each a one-line description with enough to reproduce; empty = pass */
  failures: string[]
  /** checks that could not run here, with the reason */
  skipped: string[]
}

export function newResult(): CheckResult {
  return {failures: [], figures: [], skipped: []}
}

/** Caps the number of failures kept, so a systematic defect does not print 10,000 lines. */
export function fail(result: CheckResult, message: string): void {
  if (result.failures.length < 50) result.failures.push(message)
  else if (result.failures.length === 50) result.failures.push('... more failures not shown')
}

export interface StartOptions {
  cwd: string
  env?: Record<string, string | undefined>
  /** written to stdin then closed; 'keep-open' leaves a pipe open that is never written */
  input?: Buffer | string | 'keep-open'
  /** hard cap: SIGKILL after this long (a hang shows as signal SIGKILL) */
  timeoutMs?: number
  /** run as this user (root only) */
  uid?: number
  /** run the CLI under this command (e.g. strace and its options) */
  wrap?: string[]
}

/** Starts the built CLI (`node bin/run.js ...`) with a clean environment and cheap argon2. */
export function startCli(args: string[], options: StartOptions): RunningChild {
  const [command, ...prefix] = [...(options.wrap ?? []), process.execPath]
  return startChild(command, [...prefix, BIN, ...args], {...stdinAndTimeout(options), cwd: options.cwd, env: cleanEnv(options.env), uid: options.uid})
}

export function cli(args: string[], options: StartOptions): Promise<CliResult> {
  return startCli(args, options).done
}

/** Runs a shell command line (for closed fds and umask); the CLI is `$APM` in it. `uid` and `wrap` are not used. */
export async function shell(script: string, options: StartOptions): Promise<CliResult> {
  return startChild('/bin/sh', ['-c', script], {...stdinAndTimeout(options), cwd: options.cwd, env: {...cleanEnv(options.env), APM: `${process.execPath} ${BIN}`}}).done
}

function stdinAndTimeout({input, timeoutMs = 60_000}: StartOptions): {input?: Buffer | string; keepStdinOpen: boolean; timeoutMs: number} {
  return input === 'keep-open' ? {keepStdinOpen: true, timeoutMs} : {input, keepStdinOpen: false, timeoutMs}
}

export interface TempDir {
  dir: string
  cleanup: () => void
}

export function tempDir(prefix = 'apm-torture-'): TempDir {
  return makeTempDir(prefix)
}

export function keystorePath(home: string): string {
  return path.join(home, 'data', KEYSTORE_NAME)
}

/** Runs `fn` over `items` with at most `limit` at a time; results in input order. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    for (;;) {
      const i = next++
      if (i >= items.length) return
      // eslint-disable-next-line no-await-in-loop -- a worker runs its items one after another
      results[i] = await fn(items[i], i)
    }
  }

  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
  return results
}

/** What a keystore holds, as far as the checks care: format, password (which of the candidates), entries. */
export interface Snapshot {
  format: string
  /** the candidate password that opened it, or undefined when it has none */
  password?: string
  entries: Map<string, string>
  /** the fingerprint of the host's key for sealed bundles, when it has one */
  hostKey?: string
}

/**
 * Opens the keystore with each candidate password in turn (through the core API, not the CLI). Returns
 * the error instead when it does not open with any.
 */
export async function snapshot(file: string, passwords: readonly string[] = []): Promise<Snapshot | {error: unknown}> {
  const candidates = passwords.length > 0 ? passwords : ['']
  let lastError: unknown
  for (const candidate of candidates) {
    let asked = false
    try {
      // eslint-disable-next-line no-await-in-loop -- candidates are tried in order
      const keystore = await openKeystore(file, {
        async password() {
          asked = true
          return Buffer.from(candidate)
        },
      })
      const entries = new Map<string, string>()
      for (const name of keystore.keys()) entries.set(name, keystore.get(name).toString('base64'))
      const pair = keystore.hostKeyPair()
      return {entries, format: keystore.format, password: asked ? candidate : undefined, ...(pair ? {hostKey: fingerprintOf(pair.publicKey)} : {})}
    } catch (error) {
      lastError = error
      if (!isKeystoreError(error, 'EDECRYPT')) break
    }
  }

  return {error: lastError}
}

export function sameEntries(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false
  for (const [name, value] of a) if (b.get(name) !== value) return false
  return true
}

export function describeEntries(entries: Map<string, string>): string {
  const names = [...entries.keys()].sort()
  return names.length > 8 ? `${names.length} keys (${names.slice(0, 4).join(',')},...)` : `{${names.join(',')}}`
}

/** Names in the keystore's directory other than the keystore itself. */
export async function leftovers(home: string): Promise<string[]> {
  const names = await fs.readdir(path.join(home, 'data')).catch(() => [] as string[])
  return names.filter((name) => name !== KEYSTORE_NAME && name !== AUDIT_NAME).sort()
}

export function errorText(error: unknown): string {
  if (isKeystoreError(error)) return `${error.code}: ${error.message}`
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}

/** stderr is exactly one `error: ...` line, and nothing that looks like a stack trace. */
export function oneErrorLine(stderr: string): boolean {
  return /^error: [^\n]+\n$/.test(stderr) && !/\n\s+at |Error: |node:internal/.test(stderr)
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms)
  })
}

/** A seeded PRNG (mulberry32) so a failing run can be repeated with the seed it printed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]
}

export function ms(value: number): string {
  return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`
}

/** Resident memory of a live process in MiB: current and peak (VmHWM), or undefined once it is gone. */
export function memoryOf(pid: number): {rssMiB: number; peakMiB: number} | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const rss = /VmRSS:\s+(\d+) kB/.exec(status)
    const peak = /VmHWM:\s+(\d+) kB/.exec(status)
    if (!rss || !peak) return undefined
    return {peakMiB: Math.round(Number(peak[1]) / 1024), rssMiB: Math.round(Number(rss[1]) / 1024)}
  } catch {
    return undefined
  }
}

/** Runs the CLI and samples its peak resident memory every 20 ms while it runs. */
export async function cliMeasured(args: string[], options: StartOptions): Promise<CliResult & {peakMiB: number; ms: number}> {
  const t0 = Date.now()
  const running = startCli(args, options)
  let peakMiB = 0
  const sampler = setInterval(() => {
    const memory = running.child.pid === undefined ? undefined : memoryOf(running.child.pid)
    if (memory) peakMiB = Math.max(peakMiB, memory.peakMiB)
  }, 20)
  try {
    const done = await running.done
    return {...done, ms: Date.now() - t0, peakMiB}
  } finally {
    clearInterval(sampler)
  }
}
