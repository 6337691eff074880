/**
 * The monitoring endpoint's settings (http.*): Beats' defaults, whether http.host was set (only then may
 * it be a non-loopback address), and bad values refused naming the setting and the fix.
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {loadServerConfig} from '../../src/server/config/load.js'
import {ConfigError, LoadOptions} from '../../src/server/config/server-config.js'
import {makeTempDir} from '../helpers/cli.js'
import {assertKeystoreError, noPasswordExpected} from '../helpers/keystore.js'

describe('server/config: http.* (the monitoring endpoint)', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir('apm-config-monitoring-')
  })
  afterEach(() => tmp.cleanup())

  const load = (yaml: string, options: Partial<LoadOptions> = {}) => {
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), yaml)
    return loadServerConfig({cwd: tmp.dir, env: {}, flags: {}, overrides: [], password: noPasswordExpected(), ...options})
  }

  it("is off without http.*; Beats' defaults otherwise (localhost, 5066), remembering whether http.host was set", async () => {
    assert.equal((await load('apm-server.host: "127.0.0.1:0"\n')).config.monitoring, undefined)
    assert.deepEqual((await load('http.enabled: true\n')).config.monitoring, {enabled: true, host: 'localhost', hostSet: false, port: 5066})
    assert.deepEqual((await load('http: {enabled: true, host: 0.0.0.0, port: 5067}\n')).config.monitoring, {enabled: true, host: '0.0.0.0', hostSet: true, port: 5067})
    assert.deepEqual((await load('http.enabled: true\n', {overrides: ['http.host=localhost']})).config.monitoring, {enabled: true, host: 'localhost', hostSet: true, port: 5066})
    assert.deepEqual((await load('http.port: 0\n')).config.monitoring, {enabled: false, host: 'localhost', hostSet: false, port: 0})
  })

  for (const [yaml, problem] of [
    ['http.host: "localhost:5066"', 'http.host: must be a host name or an IP address without a port; set the port with http.port'],
    ['http.host: "unix:///var/run/apm.sock"', 'http.host: unix sockets and named pipes are not supported; give a host name or an IP address, e.g. localhost'],
    ['http.host: "http://localhost"', 'http.host: must be a host name or an IP address, e.g. localhost or 127.0.0.1'],
    ['http.host: ""', 'http.host: must be a host name or an IP address, e.g. localhost or 127.0.0.1'],
    ['http.port: 70000', 'http.port'],
    ['http.enabled: maybe', 'http.enabled'],
  ] as const) {
    it(`refuses ${yaml}`, async () => {
      const error = await assertKeystoreError(load(`${yaml}\n`), 'ECONFIG')
      assert.ok(error instanceof ConfigError)
      assert.ok(error.problems.some((line) => line.includes(`:1: ${problem}`)), error.problems.join('\n'))
    })
  }
})
