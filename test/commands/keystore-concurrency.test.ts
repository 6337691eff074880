import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import path from 'node:path'
import {pathToFileURL} from 'node:url'

import {readAuditTrail} from '../../src/core/audit-verify.js'
import {createKeystore, openKeystore} from '../../src/core/keystore.js'
import {cleanEnv, makeTempDir, ROOT, runCli} from '../helpers/cli.js'
import {assertRun, CHEAP_KDF, defaultKeystore, modeOf, namesIn, passwordOf} from '../helpers/keystore.js'

const PROCESSES = 8
const KEYS_EACH = 10

function keyName(process: number, key: number): string {
  return `P${process}_K${key}`
}

function valueOf(process: number, key: number): string {
  return `value-${process}-${key}-${'x'.repeat(key * 7)}`
}

/**
 * A process that adds its keys one update at a time through the core (run by tsx), so that 8 of them contend
 * for the lock 80 times, not 8.
 */
function runCoreWorker(file: string, processIndex: number, password: string | undefined): Promise<{code: null | number; stderr: string}> {
  const core = pathToFileURL(path.join(ROOT, 'src', 'core', 'keystore.ts')).href
  const script = `
    const {updateKeystore} = await import(${JSON.stringify(core)})
    const [file, index, password] = [process.argv[1], Number(process.argv[2]), process.env.WORKER_PASSWORD]
    const options = password ? {password: async () => Buffer.from(password)} : {}
    for (let key = 0; key < ${KEYS_EACH}; key++) {
      const name = 'P' + index + '_K' + key
      const value = Buffer.from('value-' + index + '-' + key + '-' + 'x'.repeat(key * 7))
      await updateKeystore(file, options, (keystore) => keystore.set(name, value))
    }
  `
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, file, String(processIndex)], {
      env: cleanEnv({WORKER_PASSWORD: password}),
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    const err: Buffer[] = []
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stderr: Buffer.concat(err).toString('utf8')})
    })
  })
}

/** Every key present, the keystore 0600, nothing left over; through the CLI, one audit line per process, the trail intact. */
async function assertAllKeys(file: string, password: string | undefined, audited: boolean): Promise<void> {
  const keystore = await openKeystore(file, {password: passwordOf(password ?? '')})
  const expected: string[] = []
  for (let p = 0; p < PROCESSES; p++) for (let k = 0; k < KEYS_EACH; k++) expected.push(keyName(p, k))
  assert.deepEqual(keystore.keys(), expected.sort())
  for (let p = 0; p < PROCESSES; p++) {
    for (let k = 0; k < KEYS_EACH; k++) assert.equal(keystore.get(keyName(p, k)).toString(), valueOf(p, k))
  }

  assert.equal(keystore.passwordProtected, password !== undefined)
  assert.equal(modeOf(file), 0o600)
  // no lock directory, no temp file
  assert.deepEqual(namesIn(path.dirname(file)), audited ? ['apm-server.keystore', 'apm-server.keystore.audit'] : ['apm-server.keystore'])
  if (!audited) return
  const trail = await readAuditTrail(file, {password: passwordOf(password ?? '')})
  assert.equal(trail.problem, undefined)
  assert.deepEqual(
    trail.entries.map((entry) => [entry.confirmed, entry.record?.keys.length]),
    Array.from({length: PROCESSES}, () => [true, KEYS_EACH]),
  )
}

describe('apm-server keystore: concurrent adds from several processes', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => tmp.cleanup())

  for (const password of [undefined, 'concurrent-pw']) {
    const label = password ? 'with a password' : 'without a password'

    it(`8 \`keystore add\` processes x 10 keys at once, ${label}: all 80 keys, nothing left over`, async () => {
      const file = defaultKeystore(tmp.dir)
      await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: password ? Buffer.from(password) : undefined})
      const runs = await Promise.all(
        Array.from({length: PROCESSES}, (_, p) => {
          const names = Array.from({length: KEYS_EACH}, (_unused, k) => keyName(p, k))
          const input = names.map((_name, k) => `${valueOf(p, k)}\n`).join('')
          return runCli(['keystore', 'add', ...names, '--stdin'], {cwd: tmp.dir, env: {APM_SERVER_KEYSTORE_PASSWORD: password}, input})
        }),
      )
      for (const run of runs) assertRun(run, {code: 0, stderr: ''})
      await assertAllKeys(file, password, true)
    })
  }

  it('8 processes x 10 separate updates each (80 contended lock rounds) through the core', async () => {
    const file = defaultKeystore(tmp.dir)
    await createKeystore(file, {format: 'native'})
    const runs = await Promise.all(Array.from({length: PROCESSES}, (_, p) => runCoreWorker(file, p, undefined)))
    for (const run of runs) assert.deepEqual(run, {code: 0, stderr: ''})
    await assertAllKeys(file, undefined, false)
  })
})
