/**
 * The keystore password and the argon2id cost of a new one, from the environment: what servers,
 * provisioning scripts and test suites use instead of a prompt.
 */
import {readRegularFile, RefusedFileError} from './bounded-read.js'
import {ARGON2_LIMITS, type Argon2Params, DEFAULT_ARGON2} from './crypto.js'
import {KeystoreError} from './errors.js'

export const PASSWORD_ENV = 'APM_SERVER_KEYSTORE_PASSWORD'
export const PASSWORD_FILE_ENV = 'APM_SERVER_KEYSTORE_PASSWORD_FILE'

/**
 * The most a password file (or a new password on stdin) may hold: a few KiB is far more than any
 * password, and keeps a path pointed at /dev/zero, a log file or a disk image from being read whole.
 */
export const MAX_PASSWORD_BYTES = 4096

/**
 * The keystore password from `APM_SERVER_KEYSTORE_PASSWORD`, else from the file named by
 * `APM_SERVER_KEYSTORE_PASSWORD_FILE` (one trailing newline removed, as `echo` and editors add one).
 * Empty variables count as unset. Returns undefined when neither is set.
 *
 * The file must be a regular file (symbolic links followed: secret mounts use them) of at most
 * {@link MAX_PASSWORD_BYTES}; it is opened without blocking, so a FIFO fails at once instead of
 * holding a command, or a server's reload and so its shutdown, until someone writes to it.
 */
export async function passwordFromEnvironment(env: NodeJS.ProcessEnv): Promise<Buffer | undefined> {
  const direct = env[PASSWORD_ENV]
  if (direct) return Buffer.from(direct, 'utf8')
  const file = env[PASSWORD_FILE_ENV]
  if (!file) return undefined
  let data: Buffer
  try {
    data = await readRegularFile(file, MAX_PASSWORD_BYTES)
  } catch (error) {
    const named = `the password file ${file} named by ${PASSWORD_FILE_ENV}`
    if (error instanceof RefusedFileError) {
      const {refusal} = error
      if (refusal.reason === 'not-regular') throw new KeystoreError('ENOPASSWORD', `${named} is ${refusal.type}, not a regular file; point it at a file holding the password`)
      throw new KeystoreError('ENOPASSWORD', `${named} is over ${MAX_PASSWORD_BYTES} bytes, too big for a password; point it at a file holding only the password`)
    }

    const code = (error as NodeJS.ErrnoException).code
    throw new KeystoreError('ENOPASSWORD', `cannot read ${named}: ${code}; check the path and its permissions`)
  }

  const end = data.at(-1) === 0x0a ? (data.at(-2) === 0x0d ? -2 : -1) : data.length
  const password = data.subarray(0, end)
  if (password.length === 0) throw new KeystoreError('ENOPASSWORD', `the password file ${file} named by ${PASSWORD_FILE_ENV} is empty; write the password into it`)
  return password
}

/** True when the environment supplies a keystore password (either variable set and not empty). */
export function passwordSupplied(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env[PASSWORD_ENV] || env[PASSWORD_FILE_ENV])
}

/**
 * The problem of a keystore without a password (native without one, or Beats v1) opened while the
 * environment supplies one: whoever can write the keystore's path may have swapped in a keystore of
 * their own, whose secrets (a secret token they chose) would then be used without a word.
 */
export function unusedPasswordProblem(file: string): string {
  return (
    `keystore ${file} has no password, yet ${PASSWORD_ENV} or ${PASSWORD_FILE_ENV} is set, so it may have been replaced; ` +
    'protect it with "apm-server keystore passwd", or unset the password variables if it is meant to have none'
  )
}

/**
 * For a server's configuration: an `onUnprotected` that refuses such a keystore (EPASSWORD) when the
 * environment supplies a password, and nothing when it does not.
 */
export function refuseUnusedPassword(env: NodeJS.ProcessEnv): ((file: string) => void) | undefined {
  if (!passwordSupplied(env)) return undefined
  return (file) => {
    throw new KeystoreError('EPASSWORD', unusedPasswordProblem(file))
  }
}

export const KDF_PARAMS_ENV = 'APM_SERVER_KEYSTORE_KDF_PARAMS'
export const KDF_TEST_MODE_ENV = 'APM_SERVER_KEYSTORE_KDF_TEST_MODE'

export interface KdfChoice {
  /** the argon2id cost of a new password; undefined: the default */
  params?: Argon2Params
  /** why the variable was not honoured, for one warning line */
  warning?: string
}

/** Weaker than the default for an attacker: less memory, or less memory × passes (lanes cost them nothing). */
function belowDefaultCost(params: Argon2Params): boolean {
  return params.memoryKiB < DEFAULT_ARGON2.memoryKiB || params.memoryKiB * params.iterations < DEFAULT_ARGON2.memoryKiB * DEFAULT_ARGON2.iterations
}

/**
 * argon2id cost for new passwords from `APM_SERVER_KEYSTORE_KDF_PARAMS` ("m=65536,t=3,p=4": memory KiB,
 * iterations, lanes). It exists for test suites that cannot afford 64 MiB per run, so a cost below the
 * default is honoured only with `APM_SERVER_KEYSTORE_KDF_TEST_MODE=1`; elsewhere (a CI variable leaked
 * into production) it is ignored, the default is used and `warning` says so. A cost at or above the
 * default is always honoured; unset means the default.
 */
export function kdfParamsFromEnvironment(env: NodeJS.ProcessEnv): KdfChoice {
  const text = env[KDF_PARAMS_ENV]
  if (!text) return {}
  const match = /^m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,10})$/.exec(text.trim())
  if (!match) throw new KeystoreError('EUSAGE', `${KDF_PARAMS_ENV} must look like "m=65536,t=3,p=4" (memory KiB, iterations, parallelism)`)
  const params = {iterations: Number(match[2]), memoryKiB: Number(match[1]), parallelism: Number(match[3])}
  const {maxIterations, maxMemoryKiB, maxParallelism, minMemoryKiBPerLane} = ARGON2_LIMITS
  const inRange =
    params.parallelism >= 1 &&
    params.parallelism <= maxParallelism &&
    params.iterations >= 1 &&
    params.iterations <= maxIterations &&
    params.memoryKiB >= minMemoryKiBPerLane * params.parallelism &&
    params.memoryKiB <= maxMemoryKiB
  if (!inRange) {
    throw new KeystoreError(
      'EUSAGE',
      `${KDF_PARAMS_ENV}=${text} is outside the allowed range (memory ${minMemoryKiBPerLane}KiB per lane to ${maxMemoryKiB}KiB, ` +
        `iterations 1-${maxIterations}, parallelism 1-${maxParallelism}); fix it, or unset it for the default`,
    )
  }

  if (!belowDefaultCost(params) || env[KDF_TEST_MODE_ENV] === '1') return {params}
  const {iterations, memoryKiB, parallelism} = DEFAULT_ARGON2
  return {
    warning:
      `${KDF_PARAMS_ENV}=${text} is below the default argon2id cost (m=${memoryKiB},t=${iterations},p=${parallelism}), so the default was used; ` +
      `unset it (weaker costs are for test suites, with ${KDF_TEST_MODE_ENV}=1)`,
  }
}
