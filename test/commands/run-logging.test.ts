import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {BIN, cleanEnv, makeTempDir} from '../helpers/cli.js'

/** Starts `apm-server run`, waits until stderr matches `until`, stops it with SIGTERM, returns stderr and the exit code. */
function runUntil(cwd: string, args: string[], until: RegExp): Promise<{code: null | number; stderr: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'run', '-E', 'apm-server.host=127.0.0.1:0', ...args], {cwd, env: cleanEnv({APM_TOKEN: 'logging-test-token'}), stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    let stopping = false
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8')
      if (!stopping && until.test(stderr)) {
        stopping = true
        // A moment for any line that would follow, then a clean stop.
        setTimeout(() => child.kill('SIGTERM'), 300)
      }
    })
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stderr})
    })
  })
}

describe('apm-server run: log format and level', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir()
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), 'apm-server.auth.secret_token: "${APM_TOKEN}"\n')
  })
  afterEach(() => tmp.cleanup())

  it('--log-format text: one readable line per record, never the token', async () => {
    const {code, stderr} = await runUntil(tmp.dir, ['--log-format', 'text'], /INFO: listening/)
    assert.equal(code, 0, stderr)
    assert.match(stderr, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: Secret token is set, but SSL is not enabled\.$/m)
    assert.match(stderr, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: listening \{"url":"http:\/\/127\.0\.0\.1:\d+"\}$/m)
    assert.doesNotMatch(stderr, /logging-test-token/)
  })

  it('JSON lines when stderr is not a terminal; --log-level warning drops info records', async () => {
    const {code, stderr} = await runUntil(tmp.dir, ['--log-level', 'warning'], /Secret token is set, but SSL is not enabled/)
    assert.equal(code, 0, stderr)
    const records = stderr.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    assert.ok(records.length >= 1)
    for (const record of records) assert.equal(record['log.level'], 'warn', JSON.stringify(record))
  })
})
