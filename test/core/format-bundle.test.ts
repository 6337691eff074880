import assert from 'node:assert/strict'

import {generateX25519KeyPair, signingKeyPairOf, X25519KeyPair} from '../../src/core/crypto.js'
import {MAX_KEYS} from '../../src/core/entries.js'
import {isKeystoreError} from '../../src/core/errors.js'
import {
  ARMOR_BEGIN,
  ARMOR_END,
  armorBundle,
  BUNDLE_OPEN_FAILED_MESSAGE,
  BundleEntry,
  MAX_RECIPIENTS,
  openBundle,
  readBundle,
  sealBundle,
  sealPayload,
} from '../../src/core/format/bundle.js'
import {fingerprintOf, formatSigner} from '../../src/core/recipient.js'
import {ALL_BYTES} from '../helpers/keystore.js'

const ENTRIES: BundleEntry[] = [
  {name: 'APM_SECRET_TOKEN', value: Buffer.from('findable-token-value')},
  {name: 'ALL_BYTES', value: ALL_BYTES},
]

/** Reads and opens `data` as `pair` would: entries, or the refusal (code and message). */
function attempt(data: Buffer, pair: X25519KeyPair): BundleEntry[] | {code: string; message: string} {
  try {
    const bundle = readBundle(data)
    if (!bundle.stanzaFor(pair.publicKey)) return {code: 'ENOTRECIPIENT', message: bundle.recipients.join(',')}
    return openBundle(bundle, pair).entries
  } catch (error) {
    assert.ok(isKeystoreError(error), `not a KeystoreError: ${String(error)}`)
    return {code: error.code, message: error.message}
  }
}

function entriesText(entries: BundleEntry[]): string[] {
  return entries.map(({name, value}) => `${name}=${value.toString('hex')}`)
}

