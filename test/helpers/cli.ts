/**
 * Runs the real, built CLI (`bin/run.js`) as a user would: a child process with its own cwd, env and
 * stdin, no terminal. Each test gets a fresh temp directory.
 */
import {ChildProcessWithoutNullStreams, spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const BIN = path.join(ROOT, 'bin', 'run.js')

/**
 * Cheap argon2id parameters for tests (the documented APM_SERVER_KEYSTORE_KDF_PARAMS option), honoured
 * because cleanEnv also sets APM_SERVER_KEYSTORE_KDF_TEST_MODE=1.
 */
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
  env.APM_SERVER_KEYSTORE_KDF_TEST_MODE = '1'
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }

  return env
}

export interface ChildOptions {
  cwd: string
  /** the child's whole environment, as given (callers start from cleanEnv) */
  env: NodeJS.ProcessEnv
  /** written to stdin, then stdin is closed; without it stdin is closed at once */
  input?: Buffer | string
  /** leave stdin an open pipe that is never written (Node closes it when the child exits) */
  keepStdinOpen?: boolean
  /** SIGKILL after this long: a hang shows up as `signal: 'SIGKILL'` */
  timeoutMs: number
  /** run as this user, and the group of the same id (root only) */
  uid?: number
}

export interface RunningChild {
  child: ChildProcessWithoutNullStreams
  /** resolves on 'close' with everything the child wrote; rejects on the child's 'error' (it could not be started) */
  done: Promise<CliResult>
}

/**
 * Starts `command` with piped stdio and collects its output. Throws as `spawn` does (e.g. invalid
 * arguments); the runners that return only a promise are `async` so that such a throw rejects instead.
 */
export function startChild(command: string, args: string[], options: ChildOptions): RunningChild {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ['pipe', 'pipe', 'pipe'],
    // libuv drops the supplementary groups when it changes the uid
    ...(options.uid === undefined ? {} : {gid: options.uid, uid: options.uid}),
  })
  const done = new Promise<CliResult>((resolve, reject) => {
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    child.stdin.on('error', () => {}) // the child may exit before reading all of stdin
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const stdoutBytes = Buffer.concat(out)
      resolve({code, signal, stderr: Buffer.concat(err).toString('utf8'), stdout: stdoutBytes.toString('utf8'), stdoutBytes})
    })
  })
  if (!options.keepStdinOpen) child.stdin.end(options.input)
  return {child, done}
}

export async function runCli(args: string[], options: CliOptions): Promise<CliResult> {
  return startChild(process.execPath, [BIN, ...args], {cwd: options.cwd, env: cleanEnv(options.env), input: options.input, timeoutMs: options.timeoutMs ?? 30_000}).done
}

/** A fresh temp directory, removed by the returned cleanup. */
export function makeTempDir(prefix = 'apm-ks-test-'): {dir: string; cleanup: () => void} {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  return {cleanup: () => rmSync(dir, {force: true, recursive: true}), dir}
}
