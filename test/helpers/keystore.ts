/**
 * Helpers shared by the keystore tests: byte fixtures, cheap KDF parameters, the independent Python
 * Beats v1 implementation, and a CLI runner that keeps stdin open (to prove a command never waits on it).
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {chmodSync, copyFileSync, readdirSync, statSync} from 'node:fs'
import path from 'node:path'

import type {Argon2Params} from '../../src/core/crypto.js'
import {type ErrorCode, KeystoreError} from '../../src/core/errors.js'
import {BIN, CliResult, cleanEnv, ROOT, startChild} from './cli.js'

/** Every byte value once, 0 to 255. */
export const ALL_BYTES = Buffer.from(Array.from({length: 256}, (_, i) => i))

/** The cheap argon2id cost the tests pass through `kdfParams` (same as TEST_KDF_PARAMS). */
export const CHEAP_KDF: Readonly<Argon2Params> = Object.freeze({iterations: 1, memoryKiB: 1024, parallelism: 1})

export const FIXTURES = path.join(ROOT, 'test', 'fixtures')
export const BEATS_V1_PY = path.join(FIXTURES, 'beats_v1.py')

/** A password source for the core API. */
export function passwordOf(text: string): () => Promise<Buffer> {
  return async () => Buffer.from(text, 'utf8')
}

/** A password source that fails the test if it is ever asked. */
export function noPasswordExpected(): () => Promise<Buffer> {
  return async () => assert.fail('the password source was asked, but it must not be')
}

/** Where the CLI puts the keystore by default when run in `home`. */
export function defaultKeystore(home: string): string {
  return path.join(home, 'data', 'apm-server.keystore')
}

/** Permission bits of a file or directory. */
export function modeOf(file: string): number {
  // eslint-disable-next-line no-bitwise -- permission bits
  return statSync(file).mode & 0o777
}

/** Sorted names in a directory. */
export function namesIn(dir: string): string[] {
  return readdirSync(dir).sort()
}

/** Asserts that `promise` rejects with a KeystoreError of `code` (and, when given, exactly `message`). */
export async function assertKeystoreError(promise: Promise<unknown>, code: ErrorCode, message?: RegExp | string): Promise<KeystoreError> {
  let caught: unknown
  try {
    await promise
  } catch (error) {
    caught = error
  }

  assert.ok(caught instanceof KeystoreError, `expected a KeystoreError ${code}, got ${caught === undefined ? 'no error' : String(caught)}`)
  assert.equal(caught.code, code, `code of: ${caught.message}`)
  if (typeof message === 'string') assert.equal(caught.message, message)
  else if (message) assert.match(caught.message, message)
  return caught
}

/** The one line the CLI prints on stderr for an error. */
export function errorLine(message: string): string {
  return `error: ${message}\n`
}

export const NO_PASSWORD_WARNING =
  'warning: the keystore has no password: it is obfuscated, not protected; anyone who can read the file can read its secrets. Use --password to protect it.\n'

/** Asserts exit code, and that stdout/stderr are exactly what is given (when given). */
export function assertRun(result: CliResult, expected: {code: number; stderr?: string; stdout?: string}): void {
  const context = `exit ${result.code} signal ${result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`
  assert.equal(result.code, expected.code, context)
  if (expected.stderr !== undefined) assert.equal(result.stderr, expected.stderr, context)
  if (expected.stdout !== undefined) assert.equal(result.stdout, expected.stdout, context)
}

/** Asserts a failed command: exit code, the one stderr line, and under --json the error object on stdout. */
export function assertFailure(result: CliResult, code: number, errorCode: string, message: string, json = false): void {
  assertRun(result, {code, stderr: errorLine(message), stdout: json ? `${JSON.stringify({error: {code: errorCode, message}})}\n` : ''})
}

let interpreter: string | null | undefined

/**
 * The Python 3 interpreter, resolved once (version-manager shims cost ~0.5 s a call), or null when
 * there is none.
 */
export function python3(): string | null {
  if (interpreter === undefined) {
    const probe = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], {encoding: 'utf8'})
    interpreter = probe.status === 0 && probe.stdout.trim() ? probe.stdout.trim() : null
  }

  return interpreter
}

/** Runs test/fixtures/beats_v1.py with `args`; throws with its stderr when it fails. */
export function runBeatsPy(args: string[], input?: string): string {
  const python = python3()
  assert.ok(python, 'python3 is needed for the Beats v1 cross-checks')
  const result = spawnSync(python, [BEATS_V1_PY, ...args], {encoding: 'utf8', input})
  assert.equal(result.status, 0, `beats_v1.py ${args.join(' ')} failed: ${result.stderr}`)
  return result.stdout
}

/** Writes a Beats v1 keystore with the independent Python writer. */
export function writeBeatsV1WithPython(file: string, entries: Record<string, Buffer>): void {
  const spec = Object.fromEntries(Object.entries(entries).map(([name, value]) => [name, value.toString('base64')]))
  runBeatsPy(['write', file], JSON.stringify(spec))
}

/** Decrypts a Beats v1 keystore with the independent Python reader. */
export function readBeatsV1WithPython(file: string): Record<string, Buffer> {
  const shown = JSON.parse(runBeatsPy(['read', file])) as Record<string, string>
  return Object.fromEntries(Object.entries(shown).map(([name, value]) => [name, Buffer.from(value, 'base64')]))
}

/** Copies a committed fixture into `dest` with mode 0600 (git does not keep modes). */
export function copyFixture(name: string, dest: string): void {
  copyFileSync(path.join(FIXTURES, name), dest)
  chmodSync(dest, 0o600)
}

/**
 * Runs the CLI with stdin left open and never written: a command that waited on stdin would hang until
 * the safety timeout kills it, which shows up as `signal: 'SIGKILL'`.
 */
export async function runCliStdinOpen(args: string[], options: {cwd: string; env?: Record<string, string | undefined>; timeoutMs?: number}): Promise<CliResult> {
  return startChild(process.execPath, [BIN, ...args], {cwd: options.cwd, env: cleanEnv(options.env), keepStdinOpen: true, timeoutMs: options.timeoutMs ?? 15_000}).done
}
