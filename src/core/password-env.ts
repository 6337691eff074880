import {promises as fs} from 'node:fs'

import {ARGON2_LIMITS, type Argon2Params} from './crypto.js'
import {KeystoreError} from './errors.js'

export const PASSWORD_ENV = 'APM_SERVER_KEYSTORE_PASSWORD'
export const PASSWORD_FILE_ENV = 'APM_SERVER_KEYSTORE_PASSWORD_FILE'

/**
 * The keystore password from `APM_SERVER_KEYSTORE_PASSWORD`, else from the file named by
 * `APM_SERVER_KEYSTORE_PASSWORD_FILE` (one trailing newline removed, as `echo` and editors add one).
 * Empty variables count as unset. Returns undefined when neither is set.
 */
export async function passwordFromEnvironment(env: NodeJS.ProcessEnv): Promise<Buffer | undefined> {
  const direct = env[PASSWORD_ENV]
  if (direct) return Buffer.from(direct, 'utf8')
  const file = env[PASSWORD_FILE_ENV]
  if (!file) return undefined
  let data: Buffer
  try {
    data = await fs.readFile(file)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new KeystoreError('ENOPASSWORD', `cannot read the password file ${file} named by ${PASSWORD_FILE_ENV}: ${code}; check the path and its permissions`)
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
