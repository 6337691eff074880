/**
 * One argon2id derivation at the keystore's default cost (64 MiB, t=3, p=4, as DEFAULT_ARGON2 in
 * src/core/crypto.ts), with the same package the CLI uses. Prints the in-process KDF time in ms, so the
 * harness gets both the whole process and the KDF alone.
 */
import {randomBytes} from 'node:crypto'

import argon2 from 'argon2'

const start = process.hrtime.bigint()
await argon2.hash(Buffer.from('benchmark password'), {
  hashLength: 32,
  memoryCost: 64 * 1024,
  parallelism: 4,
  raw: true,
  salt: randomBytes(16),
  timeCost: 3,
  type: argon2.argon2id,
})
process.stdout.write(`${Number(process.hrtime.bigint() - start) / 1e6}\n`)
