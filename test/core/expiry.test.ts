import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {clockOf, describeDistance, expiryState, parseExpires} from '../../src/core/expiry.js'
import {encodeNative, readNativeHeader} from '../../src/core/format/native.js'
import {createKeystore, openKeystore, updateKeystore} from '../../src/core/keystore.js'
import {writeKeystoreFile} from '../../src/core/keystore-file.js'
import {makeTempDir} from '../helpers/cli.js'
import {assertKeystoreError} from '../helpers/keystore.js'

const NOW = Date.parse('2026-11-27T10:00:00Z')
const DAY = 86_400_000

describe('core/expiry', () => {
  describe('--expires', () => {
    const good: Array<[string, number]> = [
      ['90d', NOW + 90 * DAY],
      ['1d', NOW + DAY],
      ['12w', NOW + 84 * DAY],
      ['36h', NOW + 36 * 3_600_000],
      ['2027-03-01', Date.parse('2027-03-01T00:00:00Z')],
      ['2027-03-01T12:30:00Z', Date.parse('2027-03-01T12:30:00Z')],
      ['2027-03-01T12:30:00.5+02:00', Date.parse('2027-03-01T10:30:00.5Z')],
    ]
    for (const [text, at] of good) it(`reads ${text}`, () => assert.equal(parseExpires(text, NOW), at))

    const bad: Array<[string, RegExp]> = [
      ['90', /is neither a duration/],
      ['0d', /is neither a duration/],
      ['-5d', /is neither a duration/],
      ['90 d', /is neither a duration/],
      ['1y', /is neither a duration/],
      ['2027-02-30', /is neither a duration/],
      ['2027-3-1', /is neither a duration/],
      ['2027-03-01T12:30', /is neither a duration/],
      ['tomorrow', /is neither a duration/],
      ['2026-11-27', /is not in the future \(now is 2026-11-27T10:00:00.000Z\); give a later date/],
      ['2020-01-01T00:00:00Z', /is not in the future/],
      ['999999d', /is more than 100 years ahead/],
      ['2999-01-01', /is more than 100 years ahead/],
    ]
    for (const [text, message] of bad) {
      it(`refuses ${JSON.stringify(text)} as a usage error`, () => {
        assert.throws(() => parseExpires(text, NOW), (error: Error & {code?: string}) => error.code === 'EUSAGE' && message.test(error.message))
      })
    }
  })

  it('judges an expiry: passed, within 14 days, or later; and says how far', () => {
    assert.equal(expiryState(NOW - 1, NOW), 'expired')
    assert.equal(expiryState(NOW, NOW), 'expired')
    assert.equal(expiryState(NOW + 14 * DAY, NOW), 'soon')
    assert.equal(expiryState(NOW + 14 * DAY + 1, NOW), 'later')
    assert.equal(describeDistance(NOW + 3 * DAY + 5, NOW), 'in 3 days')
    assert.equal(describeDistance(NOW + DAY, NOW), 'in 1 day')
    assert.equal(describeDistance(NOW + 5 * 3_600_000, NOW), 'in 5 hours')
    assert.equal(describeDistance(NOW - 2 * DAY, NOW), '2 days ago')
    assert.equal(describeDistance(NOW, NOW), 'less than an hour ago')
    assert.equal(describeDistance(NOW + 59 * 60_000, NOW), 'in less than an hour')
  })

  it('the clock: now, or APM_SERVER_TEST_NOW with a warning saying so; a malformed one is refused', () => {
    const before = Date.now()
    const real = clockOf({})
    assert.ok(real.now >= before && real.warning === undefined)
    assert.deepEqual(clockOf({APM_SERVER_TEST_NOW: '2026-11-27T10:00:00Z'}), {
      now: NOW,
      warning: 'APM_SERVER_TEST_NOW is set: expiry is judged as of 2026-11-27T10:00:00.000Z; it is for tests only, unset it',
    })
    assert.throws(() => clockOf({APM_SERVER_TEST_NOW: 'yesterday'}), /APM_SERVER_TEST_NOW is not an ISO 8601 time/)
  })

  describe('in a keystore', () => {
    let tmp: ReturnType<typeof makeTempDir>
    let file: string
    beforeEach(() => {
      tmp = makeTempDir()
      file = path.join(tmp.dir, 'data', 'apm-server.keystore')
    })
    afterEach(() => tmp.cleanup())

    it('keeps an expiry per entry; a new value, or removing the key, drops it', async () => {
      await createKeystore(file, {format: 'native'})
      await updateKeystore(file, {}, (keystore) => {
        keystore.set('A', Buffer.from('a'))
        keystore.set('B', Buffer.from('b'))
        keystore.setExpiry('A', NOW + DAY)
        keystore.setExpiry('B', NOW + 2 * DAY)
      })
      let keystore = await openKeystore(file)
      assert.deepEqual([keystore.expiry('A'), keystore.expiry('B')], [NOW + DAY, NOW + 2 * DAY])
      await updateKeystore(file, {}, (ks) => {
        ks.set('A', Buffer.from('new'), {overwrite: true})
        ks.remove(['B'])
        ks.set('B', Buffer.from('again'))
      })
      keystore = await openKeystore(file)
      assert.deepEqual([keystore.expiry('A'), keystore.expiry('B')], [undefined, undefined])
      await updateKeystore(file, {}, (ks) => ks.setExpiry('A', NOW))
      await updateKeystore(file, {}, (ks) => ks.setExpiry('A', undefined))
      assert.equal((await openKeystore(file)).expiry('A'), undefined)
    })

    it('a version 1 file given an expiry is written as version 2', async () => {
      await writeKeystoreFile(file, await encodeNative(new Map([['A', {created: 1, updated: 1, value: Buffer.from('a')}]]), {type: 'none'}, undefined, undefined, undefined, {meta: {}, version: 1}))
      await updateKeystore(file, {}, (keystore) => keystore.touch())
      assert.equal(readNativeHeader(readFileSync(file)).version, 1)
      await updateKeystore(file, {}, (keystore) => keystore.setExpiry('A', NOW))
      assert.equal(readNativeHeader(readFileSync(file)).version, 2)
    })

    it('Beats v1 cannot hold an expiry: a clear error naming upgrade', async () => {
      await createKeystore(file, {format: 'beats-v1'})
      await updateKeystore(file, {}, (keystore) => keystore.set('A', Buffer.from('a')))
      await assertKeystoreError(
        updateKeystore(file, {}, (keystore) => keystore.setExpiry('A', NOW)),
        'EUNSUPPORTED',
        `keystore ${file} is in Beats v1 format, which cannot hold an expiry; run "apm-server keystore upgrade" first (the Go apm-server can then no longer read it), or leave out --expires`,
      )
    })
  })
})
