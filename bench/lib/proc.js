/**
 * Whole-process timings: spawn, wait, read the monotonic clock. One place so every case is timed the
 * same way (spawn overhead included for the baseline too).
 */
import {spawn, spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The CLI entry the cases run: the working tree's, or a snapshot's (see snapshot.js). */
export let BIN = path.join(ROOT, 'bin', 'run.js')

export function useCliRoot(dir) {
  BIN = path.join(dir, 'bin', 'run.js')
}

/** The directory holding the bin/, dist/ and manifest that the cases run. */
export function cliRoot() {
  return path.dirname(path.dirname(BIN))
}
export const NODE = process.execPath

/** The outer environment without anything that changes how the CLI or Node behaves. */
export function cleanEnv(extra = {}) {
  const env = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(APM_SERVER_|BEAT_|DEBUG$|NODE_OPTIONS$|NODE_DEBUG$|DOTENV_)/.test(name)) env[name] = value
  }

  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name]
    else env[name] = value
  }

  return env
}

/** Runs `spec` ({cmd, args, cwd, env, input}) to completion; throws with its stderr when it fails. */
export function runSync(spec) {
  const result = spawnSync(spec.cmd, spec.args ?? [], {
    cwd: spec.cwd,
    env: spec.env ?? cleanEnv(),
    input: spec.input,
    maxBuffer: 256 * 1024 * 1024,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  if (result.error) throw result.error
  if (result.status !== (spec.expectStatus ?? 0)) {
    const stderr = result.stderr.toString('utf8').trim().split('\n').slice(-5).join('\n')
    throw new Error(`${describe(spec)} exited with ${result.status ?? result.signal}: ${stderr}`)
  }

  return result
}

/** Milliseconds from spawn to exit of one run of `spec`; checks the exit status and, if given, stdout. */
export function timeSync(spec) {
  const start = process.hrtime.bigint()
  const result = runSync(spec)
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (spec.check) spec.check(result)
  return {ms, stdout: result.stdout}
}

/**
 * Milliseconds from spawn until a stderr line matches `until` (then the process is stopped with
 * SIGTERM and awaited, untimed), or until exit when `until` is not given.
 */
export function timeAsync(spec, {until, timeoutMs = 60_000} = {}) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint()
    const child = spawn(spec.cmd, spec.args ?? [], {cwd: spec.cwd, env: spec.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe']})
    let stderr = ''
    let ms
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${describe(spec)} did not ${until ? `log ${until}` : 'exit'} within ${timeoutMs} ms: ${stderr.slice(-500)}`))
    }, timeoutMs)
    child.stdout.resume()
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => {
      stderr += chunk
      if (until && ms === undefined && until.test(stderr)) {
        ms = Number(process.hrtime.bigint() - start) / 1e6
        child.kill('SIGTERM')
      }
    })
    child.stdin.on('error', () => {})
    child.stdin.end(spec.input)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      const end = Number(process.hrtime.bigint() - start) / 1e6
      clearTimeout(timer)
      if (until) {
        if (ms === undefined) reject(new Error(`${describe(spec)} exited (${code ?? signal}) before logging ${until}: ${stderr.slice(-500)}`))
        else resolve({ms, stderr})
      } else if (code === (spec.expectStatus ?? 0)) resolve({ms: end, stderr})
      else reject(new Error(`${describe(spec)} exited with ${code ?? signal}: ${stderr.slice(-500)}`))
    })
  })
}

export function describe(spec) {
  const args = (spec.args ?? []).map((arg) => (arg === BIN ? 'bin/run.js' : arg))
  const shown = args.length > 8 ? [...args.slice(0, 6), `... (${args.length} args)`] : args
  return [path.basename(spec.cmd), ...shown].join(' ')
}

/** `apm-server ...` as a spec: the built CLI through the same Node binary as the baseline. */
export function cli(args, options = {}) {
  return {args: [BIN, ...args], cmd: NODE, ...options}
}

export const NODE_BASELINE = Object.freeze({args: ['-e', '0'], cmd: NODE})
