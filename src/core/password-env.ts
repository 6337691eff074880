/**
 * The keystore password and the argon2id cost of a new one, from the environment: what servers,
 * provisioning scripts and test suites use instead of a prompt.
 */
import {readRegularFile, RefusedFileError} from './bounded-read.js'
import {ARGON2_LIMITS, type Argon2Params} from './crypto.js'
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

export const KDF_PARAMS_ENV = 'APM_SERVER_KEYSTORE_KDF_PARAMS'

/**
 * argon2id cost for new passwords from `APM_SERVER_KEYSTORE_KDF_PARAMS` ("m=65536,t=3,p=4": memory KiB,
 * iterations, lanes). Meant for test suites that cannot afford 64 MiB per run; undefined when unset,
 * which means the strong default.
 */
export function kdfParamsFromEnvironment(env: NodeJS.ProcessEnv): Argon2Params | undefined {
  const text = env[KDF_PARAMS_ENV]
  if (!text) return undefined
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

  return params
}
