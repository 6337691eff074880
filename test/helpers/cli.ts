/**
 * Runs the real, built CLI (`bin/run.js`) as a user would: a child process with its own cwd, env and
 * stdin, no terminal. Each test gets a fresh temp directory.
 */
import {spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const BIN = path.join(ROOT, 'bin', 'run.js')

/** Cheap argon2id parameters for tests (the documented APM_SERVER_KEYSTORE_KDF_PARAMS option). */
export const TEST_KDF_PARAMS = 'm=1024,t=1,p=1'

export interface CliResult {
  code: null | number
  signal: NodeJS.Signals | null
  stdout: string
  stdoutBytes: Buffer
  stderr: string
}

export interface CliOptions {
  cwd: string
  /** added to a clean environment (no APM_SERVER_* or BEAT_* from the outer shell) */
  env?: Record<string, string | undefined>
  /** written to stdin, then stdin is closed; without it stdin is closed at once */
  input?: Buffer | string
  timeoutMs?: number
}

export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(APM_SERVER_|BEAT_|DEBUG$)/.test(name)) env[name] = value
  }

  env.APM_SERVER_KEYSTORE_KDF_PARAMS = TEST_KDF_PARAMS
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }

  return env
}

export function runCli(args: string[], options: CliOptions): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {cwd: options.cwd, env: cleanEnv(options.env), stdio: ['pipe', 'pipe', 'pipe']})
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    child.stdin.on('error', () => {}) // the CLI may exit before reading all of stdin
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const stdoutBytes = Buffer.concat(out)
      resolve({code, signal, stderr: Buffer.concat(err).toString('utf8'), stdout: stdoutBytes.toString('utf8'), stdoutBytes})
    })
    child.stdin.end(options.input)
  })
}

/** A fresh temp directory, removed by the returned cleanup. */
export function makeTempDir(prefix = 'apm-ks-test-'): {dir: string; cleanup: () => void} {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  return {cleanup: () => rmSync(dir, {force: true, recursive: true}), dir}
}
