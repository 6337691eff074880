/**
 * Fixtures built quickly: a keystore of N keys is one `create` plus one `add K1 ... Kn --stdin` (one line
 * per key), not N processes. Everything lives under one scratch directory removed at the end.
 */
import {randomBytes} from 'node:crypto'
import {chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {cleanEnv, cli, ROOT, runSync} from './proc.js'

export const SCRATCH = path.join(ROOT, 'bench', 'tmp')
/** The password of the benchmark's password-protected keystores; a throwaway, passed by environment. */
export const BENCH_PASSWORD = 'bench-password-not-a-secret'
// Names per `add` process: 2,500 names of 15 characters stay far below the argv limit (ARG_MAX 2 MiB).
const NAMES_PER_ADD = 2500

export function keyName(i) {
  return `BENCH_KEY_${String(i).padStart(5, '0')}`
}

export function keyNames(count, first = 1) {
  return Array.from({length: count}, (_unused, i) => keyName(first + i))
}

/** One line per key: a random 32-character token, as provisioning scripts store. */
export function valueLines(count) {
  return Array.from({length: count}, () => `${randomBytes(24).toString('base64url')}\n`).join('')
}

/** Environment for the CLI: no outer APM_SERVER_* / BEAT_*; always the default (strong) KDF. */
export function cliEnv({password} = {}) {
  return cleanEnv({APM_SERVER_KEYSTORE_KDF_PARAMS: undefined, APM_SERVER_KEYSTORE_PASSWORD: password})
}

export function makeScratch() {
  const dir = path.join(SCRATCH, `run-${process.pid}`)
  rmSync(dir, {force: true, recursive: true})
  mkdirSync(dir, {recursive: true})
  return dir
}

export function keystorePath(home) {
  return path.join(home, 'data', 'apm-server.keystore')
}

/** A native keystore of `count` keys in `${home}/data`, passwordless unless `password`. */
export function buildKeystore(home, count, {password} = {}) {
  mkdirSync(home, {recursive: true})
  const env = cliEnv({password})
  runSync(cli(['keystore', 'create', '--force', ...(password ? ['--password'] : [])], {cwd: home, env}))
  for (let first = 1; first <= count; first += NAMES_PER_ADD) {
    const names = keyNames(Math.min(NAMES_PER_ADD, count - first + 1), first)
    runSync(cli(['keystore', 'add', ...names, '--stdin'], {cwd: home, env, input: valueLines(names.length)}))
  }

  const listed = runSync(cli(['keystore', 'list'], {cwd: home, env})).stdout.toString('utf8').trim().split('\n').filter(Boolean)
  if (listed.length !== count) throw new Error(`fixture ${home}: expected ${count} keys, list shows ${listed.length}`)
  return keystorePath(home)
}

/**
 * Puts a copy of keystore `from` at `home`, with its audit trail (untimed setup before each run of a
 * mutating case): the keystore records where its trail ends, so the two travel together.
 */
export function restoreKeystore(from, home) {
  const to = keystorePath(home)
  mkdirSync(path.dirname(to), {mode: 0o700, recursive: true})
  copyFileSync(from, to)
  chmodSync(to, 0o600)
  rmSync(`${to}.audit`, {force: true})
  if (existsSync(`${from}.audit`)) {
    copyFileSync(`${from}.audit`, `${to}.audit`)
    chmodSync(`${to}.audit`, 0o600)
  }
}

export function fileSize(file) {
  return statSync(file).size
}

/** dotenvx: a .env holding one encrypted value (its own `encrypt`), with its .env.keys next to it. */
export function buildDotenvx(dir, dotenvx) {
  mkdirSync(dir, {recursive: true})
  writeFileSync(path.join(dir, '.env'), `${keyName(1)}=${randomBytes(24).toString('base64url')}\n`)
  runSync({args: ['encrypt', '-f', '.env'], cmd: dotenvx, cwd: dir, env: cleanEnv()})
  return {env: readFileSync(path.join(dir, '.env')), keys: readFileSync(path.join(dir, '.env.keys'))}
}

/** age: a generated identity, and a file of `size` random bytes encrypted to it. */
export function buildAge(dir, size) {
  mkdirSync(dir, {recursive: true})
  const identity = path.join(dir, 'key.txt')
  runSync({args: ['-o', identity], cmd: 'age-keygen'})
  const recipient = runSync({args: ['-y', identity], cmd: 'age-keygen'}).stdout.toString('utf8').trim()
  const plain = path.join(dir, 'plain.bin')
  writeFileSync(plain, randomBytes(size))
  const encrypted = path.join(dir, 'plain.bin.age')
  runSync({args: ['-r', recipient, '-o', encrypted, plain], cmd: 'age'})
  rmSync(plain)
  return {encrypted, identity}
}
