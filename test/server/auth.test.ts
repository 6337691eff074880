import assert from 'node:assert/strict'
import http from 'node:http'

import {AUTH_FAILED, AUTH_MISSING, Authenticator, parseAuthorizationHeader, secretsEqual, tokenDigest, unknownSchemeMessage} from '../../src/server/auth.js'
import type {ServerConfig} from '../../src/server/config/server-config.js'
import {createLogger} from '../../src/server/logger.js'
import {RunningServer, startServer} from '../../src/server/server.js'
import {makeTempDir} from '../helpers/cli.js'
import {testServerConfig} from '../helpers/server-config.js'

const TOKEN = 'secret-token-123'
const METADATA = JSON.stringify({metadata: {service: {agent: {name: 'nodejs', version: '4.18.0'}, name: 'auth-test'}}})
const BODY = `${METADATA}\n${JSON.stringify({transaction: {id: 'a1', name: 'GET /'}})}\n`

function config(dir: string, overrides: Partial<ServerConfig> = {}): ServerConfig {
  return testServerConfig(dir, {secretToken: TOKEN, ...overrides})
}

function send(url: string, options: {method?: string; path: string; headers?: Record<string, string>; body?: string}) {
  return new Promise<{status: number; body: string; headers: http.IncomingHttpHeaders}>((resolve, reject) => {
    const req = http.request(`${url}${options.path}`, {agent: false, headers: options.headers, method: options.method ?? 'POST'}, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({body: Buffer.concat(chunks).toString('utf8'), headers: res.headers, status: res.statusCode!}))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

describe('server/auth', () => {
  describe('parseAuthorizationHeader', () => {
    const table: [string | undefined, string, string][] = [
      [undefined, '', ''],
      ['', '', ''],
      ['Bearer', '', ''],
      [' Bearer x', '', ''],
      ['Bearer ', 'Bearer', ''],
      ['Bearer abc', 'Bearer', 'abc'],
      ['Bearer  abc def', 'Bearer', ' abc def'],
      ['ApiKey a2V5', 'ApiKey', 'a2V5'],
      ['basic x', 'basic', 'x'],
    ]
    for (const [header, scheme, credentials] of table) {
      it(`splits ${JSON.stringify(header)} into ${JSON.stringify(scheme)} and ${JSON.stringify(credentials)}`, () => {
        assert.deepEqual(parseAuthorizationHeader(header), {credentials, scheme})
      })
    }
  })

  describe('constant-time comparison', () => {
    it('compares fixed-length digests whatever the lengths of the inputs', () => {
      for (const token of ['', 'a', TOKEN, 'x'.repeat(100_000)]) assert.equal(tokenDigest(token).length, 32)
      assert.notDeepEqual(tokenDigest('a'), tokenDigest('b'))
      assert.deepEqual(tokenDigest(TOKEN), tokenDigest(Buffer.from(TOKEN)))
    })

    const table: [string, string, boolean][] = [
      [TOKEN, TOKEN, true],
      [TOKEN, `${TOKEN}x`, false],
      [TOKEN, TOKEN.slice(0, -1), false],
      [TOKEN, '', false],
      ['', '', true],
      [TOKEN, TOKEN.toUpperCase(), false],
    ]
    for (const [a, b, equal] of table) {
      it(`secretsEqual(${JSON.stringify(a)}, ${JSON.stringify(b)}) is ${equal} and never throws on a length mismatch`, () => {
        assert.equal(secretsEqual(a, b), equal)
      })
    }
  })

  describe('Authenticator', () => {
    let clock = 0
    const now = () => clock
    beforeEach(() => {
      clock = 1_000_000
    })

    it('lets everyone in when no token is configured', () => {
      const auth = new Authenticator({anonymous: false, secretTokenGracePeriodMs: 0}, now)
      assert.equal(auth.enabled, false)
      for (const header of [undefined, 'Bearer x', 'ApiKey y', 'Basic z']) assert.deepEqual(auth.authenticate(header), {method: 'none', ok: true})
    })

    it('lets requests without credentials in as anonymous only when anonymous access is on', () => {
      const auth = new Authenticator({anonymous: true, secretToken: TOKEN, secretTokenGracePeriodMs: 0}, now)
      assert.deepEqual(auth.authenticate(undefined), {method: 'anonymous', ok: true})
      assert.deepEqual(auth.authenticate('Bearer wrong'), {message: AUTH_FAILED, ok: false})
      auth.update({anonymous: false, secretToken: TOKEN, secretTokenGracePeriodMs: 0})
      assert.deepEqual(auth.authenticate(undefined), {message: AUTH_MISSING, ok: false})
    })

    it('accepts the previous token during the grace period after a rotation, then refuses it', () => {
      const auth = new Authenticator({anonymous: false, secretToken: 'old-token', secretTokenGracePeriodMs: 60_000}, now)
      auth.update({anonymous: false, secretToken: 'new-token', secretTokenGracePeriodMs: 60_000})
      assert.equal(auth.inGracePeriod, true)
      assert.equal(auth.authenticate('Bearer new-token').ok, true)
      assert.equal(auth.authenticate('Bearer old-token').ok, true)
      clock += 59_999
      assert.equal(auth.authenticate('Bearer old-token').ok, true)
      clock += 1
      assert.deepEqual(auth.authenticate('Bearer old-token'), {message: AUTH_FAILED, ok: false})
      assert.equal(auth.inGracePeriod, false)
      assert.equal(auth.authenticate('Bearer new-token').ok, true)
    })

    it('keeps no previous token without a grace period, or when the token did not change', () => {
      const auth = new Authenticator({anonymous: false, secretToken: 'old-token', secretTokenGracePeriodMs: 0}, now)
      auth.update({anonymous: false, secretToken: 'new-token', secretTokenGracePeriodMs: 0})
      assert.equal(auth.authenticate('Bearer old-token').ok, false)

      auth.update({anonymous: false, secretToken: 'newer-token', secretTokenGracePeriodMs: 10_000})
      auth.update({anonymous: false, secretToken: 'newer-token', secretTokenGracePeriodMs: 10_000}) // a reload that keeps the token
      assert.equal(auth.authenticate('Bearer new-token').ok, true, 'the running grace period is left alone')
      assert.equal(auth.authenticate('Bearer old-token').ok, false)
    })

    it('a reload that keeps the token and shortens the grace period shortens the running one (0 ends it at once); a longer one never extends it', () => {
      const auth = new Authenticator({anonymous: false, secretToken: 'old-token', secretTokenGracePeriodMs: 0}, now)
      auth.update({anonymous: false, secretToken: 'new-token', secretTokenGracePeriodMs: 3_600_000})
      clock += 10_000
      auth.update({anonymous: false, secretToken: 'new-token', secretTokenGracePeriodMs: 7_200_000})
      auth.update({anonymous: false, secretToken: 'new-token', secretTokenGracePeriodMs: 60_000})
      assert.equal(auth.authenticate('Bearer old-token').ok, true, '60 s from the rotation: 50 s left')
      clock += 50_000
      assert.equal(auth.authenticate('Bearer old-token').ok, false, 'ended 60 s after the rotation, not an hour')
      auth.update({anonymous: false, secretToken: 'new-token', secretTokenGracePeriodMs: 3_600_000})
      assert.equal(auth.authenticate('Bearer old-token').ok, false, 'a longer grace period does not bring it back')

      auth.update({anonymous: false, secretToken: 'newer-token', secretTokenGracePeriodMs: 3_600_000})
      assert.equal(auth.authenticate('Bearer new-token').ok, true)
      auth.update({anonymous: false, secretToken: 'newer-token', secretTokenGracePeriodMs: 0})
      assert.equal(auth.inGracePeriod, false)
      assert.deepEqual(auth.authenticate('Bearer new-token'), {message: AUTH_FAILED, ok: false}, 'a leaked token is revoked by a reload, not a restart')
      assert.equal(auth.authenticate('Bearer newer-token').ok, true)
    })

    it('a second rotation replaces the previous token: only the one just replaced stays valid', () => {
      const auth = new Authenticator({anonymous: false, secretToken: 'one', secretTokenGracePeriodMs: 10_000}, now)
      auth.update({anonymous: false, secretToken: 'two', secretTokenGracePeriodMs: 10_000})
      auth.update({anonymous: false, secretToken: 'three', secretTokenGracePeriodMs: 10_000})
      assert.equal(auth.authenticate('Bearer one').ok, false)
      assert.equal(auth.authenticate('Bearer two').ok, true)
      assert.equal(auth.authenticate('Bearer three').ok, true)
    })

    it('never keeps a token across turning auth off and on again', () => {
      const auth = new Authenticator({anonymous: false, secretToken: 'one', secretTokenGracePeriodMs: 10_000}, now)
      auth.update({anonymous: false, secretTokenGracePeriodMs: 10_000})
      auth.update({anonymous: false, secretToken: 'two', secretTokenGracePeriodMs: 10_000})
      assert.equal(auth.authenticate('Bearer one').ok, false)
      assert.equal(auth.authenticate(undefined).ok, false)
    })
  })

  describe('over HTTP: every header form gets the Go server status and body', () => {
    let tmp: ReturnType<typeof makeTempDir>
    let server: RunningServer
    const logLines: string[] = []
    before(async () => {
      tmp = makeTempDir('apm-auth-test-')
      server = await startServer(config(tmp.dir), createLogger({destination: {write: (line: string) => logLines.push(line)}}))
    })
    after(async () => {
      await server.close()
      tmp.cleanup()
    })

    const table: [string, Record<string, string>, number, string | undefined][] = [
      ['no header', {}, 401, AUTH_MISSING],
      ['an empty header', {Authorization: ''}, 401, AUTH_MISSING],
      ['a scheme without a space', {Authorization: 'Bearer'}, 401, AUTH_MISSING],
      ['a scheme glued to the token', {Authorization: `Bearer${TOKEN}`}, 401, AUTH_MISSING],
      ['an empty Bearer token (header values are trimmed)', {Authorization: 'Bearer '}, 401, AUTH_MISSING],
      ['a wrong token', {Authorization: 'Bearer wrong'}, 401, AUTH_FAILED],
      ['the token plus a character', {Authorization: `Bearer ${TOKEN}x`}, 401, AUTH_FAILED],
      ['a prefix of the token', {Authorization: `Bearer ${TOKEN.slice(0, -1)}`}, 401, AUTH_FAILED],
      ['the token after two spaces', {Authorization: `Bearer  ${TOKEN}`}, 401, AUTH_FAILED],
      ['an API key (not supported)', {Authorization: 'ApiKey aWQ6a2V5'}, 401, AUTH_FAILED],
      ['the token as an API key', {Authorization: `ApiKey ${TOKEN}`}, 401, AUTH_FAILED],
      ['a lower-case scheme', {Authorization: `bearer ${TOKEN}`}, 401, unknownSchemeMessage('bearer')],
      ['Basic', {Authorization: 'Basic dXNlcjpwYXNz'}, 401, unknownSchemeMessage('Basic')],
      ['an invented scheme', {Authorization: `Token ${TOKEN}`}, 401, unknownSchemeMessage('Token')],
      ['the right token', {Authorization: `Bearer ${TOKEN}`}, 202, undefined],
    ]

    for (const [name, headers, status, error] of table) {
      it(`${name} -> ${status}`, async () => {
        const plain = await send(server.url, {body: BODY, headers: {...headers, 'Content-Type': 'application/x-ndjson'}, path: '/intake/v2/events'})
        assert.equal(plain.status, status)
        assert.equal(plain.headers['x-content-type-options'], 'nosniff')
        if (error === undefined) {
          assert.equal(plain.body, '')
          return
        }

        assert.equal(plain.body, `{"error":${JSON.stringify(error)}}\n`)
        assert.equal(plain.headers['content-type'], 'text/plain; charset=utf-8')
        const json = await send(server.url, {body: BODY, headers: {...headers, Accept: 'application/json'}, path: '/intake/v2/events'})
        assert.equal(json.status, status)
        assert.equal(json.body, `{\n  "error": ${JSON.stringify(error)}\n}\n`)
        assert.equal(json.headers['content-type'], 'application/json')
      })
    }

    it('GET / answers 200 always, with the server information only to an authenticated client', async () => {
      const anonymous = await send(server.url, {method: 'GET', path: '/'})
      assert.deepEqual([anonymous.status, anonymous.body], [200, ''])
      const wrong = await send(server.url, {headers: {Authorization: 'Bearer nope'}, method: 'GET', path: '/'})
      assert.deepEqual([wrong.status, wrong.body], [200, ''])
      const authenticated = await send(server.url, {headers: {Accept: 'application/json', Authorization: `Bearer ${TOKEN}`}, method: 'GET', path: '/'})
      assert.equal(authenticated.status, 200)
      const info = JSON.parse(authenticated.body) as Record<string, unknown>
      assert.deepEqual(Object.keys(info), ['build_date', 'build_sha', 'publish_ready', 'version'])
      assert.equal(info.version, '8.15.0')
      assert.equal(info.publish_ready, true)
      assert.match(info.build_date as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    })

    it('logs each refusal without the token or any presented credentials', () => {
      const text = logLines.join('')
      assert.match(text, /"http.response.status_code":401/)
      for (const secret of [TOKEN, TOKEN.slice(0, -1), 'wrong', 'aWQ6a2V5', 'dXNlcjpwYXNz']) assert.equal(text.includes(secret), false, secret)
    })
  })
})
