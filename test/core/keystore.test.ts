import assert from 'node:assert/strict'
import {chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {MAX_VALUE_BYTES} from '../../src/core/entries.js'
import {DECRYPT_FAILED_MESSAGE, KeystoreError} from '../../src/core/errors.js'
import {decodeNative, encodeNative, readNativeHeader} from '../../src/core/format/native.js'
import {
  createKeystore,
  inspectKeystore,
  inspectKeystoreData,
  Keystore,
  KeystoreFormat,
  openKeystore,
  updateKeystore,
} from '../../src/core/keystore.js'
import {makeTempDir} from '../helpers/cli.js'
import {ALL_BYTES, assertKeystoreError, CHEAP_KDF, modeOf, namesIn, noPasswordExpected, passwordOf} from '../helpers/keystore.js'

const KEY_RULE = 'key names are 1 to 255 characters from A-Z a-z 0-9 _ . -'

describe('core/keystore', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  beforeEach(() => {
    tmp = makeTempDir()
    file = path.join(tmp.dir, 'data', 'apm-server.keystore')
  })
  afterEach(() => tmp.cleanup())

  describe('round trip of all 256 byte values', () => {
    const cases: Array<[KeystoreFormat, string | undefined]> = [
      ['native', undefined],
      ['native', 'pässwörd'],
      ['beats-v1', undefined],
    ]
    for (const [format, password] of cases) {
      it(`${format} ${password ? 'with' : 'without'} a password`, async () => {
        await createKeystore(file, {format, kdfParams: CHEAP_KDF, password: password ? Buffer.from(password) : undefined})
        const source = password ? passwordOf(password) : noPasswordExpected()
        await updateKeystore(file, {password: source}, (keystore) => {
          keystore.set('ALL_BYTES', ALL_BYTES)
          keystore.set('REVERSED', Buffer.from(ALL_BYTES).reverse())
        })
        const keystore = await openKeystore(file, {password: source})
        assert.equal(keystore.format, format)
        assert.equal(keystore.passwordProtected, password !== undefined)
        assert.deepEqual(keystore.keys(), ['ALL_BYTES', 'REVERSED'])
        assert.deepEqual(keystore.get('ALL_BYTES'), ALL_BYTES)
        assert.deepEqual(keystore.get('REVERSED'), Buffer.from(ALL_BYTES).reverse())
        assert.deepEqual(await inspectKeystore(file), {format, passwordProtected: password !== undefined})
      })
    }

    it('a beats-v1 keystore cannot have a password', async () => {
      await assertKeystoreError(
        createKeystore(file, {format: 'beats-v1', kdfParams: CHEAP_KDF, password: Buffer.from('x')}),
        'EUNSUPPORTED',
        'Beats v1 keystores cannot have a password (the Go apm-server always opens them with an empty one); use --format native',
      )
      assert.deepEqual(namesIn(tmp.dir), [])
    })
  })

  describe('create', () => {
    it('writes mode 0600 in a new 0700 directory, and refuses to overwrite without overwrite', async () => {
      const deep = path.join(tmp.dir, 'a', 'b', 'apm-server.keystore')
      await createKeystore(deep, {format: 'native'})
      assert.equal(modeOf(deep), 0o600)
      assert.equal(modeOf(path.join(tmp.dir, 'a')), 0o700)
      assert.equal(modeOf(path.join(tmp.dir, 'a', 'b')), 0o700)
      const before = readFileSync(deep)
      await assertKeystoreError(createKeystore(deep, {format: 'native'}), 'EEXISTS', `keystore ${deep} already exists; use --force to overwrite it`)
      assert.deepEqual(readFileSync(deep), before)
      await createKeystore(deep, {format: 'beats-v1', overwrite: true})
      assert.equal((await openKeystore(deep)).format, 'beats-v1')
      assert.deepEqual(namesIn(path.dirname(deep)), ['apm-server.keystore'])
    })

    it('replaces a damaged keystore only with overwrite', async () => {
      await createKeystore(file, {format: 'native'})
      // Damaged past its first bytes (a cut copy): still a keystore by its magic.
      writeFileSync(file, Buffer.concat([readFileSync(file).subarray(0, 20), Buffer.from('garbage')]))
      await assertKeystoreError(createKeystore(file, {format: 'native'}), 'EEXISTS')
      await createKeystore(file, {format: 'native', overwrite: true})
      assert.deepEqual((await openKeystore(file)).keys(), [])
      writeFileSync(file, 'v1 damaged beats keystore')
      await createKeystore(file, {format: 'native', overwrite: true})
      assert.deepEqual((await openKeystore(file)).keys(), [])
    })

    it('never replaces what is not a keystore, even with overwrite: a file that does not start like one, an empty file, a directory', async () => {
      const table: Array<[string, () => void, string]> = [
        ['garbage', () => writeFileSync(file, 'garbage'), 'it does not start like a native or Beats v1 keystore'],
        ['an /etc file', () => writeFileSync(file, 'root:x:0:0:root:/root:/bin/bash\n'), 'it does not start like a native or Beats v1 keystore'],
        ['empty', () => writeFileSync(file, ''), 'it is empty'],
        ['directory', () => mkdirSync(file), 'it is a directory'],
      ]
      mkdirSync(path.dirname(file), {mode: 0o700, recursive: true})
      for (const [name, make, reason] of table) {
        rmSync(file, {force: true, recursive: true})
        make()
        const before = statSync(file).isFile() ? readFileSync(file) : undefined
        // eslint-disable-next-line no-await-in-loop -- a table
        await assertKeystoreError(
          createKeystore(file, {format: 'native', overwrite: true}),
          'EFORMAT',
          `${file} is not a keystore (${reason}) and create replaces only keystores; check keystore.path and --path.data, or move it away first`,
        )
        if (before) assert.deepEqual(readFileSync(file), before, name)
        else assert.equal(statSync(file).isDirectory(), true, name)
      }
    })

    it('refuses an empty new password', async () => {
      await assertKeystoreError(
        createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.alloc(0)}),
        'EPASSWORD',
        'the new password is empty; give a non-empty password, or use --remove to remove it',
      )
      assert.deepEqual(namesIn(tmp.dir), [])
    })
  })

  describe('open', () => {
    it('no keystore: ENOKEYSTORE naming the path and the fix', async () => {
      await assertKeystoreError(openKeystore(file), 'ENOKEYSTORE', `no keystore at ${file}; create one with "apm-server keystore create"`)
      assert.equal(await inspectKeystore(file), undefined)
    })

    it('asks for the password only when the file is protected, and at most once', async () => {
      await createKeystore(file, {format: 'native'})
      await openKeystore(file, {password: noPasswordExpected()})
      await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, overwrite: true, password: Buffer.from('pw')})
      let asked = 0
      await updateKeystore(
        file,
        {
          async password() {
            asked++
            return Buffer.from('pw')
          },
        },
        (keystore) => keystore.set('A', Buffer.from('a')),
      )
      assert.equal(asked, 1)
    })

    it('protected and no password source: ENOPASSWORD naming the path and the variables', async () => {
      await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
      await assertKeystoreError(
        openKeystore(file),
        'ENOPASSWORD',
        `keystore ${file} is password protected; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE`,
      )
    })

    it('wrong password, flipped bit, truncated, bad magic, unknown version: distinct codes, all naming the path', async () => {
      await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
      await updateKeystore(file, {password: passwordOf('pw')}, (keystore) => keystore.set('A', Buffer.from('a')))
      const good = readFileSync(file)
      const flipped = Buffer.from(good)
      flipped[flipped.length - 3] ^= 0x10
      const variants: Array<[string, Buffer, string, string]> = [
        ['wrong password', good, 'EDECRYPT', `${file}: ${DECRYPT_FAILED_MESSAGE}`],
        ['flipped ciphertext bit', flipped, 'EDECRYPT', `${file}: ${DECRYPT_FAILED_MESSAGE}`],
        ['truncated header', good.subarray(0, 30), 'EFORMAT', `${file}: keystore file is truncated`],
        ['truncated fixed header', good.subarray(0, 12), 'EFORMAT', `${file}: keystore file is truncated (header incomplete)`],
        ['bad magic', Buffer.concat([Buffer.from('X'), good.subarray(1)]), 'EFORMAT', `${file}: not an apm-server keystore (bad magic)`],
        [
          'unknown version',
          Buffer.concat([good.subarray(0, 8), Buffer.from([9]), good.subarray(9)]),
          'EVERSION',
          `${file}: unsupported keystore format version 9; this build reads versions up to 2, upgrade apm-server`,
        ],
      ]
      for (const [label, data, code, message] of variants) {
        writeFileSync(file, data)
        const password = label === 'wrong password' ? passwordOf('not-pw') : passwordOf('pw')
        // eslint-disable-next-line no-await-in-loop -- a table
        await assertKeystoreError(openKeystore(file, {password}), code as 'EDECRYPT', message).catch((error: Error) => {
          throw new Error(`${label}: ${error.message}`)
        })
      }
    })

    it('header ELIMITS comes before any password is asked', async () => {
      await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
      const data = readFileSync(file)
      data.writeUInt32BE(4 * 1024 * 1024, 10) // 4 GiB: would exhaust memory if honoured
      writeFileSync(file, data)
      await assertKeystoreError(openKeystore(file, {password: noPasswordExpected()}), 'ELIMITS', new RegExp(`^${file}: keystore asks for argon2id memory=4194304KiB`))
      await assertKeystoreError(inspectKeystore(file), 'ELIMITS')
    })

    it('flipping any single byte of a native file makes loading fail (every byte, with and without a password)', async () => {
      for (const password of [undefined, 'pw']) {
        // eslint-disable-next-line no-await-in-loop -- two files
        await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, overwrite: true, password: password ? Buffer.from(password) : undefined})
        // eslint-disable-next-line no-await-in-loop -- two files
        await updateKeystore(file, {password: passwordOf('pw')}, (keystore) => keystore.set('K', Buffer.from('v')))
        const good = readFileSync(file)
        const headerLength = readNativeHeader(good).bytes.length
        for (const mask of [0x01, 0x80]) {
          for (let offset = 0; offset < good.length; offset++) {
            const bad = Buffer.from(good)
            bad[offset] ^= mask
            writeFileSync(file, bad)
            let error: unknown
            try {
              // eslint-disable-next-line no-await-in-loop -- one byte at a time
              await openKeystore(file, {password: passwordOf('pw')})
            } catch (caught) {
              error = caught
            }

            const where = `byte ${offset} ^ 0x${mask.toString(16)} (${password ? 'with' : 'without'} password)`
            assert.ok(error instanceof KeystoreError, `${where}: loaded without error`)
            assert.ok(['EDECRYPT', 'EFORMAT', 'ELIMITS', 'EVERSION'].includes(error.code), `${where}: ${error.code}`)
            // Salt, nonce and sealed bytes pass every header check: only the one vague message may come out.
            const sealed = (offset >= 20 && offset < 20 + 32 + 24) || offset >= headerLength
            if (sealed || error.code === 'EDECRYPT') assert.equal(error.message, `${file}: ${DECRYPT_FAILED_MESSAGE}`, where)
          }
        }
      }
    })

    it('inspectKeystoreData tells the formats apart and refuses anything else', () => {
      assert.deepEqual(inspectKeystoreData(Buffer.from('v1AAAA')), {format: 'beats-v1', passwordProtected: false})
      assert.throws(() => inspectKeystoreData(Buffer.from('{"json":1}')), {code: 'EFORMAT', message: 'not a keystore file (unknown format)'})
    })
  })

  describe('onUnprotected (a password supplied, a keystore without one)', () => {
    it('is called with the path for a native keystore without a password and a Beats v1 one, once they open; never for a protected one', async () => {
      const seen: string[] = []
      const onUnprotected = (path: string) => seen.push(path)
      const table: Array<[KeystoreFormat, string | undefined, number]> = [
        ['native', undefined, 1],
        ['beats-v1', undefined, 1],
        ['native', 'pw', 0],
      ]
      for (const [format, password, calls] of table) {
        seen.length = 0
        // eslint-disable-next-line no-await-in-loop -- a table
        await createKeystore(file, {format, kdfParams: CHEAP_KDF, overwrite: true, password: password ? Buffer.from(password) : undefined})
        // eslint-disable-next-line no-await-in-loop -- a table
        await openKeystore(file, {onUnprotected, password: passwordOf('pw')})
        // eslint-disable-next-line no-await-in-loop -- a table
        await updateKeystore(file, {onUnprotected, password: passwordOf('pw')}, (keystore) => keystore.touch())
        assert.deepEqual(seen, Array.from({length: 2 * calls}, () => file), `${format} ${password ? 'with' : 'without'} a password`)
      }

      // A refusal is a throw, and nothing is written.
      await createKeystore(file, {format: 'native', overwrite: true})
      const before = readFileSync(file)
      const refuse = (path: string) => {
        throw new KeystoreError('EPASSWORD', `keystore ${path} refused`)
      }

      await assertKeystoreError(updateKeystore(file, {onUnprotected: refuse}, (keystore) => keystore.set('A', Buffer.from('a'))), 'EPASSWORD', `keystore ${file} refused`)
      assert.deepEqual(readFileSync(file), before)
      // A file that does not open gets its own error, not the callback.
      writeFileSync(file, Buffer.concat([before.subarray(0, 60), Buffer.from('damaged')]), {mode: 0o600})
      seen.length = 0
      await assert.rejects(openKeystore(file, {onUnprotected}))
      assert.deepEqual(seen, [])
    })
  })

  describe('entries', () => {
    beforeEach(async () => {
      await createKeystore(file, {format: 'native'})
      await updateKeystore(file, {}, (keystore) => {
        keystore.set('A', Buffer.from('a'))
        keystore.set('B', Buffer.from('b'))
      })
    })

    it('lists keys sorted, gets values, describes times', async () => {
      await updateKeystore(file, {}, (keystore) => keystore.set('0first', Buffer.from('0')))
      const keystore = await openKeystore(file)
      assert.deepEqual(keystore.keys(), ['0first', 'A', 'B'])
      assert.ok(keystore.has('A'))
      assert.equal(keystore.has('Z'), false)
      const {created, updated} = keystore.describe('A')
      assert.ok(created > 0 && updated >= created)
    })

    it('set: bad name EBADKEY with the rule, empty or over-64-MiB value EBADVALUE, existing key EKEYEXISTS; nothing written', async () => {
      const before = readFileSync(file)
      const {ino} = statSync(file)
      await assertKeystoreError(updateKeystore(file, {}, (ks) => ks.set('bad name', Buffer.from('x'))), 'EBADKEY', `invalid key name "bad name": ${KEY_RULE}`)
      await assertKeystoreError(updateKeystore(file, {}, (ks) => ks.set('C', Buffer.alloc(0))), 'EBADVALUE', 'empty value for key C; give a non-empty value')
      await assertKeystoreError(
        updateKeystore(file, {}, (ks) => ks.set('C', Buffer.alloc(MAX_VALUE_BYTES + 1))),
        'EBADVALUE',
        `the value for key C is ${MAX_VALUE_BYTES + 1} bytes, over the ${MAX_VALUE_BYTES}-byte limit for one value; store a smaller value`,
      )
      await assertKeystoreError(
        updateKeystore(file, {}, (ks) => ks.set('A', Buffer.from('new'))),
        'EKEYEXISTS',
        `key A already exists in ${file}; use --force to overwrite it`,
      )
      assert.deepEqual(readFileSync(file), before)
      assert.equal(statSync(file).ino, ino)
    })

    it('set with overwrite replaces the value and keeps the creation time', async () => {
      const {created} = (await openKeystore(file)).describe('A')
      const outcome = await updateKeystore(file, {}, (ks) => ks.set('A', Buffer.from('new'), {overwrite: true}))
      assert.equal(outcome, 'updated')
      const keystore = await openKeystore(file)
      assert.deepEqual(keystore.get('A'), Buffer.from('new'))
      assert.equal(keystore.describe('A').created, created)
    })

    it('a rewrite keeps untouched entries byte for byte and in file order, around removed, replaced and added ones', async () => {
      const names = ['K0', 'K1', 'K2', 'K3', 'K4', 'K5', 'K6', 'K7']
      await updateKeystore(file, {}, (ks) => {
        ks.remove(['A', 'B'])
        for (const [i, name] of names.entries()) ks.set(name, ALL_BYTES.subarray(i, 3 * i + 1))
      })
      const before = await openKeystore(file)
      const described = new Map(names.map((name) => [name, before.describe(name)]))
      await updateKeystore(file, {}, (ks) => {
        ks.remove(['K1', 'K5'])
        ks.set('K3', Buffer.from('replaced'), {overwrite: true})
        ks.set('NEW', Buffer.from('new'))
      })
      const entries = await decodeNative(readFileSync(file), noPasswordExpected())
      assert.deepEqual([...entries.keys()], ['K0', 'K2', 'K3', 'K4', 'K6', 'K7', 'NEW'])
      for (const name of ['K0', 'K2', 'K4', 'K6', 'K7']) {
        const i = names.indexOf(name)
        assert.deepEqual(entries.get(name), {...described.get(name), value: ALL_BYTES.subarray(i, 3 * i + 1)}, name)
      }

      assert.deepEqual(entries.get('K3')?.value, Buffer.from('replaced'))
      assert.equal(entries.get('K3')?.created, described.get('K3')?.created)
      assert.deepEqual(entries.get('NEW')?.value, Buffer.from('new'))
    })

    for (const format of ['native', 'beats-v1'] as const) {
      it(`${format}: holds 100,000 keys, refuses the 100,001st (ELIMITS) but still overwrites one; the file loads`, async () => {
        await createKeystore(file, {format, overwrite: true})
        await updateKeystore(file, {}, (ks) => {
          for (let i = 0; i < 100_000; i++) ks.set(`K${i}`, Buffer.from('v'))
        })
        const before = readFileSync(file)
        await assertKeystoreError(
          updateKeystore(file, {}, (ks) => ks.set('ONE_MORE', Buffer.from('v'))),
          'ELIMITS',
          `keystore ${file} already holds 100000 keys, the most it may hold; remove keys first`,
        )
        assert.deepEqual(readFileSync(file), before)
        await updateKeystore(file, {}, (ks) => ks.set('K7', Buffer.from('new'), {overwrite: true}))
        const keystore = await openKeystore(file)
        assert.equal(keystore.keys().length, 100_000)
        assert.deepEqual(keystore.get('K7'), Buffer.from('new'))
      })
    }

    it('get of a missing key: ENOKEY naming key, path and the fix', async () => {
      const keystore = await openKeystore(file)
      assert.throws(() => keystore.get('NOPE'), {code: 'ENOKEY', message: `key NOPE not found in ${file}; "apm-server keystore list" shows the keys`})
    })

    it('remove is all or nothing', async () => {
      const before = readFileSync(file)
      await assertKeystoreError(updateKeystore(file, {}, (ks) => ks.remove(['A', 'NOPE'])), 'ENOKEY', `key NOPE not found in ${file}; nothing was removed`)
      await assertKeystoreError(updateKeystore(file, {}, (ks) => ks.remove(['X', 'A', 'Y'])), 'ENOKEY', `keys X, Y not found in ${file}; nothing was removed`)
      assert.deepEqual(readFileSync(file), before)
      await updateKeystore(file, {}, (ks) => ks.remove(['A', 'B']))
      assert.deepEqual((await openKeystore(file)).keys(), [])
    })

    it('an update that changes nothing does not write; one that throws writes nothing', async () => {
      const {ino} = statSync(file)
      await updateKeystore(file, {}, (keystore) => keystore.keys())
      assert.equal(statSync(file).ino, ino)
      await assert.rejects(
        updateKeystore(file, {}, (keystore) => {
          keystore.set('C', Buffer.from('c'))
          throw new Error('changed my mind')
        }),
        /changed my mind/,
      )
      assert.equal(statSync(file).ino, ino)
      assert.equal((await openKeystore(file)).has('C'), false)
    })

    it('update without a keystore: ENOKEYSTORE, or creates one with createIfMissing', async () => {
      const other = path.join(tmp.dir, 'new', 'k.keystore')
      await assertKeystoreError(updateKeystore(other, {}, () => {}), 'ENOKEYSTORE', `no keystore at ${other}; create one with "apm-server keystore create"`)
      await updateKeystore(other, {createIfMissing: {format: 'native'}}, (keystore) => keystore.set('N', Buffer.from('n')))
      assert.deepEqual((await openKeystore(other)).keys(), ['N'])
      assert.equal(modeOf(other), 0o600)
    })
  })

  describe('mode 0600 after every update', () => {
    it('set, remove, password set/change/remove, conversion: 0600 each time, and no leftovers', async () => {
      await createKeystore(file, {format: 'beats-v1'})
      const dir = path.dirname(file)
      const steps: Array<[string, Parameters<typeof updateKeystore>[2], string | undefined]> = [
        ['add', (ks) => ks.set('A', Buffer.from('a')), undefined],
        ['remove', (ks) => ks.remove(['A']), undefined],
        ['upgrade', (ks) => ks.convertTo('native'), undefined],
        ['set password', (ks) => ks.setPassword(Buffer.from('one'), CHEAP_KDF), undefined],
        ['change password', (ks) => ks.setPassword(Buffer.from('two'), CHEAP_KDF), 'one'],
        ['remove password', (ks) => ks.setPassword(undefined), 'two'],
      ]
      for (const [label, change, password] of steps) {
        chmodSync(file, 0o600)
        // A file another tool made group-readable is tightened on the next write (strict perms off to read it).
        chmodSync(file, 0o640)
        // eslint-disable-next-line no-await-in-loop -- steps in order
        await updateKeystore(file, {password: password ? passwordOf(password) : noPasswordExpected(), strictPerms: false}, change)
        assert.equal(modeOf(file), 0o600, label)
        assert.deepEqual(namesIn(dir), ['apm-server.keystore'], label)
      }
    })
  })

  describe('password', () => {
    it('set, change and remove keep the entries; the old password stops working', async () => {
      await createKeystore(file, {format: 'native'})
      await updateKeystore(file, {}, (keystore) => keystore.set('ALL_BYTES', ALL_BYTES))
      await updateKeystore(file, {}, (keystore) => keystore.setPassword(Buffer.from('one'), CHEAP_KDF))
      assert.deepEqual(await inspectKeystore(file), {format: 'native', passwordProtected: true})
      await updateKeystore(file, {password: passwordOf('one')}, (keystore) => keystore.setPassword(Buffer.from('two'), CHEAP_KDF))
      await assertKeystoreError(openKeystore(file, {password: passwordOf('one')}), 'EDECRYPT', `${file}: ${DECRYPT_FAILED_MESSAGE}`)
      assert.deepEqual((await openKeystore(file, {password: passwordOf('two')})).get('ALL_BYTES'), ALL_BYTES)
      await updateKeystore(file, {password: passwordOf('two')}, (keystore) => keystore.setPassword(undefined))
      const keystore = await openKeystore(file, {password: noPasswordExpected()})
      assert.equal(keystore.passwordProtected, false)
      assert.deepEqual(keystore.get('ALL_BYTES'), ALL_BYTES)
    })

    it('keeps the password across an ordinary update', async () => {
      await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
      await updateKeystore(file, {password: passwordOf('pw')}, (keystore) => keystore.set('A', Buffer.from('a')))
      assert.deepEqual(await inspectKeystore(file), {format: 'native', passwordProtected: true})
      await assertKeystoreError(openKeystore(file, {password: passwordOf('')}), 'EDECRYPT')
      assert.deepEqual((await openKeystore(file, {password: passwordOf('pw')})).keys(), ['A'])
    })

    it('refuses an empty new password, KDF parameters beyond the caps, and any password on beats-v1', async () => {
      await createKeystore(file, {format: 'native'})
      await assertKeystoreError(
        updateKeystore(file, {}, (ks) => ks.setPassword(Buffer.alloc(0), CHEAP_KDF)),
        'EPASSWORD',
        'the new password is empty; give a non-empty password, or use --remove to remove it',
      )
      await assertKeystoreError(updateKeystore(file, {}, (ks) => ks.setPassword(Buffer.from('x'), {iterations: 1, memoryKiB: 4 * 1024 * 1024, parallelism: 1})), 'ELIMITS')
      await createKeystore(file, {format: 'beats-v1', overwrite: true})
      await assertKeystoreError(
        updateKeystore(file, {}, (ks) => ks.setPassword(Buffer.from('x'), CHEAP_KDF)),
        'EUNSUPPORTED',
        `keystore ${file} is in Beats v1 format, which cannot hold a password; run "apm-server keystore upgrade" first`,
      )
      assert.equal((await inspectKeystore(file))?.format, 'beats-v1')
    })
  })

  describe('format conversion', () => {
    it('beats-v1 -> native keeps every entry; native -> beats-v1 works only without a password', async () => {
      await createKeystore(file, {format: 'beats-v1'})
      await updateKeystore(file, {}, (keystore) => {
        keystore.set('ALL_BYTES', ALL_BYTES)
        keystore.set('B', Buffer.from('b'))
      })
      await updateKeystore(file, {}, (keystore) => keystore.convertTo('native'))
      let keystore = await openKeystore(file)
      assert.equal(keystore.format, 'native')
      assert.deepEqual(keystore.keys(), ['ALL_BYTES', 'B'])
      assert.deepEqual(keystore.get('ALL_BYTES'), ALL_BYTES)
      await updateKeystore(file, {}, (ks) => ks.convertTo('beats-v1'))
      keystore = await openKeystore(file)
      assert.equal(keystore.format, 'beats-v1')
      assert.deepEqual(keystore.get('ALL_BYTES'), ALL_BYTES)
      await updateKeystore(file, {}, (ks) => ks.convertTo('native'))
      await updateKeystore(file, {}, (ks) => ks.setPassword(Buffer.from('pw'), CHEAP_KDF))
      await assertKeystoreError(
        updateKeystore(file, {password: passwordOf('pw')}, (ks) => ks.convertTo('beats-v1')),
        'EUNSUPPORTED',
        'a password-protected keystore cannot be written in Beats v1 format; remove the password first',
      )
    })

    it('updates of a beats-v1 keystore stay beats-v1', async () => {
      await createKeystore(file, {format: 'beats-v1'})
      await updateKeystore(file, {}, (keystore) => keystore.set('A', Buffer.from('a')))
      await updateKeystore(file, {}, (keystore) => keystore.remove(['A']))
      assert.equal(readFileSync(file).subarray(0, 2).toString(), 'v1')
    })
  })
  describe("this host's key for sealed bundles (native metadata)", () => {
    const publicKeyOf = async (password?: string) => Buffer.from((await openKeystore(file, {password: passwordOf(password ?? '')})).hostKeyPair()!.publicKey)

    it('is made once, kept through add, remove, passwd (set, change, remove) and upgrade, and never listed', async () => {
      await createKeystore(file, {format: 'native'})
      assert.equal((await openKeystore(file)).hostKeyPair(), undefined)
      assert.equal(await updateKeystore(file, {}, (keystore) => keystore.ensureHostKey()), true)
      const original = await publicKeyOf()
      assert.equal(await updateKeystore(file, {}, (keystore) => keystore.ensureHostKey()), false)
      const steps: Array<[string, (keystore: Keystore) => void, string | undefined]> = [
        ['add', (ks) => ks.set('A', Buffer.from('a')), undefined],
        ['remove', (ks) => ks.remove(['A']), undefined],
        ['passwd set', (ks) => ks.setPassword(Buffer.from('one'), CHEAP_KDF), 'one'],
        ['passwd change', (ks) => ks.setPassword(Buffer.from('two'), CHEAP_KDF), 'two'],
        ['upgrade', (ks) => ks.convertTo('native'), 'two'],
        ['passwd remove', (ks) => ks.setPassword(undefined), undefined],
      ]
      let current: string | undefined
      for (const [label, step, next] of steps) {
        // eslint-disable-next-line no-await-in-loop -- steps build on each other
        await updateKeystore(file, {password: passwordOf(current ?? '')}, step)
        current = next
        // eslint-disable-next-line no-await-in-loop -- checked after each step
        assert.deepEqual(await publicKeyOf(current), original, label)
        // eslint-disable-next-line no-await-in-loop -- checked after each step
        assert.deepEqual((await openKeystore(file, {password: passwordOf(current ?? '')})).keys(), label === 'add' ? ['A'] : [], label)
      }
    })

    it('is useless without the password: the file does not open, and holds the key nowhere in the clear', async () => {
      await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from('pw')})
      await updateKeystore(file, {password: passwordOf('pw')}, (keystore) => keystore.ensureHostKey())
      const {secretKey} = (await openKeystore(file, {password: passwordOf('pw')})).hostKeyPair()!
      const data = readFileSync(file)
      for (const form of [Buffer.from(secretKey), Buffer.from(Buffer.from(secretKey).toString('base64')), Buffer.from(Buffer.from(secretKey).toString('hex'))]) {
        assert.equal(data.includes(form), false)
      }

      await assertKeystoreError(openKeystore(file, {password: passwordOf('not-pw')}), 'EDECRYPT', `${file}: ${DECRYPT_FAILED_MESSAGE}`)
      await assertKeystoreError(openKeystore(file), 'ENOPASSWORD')
    })

    it('cannot be kept in Beats v1: refused there, and a native keystore holding one is not converted to Beats v1', async () => {
      await createKeystore(file, {format: 'beats-v1'})
      await assertKeystoreError(updateKeystore(file, {}, (keystore) => keystore.ensureHostKey()), 'EUNSUPPORTED', /is in Beats v1 format, which cannot hold this host's key/)
      assert.equal(readFileSync(file).subarray(0, 2).toString(), 'v1')
      await updateKeystore(file, {}, (keystore) => {
        keystore.convertTo('native')
        keystore.ensureHostKey()
      })
      const before = readFileSync(file)
      await assertKeystoreError(
        updateKeystore(file, {}, (keystore) => keystore.convertTo('beats-v1')),
        'EUNSUPPORTED',
        `keystore ${file} holds this host's key for sealed bundles, which Beats v1 cannot hold; keep it native`,
      )
      assert.deepEqual(readFileSync(file), before)
    })

    it('a version 1 file stays version 1 through writes, becomes version 2 with a host key or on upgrade', async () => {
      const writeV1 = async () => {
        const entries = new Map([['A', {created: 1, updated: 2, value: Buffer.from('a')}]])
        writeFileSync(file, await encodeNative(entries, {type: 'none'}, undefined, undefined, undefined, {meta: {}, version: 1}), {mode: 0o600})
      }

      await createKeystore(file, {format: 'native'})
      assert.equal(readFileSync(file)[8], 2, 'a new keystore is version 2')
      await writeV1()
      await updateKeystore(file, {}, (keystore) => keystore.set('B', Buffer.from('b')))
      assert.equal(readFileSync(file)[8], 1, 'add keeps version 1')
      assert.deepEqual((await openKeystore(file)).keys(), ['A', 'B'])
      await updateKeystore(file, {}, (keystore) => keystore.ensureHostKey())
      assert.equal(readFileSync(file)[8], 2, 'a host key needs version 2')
      await writeV1()
      await updateKeystore(file, {}, (keystore) => keystore.convertTo('native'))
      assert.equal(readFileSync(file)[8], 2, 'upgrade converts')
      assert.deepEqual((await openKeystore(file)).get('A'), Buffer.from('a'))
    })
  })
})
