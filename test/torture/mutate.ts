/**
 * Hostile keystore files: valid bases in every format, and a seeded generator of damaged and crafted
 * variants of them. Used in-process by the fuzz worker and, for a sample, through the real CLI.
 *
 * Kinds:
 *   bitflip, byteset, truncate, extend, splice   random damage anywhere in the file
 *   swap-header                                   the header (or salt/iv) of one file on the body of another
 *   kdf                                           native headers with crafted argon2 parameters, KDF ids,
 *                                                 versions and salt lengths (u32 fields set to 0, 2^31,
 *                                                 2^32-1 = -1 as i32, caps + 1 ...)
 *   kdf-in-caps                                   parameters inside the caps on a file they do not belong
 *                                                 to: must cost no more than the caps allow, then fail
 *   payload                                       correctly encrypted files (no-password native and
 *                                                 Beats files need no secret to forge) whose JSON is wrong
 */
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {newKeystore} from '../../src/core/keystore.js'
import {CHEAP_ARGON2, forgeBeats, forgeCalibrated, forgeNative, NativeForgery, validValues} from './forge.js'
import {ROOT} from './lib.js'

export const BASE_PASSWORD = 'pw-hostile-base'
export {CHEAP_ARGON2} from './forge.js'

export interface Base {
  name: string
  kind: 'beats-v1' | 'native' | 'native-password'
  data: Buffer
  /** base64 of each value, to tell an equivalent file from an accepted forgery */
  entries: Map<string, string>
}

export interface Mutation {
  kind: string
  base: string
  data: Buffer
  /** when set, the file may open, but only with exactly these entries (e.g. Beats' ignored line breaks) */
  equivalentTo?: Map<string, string>
  /** a short description to reproduce */
  detail: string
}

const SAMPLE_ENTRIES: Array<[string, Buffer]> = [
  ['APM_SECRET_TOKEN', Buffer.from('s3cr3t-token-value')],
  ['ES_PASSWORD', Buffer.from('changeme\u00e9\n')],
  ['BINARY', Buffer.from([0, 1, 2, 255, 254, 0])],
]

async function encodeBase(kind: Base['kind'], extra: number): Promise<Buffer> {
  const keystore = newKeystore('/nonexistent/base.keystore', {
    format: kind === 'beats-v1' ? 'beats-v1' : 'native',
    kdfParams: CHEAP_ARGON2,
    password: kind === 'native-password' ? Buffer.from(BASE_PASSWORD) : undefined,
  })
  for (const [name, value] of SAMPLE_ENTRIES) keystore.set(name, value)
  for (let i = 0; i < extra; i++) keystore.set(`EXTRA_${i}`, Buffer.from(`extra value ${i}`))
  return keystore.encode()
}

function entriesOf(extra: number): Map<string, string> {
  const entries = new Map<string, string>()
  for (const [name, value] of SAMPLE_ENTRIES) entries.set(name, value.toString('base64'))
  for (let i = 0; i < extra; i++) entries.set(`EXTRA_${i}`, Buffer.from(`extra value ${i}`).toString('base64'))
  return entries
}

/** Three files of each kind (different sizes, salts and nonces), plus the Go-written fixture when present. */
export async function makeBases(): Promise<Base[]> {
  const bases: Base[] = []
  for (const kind of ['native', 'native-password', 'beats-v1'] as const) {
    for (const extra of [0, 1, 12]) {
      // eslint-disable-next-line no-await-in-loop -- a handful of small files
      bases.push({data: await encodeBase(kind, extra), entries: entriesOf(extra), kind, name: `${kind}+${extra}`})
    }
  }

  try {
    const data = readFileSync(path.join(ROOT, 'test', 'fixtures', 'beats-v1', 'sample.keystore'))
    const json = JSON.parse(readFileSync(path.join(ROOT, 'test', 'fixtures', 'beats-v1', 'sample.json'), 'utf8')) as Record<string, string>
    const entries = new Map<string, string>(Object.entries(json).map(([name, value]) => [name, typeof value === 'string' ? value : JSON.stringify(value)]))
    bases.push({data, entries, kind: 'beats-v1', name: 'beats-v1-go-fixture'})
  } catch {
    // The Go-written fixture is optional here.
  }

  return bases
}

type Random = () => number

const int = (random: Random, below: number) => Math.floor(random() * below)

function bytes(random: Random, length: number): Buffer {
  const out = Buffer.alloc(length)
  for (let i = 0; i < length; i++) out[i] = int(random, 256)
  return out
}