describe('core/format/bundle', () => {
  const host = generateX25519KeyPair()
  const other = generateX25519KeyPair()
  const stranger = generateX25519KeyPair()
  const binary = sealBundle(ENTRIES, [host.publicKey, other.publicKey], {created: Date.now()})
  const armored = armorBundle(binary)

  it('round trip: each recipient opens the same entries, from the armour and the binary form', () => {
    for (const pair of [host, other]) {
      for (const data of [armored, binary]) assert.deepEqual(entriesText(attempt(data, pair) as BundleEntry[]), entriesText(ENTRIES))
    }

    assert.deepEqual(readBundle(armored).recipients, [fingerprintOf(host.publicKey), fingerprintOf(other.publicKey)])
  })

  it('a host it was not sealed to has no stanza; the header names the recipients', () => {
    assert.deepEqual(attempt(armored, stranger), {code: 'ENOTRECIPIENT', message: `${fingerprintOf(host.publicKey)},${fingerprintOf(other.publicKey)}`})
  })

  it('armour: BEGIN, 64-column base64 lines, END, one newline', () => {
    const lines = armored.toString('latin1').split('\n')
    assert.equal(lines[0], ARMOR_BEGIN)
    assert.equal(lines.at(-2), ARMOR_END)
    assert.equal(lines.at(-1), '')
    for (const line of lines.slice(1, -3)) assert.match(line, /^[A-Za-z0-9+/]{64}$/)
    assert.match(lines.at(-3)!, /^[A-Za-z0-9+/]{1,62}={0,2}$|^[A-Za-z0-9+/]{63}=$|^[A-Za-z0-9+/]{64}$/)
  })

  it('holds no key name and no value, in any form, and seals anew each time', () => {
    for (const data of [binary, armored]) {
      for (const secret of ['APM_SECRET_TOKEN', 'ALL_BYTES', 'findable-token-value']) {
        for (const form of [Buffer.from(secret), Buffer.from(Buffer.from(secret).toString('hex')), Buffer.from(secret, 'utf16le')]) assert.equal(data.includes(form), false, secret)
      }

      assert.equal(data.includes(ALL_BYTES.subarray(0, 32)), false)
    }

    assert.notDeepEqual(sealBundle(ENTRIES, [host.publicKey], {created: Date.now()}).subarray(11), sealBundle(ENTRIES, [host.publicKey], {created: Date.now()}).subarray(11))
  })

  describe('every changed, missing or added byte is refused', () => {
    const small = sealBundle([{name: 'K', value: Buffer.from('v')}], [host.publicKey, other.publicKey], {created: Date.now()})
    const smallArmored = armorBundle(small)

    for (const [label, data] of [
      ['armoured', smallArmored],
      ['binary', small],
    ] as const) {
      it(`${label}: each of its ${data.length} bytes flipped in turn (xor 0x01, 0x20, 0x80, 0xff)`, () => {
        let refused = 0
        for (let i = 0; i < data.length; i++) {
          for (const mask of [0x01, 0x20, 0x80, 0xff]) {
            const flipped = Buffer.from(data)
            flipped[i] ^= mask
            const outcome = attempt(flipped, host)
            assert.ok(!Array.isArray(outcome), `byte ${i} ^ 0x${mask.toString(16)} was accepted`)
            refused++
          }
        }

        assert.equal(refused, 4 * data.length)
      })

      it(`${label}: cut at every length, each byte removed, a byte added at each place`, () => {
        for (let length = 0; length < data.length; length++) assert.ok(!Array.isArray(attempt(data.subarray(0, length), host)), `cut to ${length}`)
        for (let i = 0; i < data.length; i++) {
          assert.ok(!Array.isArray(attempt(Buffer.concat([data.subarray(0, i), data.subarray(i + 1)]), host)), `byte ${i} removed`)
          for (const byte of [0x0a, 0x41, data[i]]) {
            const longer = Buffer.concat([data.subarray(0, i), Buffer.from([byte]), data.subarray(i)])
            assert.ok(!Array.isArray(attempt(longer, host)), `0x${byte.toString(16)} added at ${i}`)
          }
        }

        assert.ok(!Array.isArray(attempt(Buffer.concat([data, Buffer.from('\n')]), host)), 'a byte added at the end')
      })
    }

    it('after the header checks, a changed stanza and a changed payload give the one vague error', () => {
      const stanzaAt = 11 + 8 + 4
      const payloadAt = small.length - 5
      for (const at of [stanzaAt, stanzaAt + 40, 11 + 88 + 3, payloadAt, small.length - 1]) {
        const changed = Buffer.from(small)
        changed[at] ^= 0x04
        assert.deepEqual(attempt(changed, host), {code: 'EDECRYPT', message: BUNDLE_OPEN_FAILED_MESSAGE}, `byte ${at}`)
      }
    })
  })

  describe('the signature: who sealed it, and when', () => {
    const signer = signingKeyPairOf(generateX25519KeyPair().secretKey)
    const body = Buffer.from([0, 0, 0, 1, 1, 0x4b, 0, 0, 0, 1, 0x76])

    it('a signed bundle names its signer and time once its signature verifies; an unsigned one names none', () => {
      const opened = openBundle(readBundle(sealBundle([{name: 'K', value: Buffer.from('v')}], [host.publicKey], {created: 1_800_000_000_000, signer})), host)
      assert.deepEqual([formatSigner(opened.signer!), opened.created, entriesText(opened.entries)], [formatSigner(signer.publicKey), 1_800_000_000_000, ['K=76']])
      const unsigned = openBundle(readBundle(sealBundle([{name: 'K', value: Buffer.from('v')}], [host.publicKey], {created: 5})), host)
      assert.deepEqual([unsigned.signer, unsigned.created], [undefined, 5])
    })

    it('every byte of the signed prefix (flag, time, signer, signature) changed before sealing is refused', () => {
      for (let at = 0; at < 105; at++) {
        for (const mask of [0x01, 0x80]) {
          const forged = sealPayload(body, [host.publicKey], {created: 1_800_000_000_000, signer, tamper: (prefix) => (prefix[at] ^= mask)})
          const outcome = attempt(forged, host) as {code: string; message: string}
          assert.ok(!Array.isArray(outcome), `prefix byte ${at} ^ 0x${mask.toString(16)} was accepted`)
          assert.ok(['ESIGNER', 'EDECRYPT'].includes(outcome.code), `prefix byte ${at}: ${outcome.code}`)
        }
      }
    })

    it('a signature that does not verify names the signer it claims', () => {
      const forged = sealPayload(body, [host.publicKey], {created: 1, signer, tamper: (prefix) => (prefix[104] ^= 1)})
      assert.deepEqual(attempt(forged, host), {
        code: 'ESIGNER',
        message: `claims to be signed by ${formatSigner(signer.publicKey)}, but its signature does not match: it was forged or changed; ask its sender to seal it again, and check how it travelled`,
      })
    })

    it('re-sealed by a recipient to another host under the same signature: refused (the signature covers every stanza)', () => {
      // The signature of one bundle, copied into another sealed to someone else with the same entries and time.
      let signature = Buffer.alloc(0)
      sealPayload(body, [host.publicKey], {created: 7, signer, tamper: (prefix) => (signature = Buffer.from(prefix.subarray(41)))})
      const moved = sealPayload(body, [other.publicKey], {created: 7, signer, tamper: (prefix) => signature.copy(prefix, 41)})
      assert.equal((attempt(moved, other) as {code: string}).code, 'ESIGNER')
    })
  })

  describe('precise errors before any decryption (table)', () => {
    const text = armored.toString('latin1')
    const withHeader = (edit: (data: Buffer) => void) => {
      const copy = Buffer.from(binary)
      edit(copy)
      return copy
    }

    // A header declaring one byte more than a keystore may hold (with the signed prefix and the tag), and that many zero bytes after it.
    const bigPayload = () => {
      const header = Buffer.from(binary.subarray(0, 11 + 2 * 88 + 28))
      header.writeUInt32BE(256 * 1024 * 1024 + 105 + 17, header.length - 4)
      return Buffer.concat([header, Buffer.alloc(256 * 1024 * 1024 + 105 + 17)])
    }

    const cases: Array<[string, Buffer | (() => Buffer), string, string | RegExp]> = [
      ['not a bundle', Buffer.from('hello'), 'EFORMAT', `is not a sealed bundle (it starts with neither ${ARMOR_BEGIN} nor the binary magic)`],
      ['CRLF line endings', Buffer.from(text.replaceAll('\n', '\r\n')), 'EFORMAT', 'has \\r\\n line endings; convert it back to \\n endings (dos2unix) and retry'],
      ['no END line', Buffer.from(text.slice(0, text.indexOf(ARMOR_END))), 'EFORMAT', `is truncated: its ${ARMOR_END} line is missing`],
      ['no final newline', Buffer.from(text.slice(0, -1)), 'EFORMAT', /^ends without the newline after its END line/],
      ['data after END', Buffer.from(`${text}more\n`), 'EFORMAT', 'has data after its END line; remove it'],
      ['a short line', Buffer.from(text.replace(/\n([A-Za-z0-9+/]{64})\n/, (_m, line: string) => `\n${line.slice(1)}\n`)), 'EFORMAT', /^has a line 2 of 63 characters/],
      ['a space', Buffer.from(text.replace(/\n([A-Za-z0-9+/]{64})\n/, (_m, line: string) => `\n ${line.slice(1)}\n`)), 'EFORMAT', 'has a character on line 2 that base64 does not use'],
      ['version 3', withHeader((d) => (d[8] = 3)), 'EVERSION', 'is a sealed bundle of version 3; this build reads versions 1 and 2, upgrade apm-server'],
      ['version 0', withHeader((d) => (d[8] = 0)), 'EVERSION', 'is a sealed bundle of version 0; this build reads versions 1 and 2, upgrade apm-server'],
      ['bad magic in the armour', armorBundle(withHeader((d) => (d[0] = 0x61))), 'EFORMAT', 'is not a sealed bundle (bad magic)'],
      ['no recipients', withHeader((d) => d.writeUInt16BE(0, 9)), 'EFORMAT', 'is sealed to no recipient'],
      ['too many recipients', withHeader((d) => d.writeUInt16BE(MAX_RECIPIENTS + 1, 9)), 'ELIMITS', /^is sealed to 1001 recipients, over the limit of 1000/],
      ['one recipient fewer', withHeader((d) => d.writeUInt16BE(1, 9)), 'EFORMAT', /^declares a \d+-byte payload but \d+ bytes follow its header/],
      ['a recipient twice', withHeader((d) => d.copy(d, 11 + 88, 11, 11 + 8)), 'EFORMAT', `names recipient ${fingerprintOf(host.publicKey)} twice`],
      ['a 4 GiB payload declared', withHeader((d) => d.writeUInt32BE(0xff_ff_ff_ff, 11 + 2 * 88 + 24)), 'EFORMAT', /^declares a 4294967295-byte payload but \d+ bytes follow/],
      ['a payload over the keystore limit', bigPayload, 'ELIMITS', /^holds a 268435578-byte payload, more than a keystore may hold \(268435456 bytes\)/],
      ['an empty payload', withHeader((d) => d.writeUInt32BE(0, 11 + 2 * 88 + 24)).subarray(0, 11 + 2 * 88 + 28), 'EFORMAT', 'has a 0-byte payload, too short to hold any entries'],
      ['header cut short', binary.subarray(0, 50), 'EFORMAT', 'is truncated (header incomplete)'],
    ]
    for (const [label, data, code, message] of cases) {
      it(label, () => {
        const outcome = attempt(typeof data === 'function' ? data() : data, host) as {code: string; message: string}
        assert.equal(outcome.code, code, `${label}: ${outcome.message}`)
        if (typeof message === 'string') assert.equal(outcome.message, message)
        else assert.match(outcome.message, message)
      })
    }
  })

  describe('limits', () => {
    it('seals to 1 to 1,000 recipients, each once', () => {
      assert.throws(() => sealBundle(ENTRIES, [], {created: Date.now()}), {code: 'ELIMITS'})
      const keys = Array.from({length: MAX_RECIPIENTS + 1}, (_, i) => Uint8Array.from(host.publicKey.map((byte, j) => (j === 0 ? byte ^ (i & 0xff) : j === 1 ? byte ^ (i >> 8) : byte))))
      assert.throws(() => sealBundle(ENTRIES, keys, {created: Date.now()}), {code: 'ELIMITS', message: /not 1001; seal to fewer hosts/})
      assert.deepEqual(readBundle(sealBundle(ENTRIES, [host.publicKey, host.publicKey], {created: Date.now()})).recipients, [fingerprintOf(host.publicKey)])
    })

    it('refuses to seal more keys than a keystore may hold', () => {
      const many = Array.from({length: MAX_KEYS + 1}, (_, i) => ({name: `K${i}`, value: Buffer.from('v')}))
      assert.throws(() => sealBundle(many, [host.publicKey], {created: Date.now()}), {code: 'ELIMITS', message: /at most 100000 keys/})
    })

    it('a forged payload of more keys than a keystore may hold is refused once open: ELIMITS', () => {
      const plaintext = Buffer.alloc(4)
      plaintext.writeUInt32BE(MAX_KEYS + 1)
      const outcome = attempt(sealPayload(plaintext, [host.publicKey]), host) as {code: string; message: string}
      assert.deepEqual(outcome, {code: 'ELIMITS', message: 'holds 100001 keys, more than a keystore may hold (100000); seal fewer keys'})
    })

    it('forged payloads that break the entry rules get the one vague error (table)', () => {
      const entry = (name: string, value: Buffer) => Buffer.concat([Buffer.from([name.length]), Buffer.from(name, 'latin1'), Buffer.alloc(4), value]).fill(0, 0, 0)
      const frame = (count: number, ...parts: Buffer[]) => {
        const body = Buffer.concat(parts)
        const head = Buffer.alloc(4)
        head.writeUInt32BE(count)
        return Buffer.concat([head, body])
      }

      const withLength = (name: string, value: Buffer, length = value.length) => {
        const out = entry(name, value)
        out.writeUInt32BE(length, 1 + name.length)
        return out
      }

      const cases: Array<[string, Buffer]> = [
        ['an invalid name', frame(1, withLength('A B', Buffer.from('v')))],
        ['an empty value', frame(1, withLength('A', Buffer.alloc(0)))],
        ['a name twice', frame(2, withLength('A', Buffer.from('v')), withLength('A', Buffer.from('w')))],
        ['a count too high', frame(2, withLength('A', Buffer.from('v')))],
        ['bytes left over', frame(1, withLength('A', Buffer.from('v')), Buffer.from('x'))],
        ['a value length past the end', frame(1, withLength('A', Buffer.from('v'), 2))],
        ['an empty name', frame(1, withLength('', Buffer.from('v')))],
      ]
      for (const [label, plaintext] of cases) {
        assert.deepEqual(attempt(sealPayload(plaintext, [host.publicKey]), host), {code: 'EDECRYPT', message: BUNDLE_OPEN_FAILED_MESSAGE}, label)
      }

      assert.deepEqual(entriesText(attempt(sealPayload(frame(1, withLength('A', Buffer.from('v'))), [host.publicKey]), host) as BundleEntry[]), ['A=76'])
    })
  })
})
