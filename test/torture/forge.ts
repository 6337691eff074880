/**
 * Forges correctly encrypted keystores with chosen contents. A no-password native file and a Beats file
 * need no secret to forge (they are obfuscated, not encrypted), so their payload parsers face whatever an
 * attacker who can write the file wants; with the password, so does a protected one.
 *
 * The native layout forged here is version 1 (or 2, whose index also holds `meta`) as src/core/format/native.ts documents it (header with the
 * index length; an index box of [name, length] rows and the values box digest; a values box of the
 * values, then two float64 times per entry; one key per box). `forgeCalibrated()` forges a valid file
 * and opens it with the core first: when the format has moved on, the forged checks are skipped with
 * that reason instead of failing for the wrong one.
 */
import {createHash} from 'node:crypto'

import {BEATS_V1, bindKeyToHeader, deriveArgon2id, deriveBeatsKey, deriveObfuscationKey, encryptAesGcm, sealSecretbox} from '../../src/core/crypto.js'
import {decodeNative} from '../../src/core/format/native.js'

type Random = () => number

/** argon2id at its cheapest (1 MiB, one pass): forged and base files are opened thousands of times. */
export const CHEAP_ARGON2 = Object.freeze({iterations: 1, memoryKiB: 1024, parallelism: 1})

function bytes(random: Random, length: number): Buffer {
  const out = Buffer.alloc(length)
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256)
  return out
}

export interface NativeForgery {
  /** the index box's plaintext (JSON), or a function of the values box digest */
  index: Buffer | ((valuesDigest: string) => Buffer)
  values: Buffer
  password?: Buffer
  /** the format version byte; 1 unless given (a version 2 index must then hold `meta`) */
  version?: number
}

/** A native keystore holding exactly the given index and values plaintexts, sealed as the format does. */
export async function forgeNative(forgery: NativeForgery, random: Random): Promise<Buffer> {
  const salt = bytes(random, 32)
  const nonce = bytes(random, 24)
  const header = Buffer.alloc(20 + 32 + 24 + 4)
  Buffer.from('APMKEYS\0', 'latin1').copy(header)
  header[8] = forgery.version ?? 1
  if (forgery.password) {
    header[9] = 1
    header.writeUInt32BE(CHEAP_ARGON2.memoryKiB, 10)
    header.writeUInt32BE(CHEAP_ARGON2.iterations, 14)
    header[18] = CHEAP_ARGON2.parallelism
  }

  header[19] = 32
  salt.copy(header, 20)
  nonce.copy(header, 52)
  const master = forgery.password ? await deriveArgon2id(forgery.password, salt, CHEAP_ARGON2) : deriveObfuscationKey(salt)
  const key = (purpose: string) => bindKeyToHeader(master, Buffer.concat([Buffer.from(purpose), header]))
  // The index length is in the header, which both keys bind: fix it first from a placeholder digest.
  const indexOf = typeof forgery.index === 'function' ? forgery.index : () => forgery.index as Buffer
  const placeholder = indexOf('A'.repeat(44))
  header.writeUInt32BE(placeholder.length + 16, 76)
  const valuesBox = sealSecretbox(forgery.values, nonce, key('values'))
  const digest = createHash('sha256').update(valuesBox).digest('base64')
  const index = indexOf(digest)
  if (index.length !== placeholder.length) throw new Error('forged index changed length with the digest')
  const indexBox = sealSecretbox(index, nonce, key('index'))
  return Buffer.concat([header, indexBox, valuesBox])
}

/** The index JSON of a well-formed file. */
export function validIndex(entries: Array<[string, Buffer]>): (digest: string) => Buffer {
  return (digest) => Buffer.from(JSON.stringify({entries: entries.map(([name, value]) => [name, value.length]), values: digest}))
}

/** The values box plaintext of a well-formed file: the values, then created/updated (float64 BE) per entry. */
export function validValues(values: Buffer[], times: Array<[number, number]> = values.map(() => [0, 0])): Buffer {
  const tail = Buffer.alloc(16 * times.length)
  times.forEach(([created, updated], i) => {
    tail.writeDoubleBE(created, 16 * i)
    tail.writeDoubleBE(updated, 16 * i + 8)
  })
  return Buffer.concat([...values, tail])
}

export function forgeBeats(payload: Buffer, random: Random): Buffer {
  const salt = bytes(random, BEATS_V1.saltBytes)
  const iv = bytes(random, BEATS_V1.ivBytes)
  const sealed = encryptAesGcm(payload, deriveBeatsKey(Buffer.alloc(0), salt), iv)
  return Buffer.concat([Buffer.from('v1'), Buffer.from(Buffer.concat([salt, iv, sealed]).toString('base64'))])
}

let calibration: Promise<string | undefined> | undefined

/** Undefined when forged native files open as the core reads them; else why not. */
export function forgeCalibrated(): Promise<string | undefined> {
  calibration ??= (async () => {
    const entries: Array<[string, Buffer]> = [
      ['A', Buffer.from('one')],
      ['B', Buffer.from([0, 1, 2])],
    ]
    try {
      const data = await forgeNative({index: validIndex(entries), values: validValues(entries.map(([, v]) => v))}, Math.random)
      const opened = await decodeNative(data, async () => Buffer.alloc(0))
      const same = opened.size === 2 && opened.get('A')?.value.equals(entries[0][1]) && opened.get('B')?.value.equals(entries[1][1])
      return same ? undefined : 'a forged native file opened with other contents'
    } catch (error) {
      return `the forger no longer matches the native format (${(error as Error).message})`
    }
  })()
  return calibration
}