/** Where the native header ends (magic..nonce), read leniently. */
function nativeHeaderLength(data: Buffer): number {
  return 20 + (data.length > 19 ? data[19] : 32) + 24
}

// Values a u32 field is set to: 0, tiny, just past the caps, "negative" as i32, the largest.
const U32_HOSTILE = [0, 1, 7, 11, 17, 255, 1024 * 1024 + 1, 0x7f_ff_ff_ff, 0x80_00_00_00, 0xff_ff_ff_fe, 0xff_ff_ff_ff]

function craftKdf(random: Random, base: Base): {data: Buffer; detail: string} {
  const data = Buffer.from(base.data)
  const field = int(random, 7)
  switch (field) {
    case 0: {
      const value = U32_HOSTILE[int(random, U32_HOSTILE.length)]
      data.writeUInt32BE(value >>> 0, 10)
      // a memory value inside the caps is not hostile by itself: skip those here (kdf-in-caps covers them)
      if (value >= 8 && value <= 1024 * 1024 && data[9] === 1) data.writeUInt32BE(0xff_ff_ff_ff, 10)
      return {data, detail: `memory=${data.readUInt32BE(10)}`}
    }

    case 1: {
      let value = U32_HOSTILE[int(random, U32_HOSTILE.length)]
      if (value >= 1 && value <= 10 && data[9] === 1) value = 0
      data.writeUInt32BE(value >>> 0, 14)
      return {data, detail: `iterations=${value}`}
    }

    case 2: {
      const value = [0, 17, 64, 128, 255][int(random, 5)]
      data[18] = value
      return {data, detail: `parallelism=${value}`}
    }

    case 3: {
      const value = 2 + int(random, 254)
      data[9] = value
      return {data, detail: `kdf id=${value}`}
    }

    case 4: {
      const value = [0, 2, 3, 127, 255][int(random, 5)]
      data[8] = value
      return {data, detail: `version=${value}`}
    }

    case 5: {
      const value = [0, 1, 15, 65, 128, 255][int(random, 6)]
      data[19] = value
      return {data, detail: `salt length=${value}`}
    }

    default: {
      // KDF "none" with parameters, or argon2id with all-zero parameters
      if (data[9] === 0) {
        data.writeUInt32BE(1 + int(random, 0xff_ff), 10)
        return {data, detail: 'kdf none with memory set'}
      }

      data.fill(0, 10, 19)
      return {data, detail: 'argon2id with zero parameters'}
    }
  }
}

/** Parameters inside the caps on a header they were not sealed with: must fail after bounded work. */
function craftKdfInCaps(random: Random, base: Base): {data: Buffer; detail: string} {
  const data = Buffer.from(base.data)
  const parallelism = 1 + int(random, 4)
  const memory = [8 * parallelism, 1024, 4096, 16_384, 65_536][int(random, 5)]
  const iterations = 1 + int(random, 3)
  data[9] = 1
  data.writeUInt32BE(memory, 10)
  data.writeUInt32BE(iterations, 14)
  data[18] = parallelism
  return {data, detail: `argon2id m=${memory} t=${iterations} p=${parallelism}`}
}

/** Beats JSON that decrypts fine but is not a keystore payload. */
function hostileBeatsPayloads(): Array<[string, Buffer]> {
  const wrap = (entries: unknown) => Buffer.from(JSON.stringify(entries))
  return [
    ['not json', Buffer.from('this is not json')],
    ['empty', Buffer.alloc(0)],
    ['json null', Buffer.from('null')],
    ['json array', Buffer.from('[1,2,3]')],
    ['json string', Buffer.from('"entries"')],
    ['bad key name (space)', wrap({'A B': {value: 'eA=='}})],
    ['bad key name (empty)', wrap({'': {value: 'eA=='}})],
    ['bad key name (256 chars)', wrap({['K'.repeat(256)]: {value: 'eA=='}})],
    ['bad key name (unicode)', wrap({'cl\u00e9': {value: 'eA=='}})],
    ['bad key name (raw 0xff byte)', Buffer.concat([Buffer.from('{"A'), Buffer.from([0xff]), Buffer.from('":{"value":"eA=="}}')])],
    ['value is a number', wrap({A: {value: 42}})],
    ['value is an object', wrap({A: {value: {x: 1}}})],
    ['value not base64', wrap({A: {value: '***'}})],
    ['entry is a string', wrap({A: 'eA=='})],
    ['entry is null', wrap({A: null})],
    ['deep nesting', Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`)],
    ['truncated json', wrap({A: {value: 'eA=='}}).subarray(0, -3)],
  ]
}

/** Native index and values plaintexts (see forge.ts) that decrypt fine but do not make a keystore. */
function hostileNativeIndexes(): Array<[string, NativeForgery]> {
  const values = validValues([Buffer.from('one'), Buffer.from('two')])
  const index =
    (rows: unknown, extra: Record<string, unknown> = {}) =>
    (digest: string) =>
      Buffer.from(JSON.stringify({entries: rows, values: digest, ...extra}))
  const raw = (text: string) => () => Buffer.from(text)
  const good = index([['A', 3], ['B', 3]])
  return [
    ['not json', {index: raw('this is not json'), values}],
    ['empty index', {index: raw(''), values}],
    ['json null', {index: raw('null'), values}],
    ['json array', {index: raw('[1,2,3]'), values}],
    ['entries is an object', {index: index({A: 3, B: 3}), values}],
    ['values digest missing', {index: raw('{"entries":[]}'), values}],
    ['values digest of other bytes', {index: index([['A', 3], ['B', 3]], {values: `${'B'.repeat(43)}=`}), values}],
    ['row is not an array', {index: index([{name: 'A'}, ['B', 3]]), values}],
    ['row too short', {index: index([['A'], ['B', 3]]), values}],
    ['bad key name (space)', {index: index([['A B', 3], ['B', 3]]), values}],
    ['bad key name (empty)', {index: index([['', 3], ['B', 3]]), values}],
    ['bad key name (256 chars)', {index: index([['K'.repeat(256), 3], ['B', 3]]), values}],
    ['bad key name (unicode)', {index: index([['cl\u00e9', 3], ['B', 3]]), values}],
    ['key name not a string', {index: index([[42, 3], ['B', 3]]), values}],
    ['duplicate key', {index: index([['A', 3], ['A', 3]]), values}],
    ['negative length', {index: index([['A', -1], ['B', 7]]), values}],
    ['fractional length', {index: index([['A', 2.5], ['B', 3.5]]), values}],
    ['length is a string', {index: index([['A', '3'], ['B', 3]]), values}],
    ['length past 2^53', {index: index([['A', 2 ** 60], ['B', 3]]), values}],
    ['lengths sum short of the values', {index: index([['A', 3], ['B', 1]]), values}],
    ['lengths sum past the values', {index: index([['A', 3], ['B', 9]]), values}],
    ['values box shorter than its times', {index: good, values: Buffer.from('onetwo')}],
    ['a time that is NaN', {index: good, values: validValues([Buffer.from('one'), Buffer.from('two')], [[Number.NaN, 0], [0, 0]])}],
    ['a time past 2^53', {index: good, values: validValues([Buffer.from('one'), Buffer.from('two')], [[0, 0], [0, 2 ** 60]])}],
    ['deep nesting', {index: raw(`{"entries":${'['.repeat(100_000)}${']'.repeat(100_000)}}`), values}],
  ]
}

export const MUTATION_KINDS = ['bitflip', 'byteset', 'truncate', 'extend', 'splice', 'swap-header', 'kdf', 'kdf-in-caps', 'payload'] as const
export type MutationKind = (typeof MUTATION_KINDS)[number]

/** Kind weights: random damage dominates; crafted headers and payloads are a steady share. */
const WEIGHTS: Array<[MutationKind, number]> = [
  ['bitflip', 30],
  ['byteset', 10],
  ['truncate', 15],
  ['extend', 10],
  ['splice', 5],
  ['swap-header', 10],
  ['kdf', 14],
  ['kdf-in-caps', 1],
  ['payload', 5],
]

function pickKind(random: Random): MutationKind {
  const total = WEIGHTS.reduce((sum, [, weight]) => sum + weight, 0)
  let roll = random() * total
  for (const [kind, weight] of WEIGHTS) {
    roll -= weight
    if (roll < 0) return kind
  }

  return 'bitflip'
}

/**
 * The `index`-th mutation of a seeded stream. Deterministic in (seed, index), so a failure can be
 * reproduced alone.
 */
export async function mutation(bases: Base[], random: Random): Promise<Mutation> {
  const made = await makeMutation(bases, random)
  const base = bases.find((b) => b.name === made.base)
  // A file may open only if it is byte-identical to its base, or a Beats file whose damage fell on
  // what Go's decoder ignores too (line breaks, base64 padding bits); then it must hold the same entries.
  if (base && (base.kind === 'beats-v1' || made.data.equals(base.data))) made.equivalentTo = base.entries
  return made
}

async function makeMutation(bases: Base[], random: Random): Promise<Mutation> {
  const kind = pickKind(random)
  const base = bases[int(random, bases.length)]
  const data = base.data
  const isBeats = base.kind === 'beats-v1'
  switch (kind) {
    case 'bitflip': {
      const flips = 1 + int(random, random() < 0.7 ? 1 : 8)
      const out = Buffer.from(data)
      const at: number[] = []
      for (let i = 0; i < flips; i++) {
        const position = int(random, out.length)
        at.push(position)
        out[position] ^= 1 << int(random, 8)
      }

      return {base: base.name, data: out, detail: `flipped bits at ${at.join(',')}`, kind}
    }

    case 'byteset': {
      const out = Buffer.from(data)
      const position = int(random, out.length)
      const value = [0, 0xff, 0x0a, 0x3d, int(random, 256)][int(random, 5)]
      out[position] = value
      return {base: base.name, data: out, detail: `byte ${position} = ${value}`, kind}
    }

    case 'truncate': {
      const length = random() < 0.3 ? int(random, Math.min(80, data.length)) : int(random, data.length)
      return {base: base.name, data: data.subarray(0, length), detail: `truncated to ${length} of ${data.length} bytes`, kind}
    }

    case 'extend': {
      const tail = [() => bytes(random, 1 + int(random, 64)), () => Buffer.alloc(1 + int(random, 4096)), () => Buffer.from(data), () => Buffer.from('\n')][int(random, 4)]()
      return {base: base.name, data: Buffer.concat([data, tail]), detail: `${tail.length} bytes appended`, kind}
    }

    case 'splice': {
      const other = bases[int(random, bases.length)].data
      const from = int(random, other.length)
      const chunk = other.subarray(from, from + 1 + int(random, 64))
      const at = int(random, data.length)
      return {base: base.name, data: Buffer.concat([data.subarray(0, at), chunk, data.subarray(at)]), detail: `${chunk.length} bytes of another file inserted at ${at}`, kind}
    }

    case 'swap-header': {
      const other = bases.filter((b) => b !== base)[int(random, bases.length - 1)]
      if (!isBeats && other.kind !== 'beats-v1') {
        const headerA = nativeHeaderLength(other.data)
        const headerB = nativeHeaderLength(data)
        return {base: base.name, data: Buffer.concat([other.data.subarray(0, headerA), data.subarray(headerB)]), detail: `header of ${other.name} on body of ${base.name}`, kind}
      }

      // Beats: salt and iv are the first 76 raw bytes = 2 + 100 base64 characters (+ a partial group)
      const cut = 2 + 100
      return {base: base.name, data: Buffer.concat([other.data.subarray(0, cut), data.subarray(cut)]), detail: `first ${cut} bytes of ${other.name} on ${base.name}`, kind}
    }

    case 'kdf': {
      const natives = bases.filter((b) => b.kind !== 'beats-v1')
      const target = natives[int(random, natives.length)]
      const crafted = craftKdf(random, target)
      return {base: target.name, data: crafted.data, detail: crafted.detail, kind}
    }

    case 'kdf-in-caps': {
      const natives = bases.filter((b) => b.kind !== 'beats-v1')
      const target = natives[int(random, natives.length)]
      const crafted = craftKdfInCaps(random, target)
      return {base: target.name, data: crafted.data, detail: crafted.detail, kind}
    }

    default: {
      // Natives only while the forger still matches the format (see forge.ts).
      const beats = random() < 0.4 || (await forgeCalibrated()) !== undefined
      if (beats) {
        const payloads = hostileBeatsPayloads()
        const [name, payload] = payloads[int(random, payloads.length)]
        return {base: 'forged beats-v1', data: forgeBeats(payload, random), detail: name, kind}
      }

      const forgeries = hostileNativeIndexes()
      const [name, forgery] = forgeries[int(random, forgeries.length)]
      const password = random() < 0.3 ? Buffer.from(BASE_PASSWORD) : undefined
      return {base: password ? 'forged native-password' : 'forged native', data: await forgeNative({...forgery, password}, random), detail: name, kind}
    }
  }
}
