/**
 * Issue 11's fail-open configuration paths, tried on the real `apm-server run` (loopback, a secret token
 * from the keystore): reloads that would leave the server less protected (the config file moved away or
 * truncated, the token removed, anonymous access turned on, the keystore gone with the token in the
 * environment, TLS off, wider anonymous access), -E overrides that dropped the token, tokens that are not
 * strings, and a stop during a reload stuck on a FIFO. Each scenario returns its failures; the fast test
 * (review-config.test.ts) runs every scenario not marked `full` as its own test.
 */
import {execFile, execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {promisify} from 'node:util'

import {LogLine, Running, send, startRun} from '../helpers/run-server.js'
import {CheckResult, cli, fail, ms, newResult, sleep, tempDir} from './lib.js'

const TOKEN_SETTING = 'apm-server.auth.secret_token'
const JAVA_METADATA = JSON.stringify({metadata: {service: {agent: {name: 'java', version: '1.50.0'}, name: 'backend'}}})
const RUM_METADATA = JSON.stringify({metadata: {service: {agent: {name: 'rum-js', version: '5.16.0'}, name: 'web'}}})
const EVENT = JSON.stringify({transaction: {duration: 1, id: 'aaaaaaaaaaaaaaaa', span_count: {started: 0}, trace_id: 'a'.repeat(32), type: 'request'}})
/** A reload or a stop that takes longer than this is a hang, not slowness (the reload bound is 30 s). */
const HANG_MS = 20_000

/** A directory holding a keystore with APM_SECRET_TOKEN and `apm-server.yml` reading it. */
interface Home {
  dir: string
  token: string
  /** the environment the CLI needs (the password file of a protected keystore) */
  env: Record<string, string>
}

export interface Scenario {
  name: string
  /** only in `npm run torture`: slow (the 30 s reload bound) or needing openssl */
  full?: boolean
  /** returns the failures; `notes` go into the figures table */
  run: (home: Home, notes: string[]) => Promise<string[]>
}

const config = (extra = '') => `apm-server:\n  host: "127.0.0.1:0"\n  auth.secret_token: "\${APM_SECRET_TOKEN}"\n${extra}output.file.path: out\n`

async function makeHome(options: {password?: boolean} = {}): Promise<Home & {cleanup: () => void}> {
  const {cleanup, dir} = tempDir('apm-review-config-')
  const token = `TOKEN${randomBytes(12).toString('hex')}`
  const env: Record<string, string> = {}
  if (options.password) {
    await fs.writeFile(path.join(dir, 'pass'), 'review-config-password\n', {mode: 0o600})
    env.APM_SERVER_KEYSTORE_PASSWORD_FILE = path.join(dir, 'pass')
  }

  const created = await cli(['keystore', 'create', ...(options.password ? ['--password'] : [])], {cwd: dir, env})
  const added = await cli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin'], {cwd: dir, env, input: token})
  if (created.code !== 0 || added.code !== 0) throw new Error(`keystore set-up failed: ${created.stderr}${added.stderr}`)
  await fs.writeFile(path.join(dir, 'apm-server.yml'), config())
  return {cleanup, dir, env, token}
}

/** The status of a Java agent's events with this token (none: no Authorization header). */
async function backend(run: Running, token?: string): Promise<number> {
  const headers: Record<string, string> = {'Content-Type': 'application/x-ndjson', ...(token ? {Authorization: `Bearer ${token}`} : {})}
  return (await send(run.url, {body: `${JAVA_METADATA}\n${EVENT}\n`, headers, path: '/intake/v2/events'})).status
}

/** The status of an anonymous RUM agent's events. */
async function rum(run: Running): Promise<number> {
  const headers = {'Content-Type': 'application/x-ndjson', Origin: 'https://shop.example'}
  return (await send(run.url, {body: `${RUM_METADATA}\n${EVENT}\n`, headers, path: '/intake/v2/rum/events'})).status
}

/** Applies `change`, sends SIGHUP, and returns the reload's outcome: "configuration reloaded" or "reload failed; ...". */
async function reload(run: Running, change: () => Promise<void> = async () => {}): Promise<LogLine> {
  const seen = run.logs().length
  await change()
  run.child.kill('SIGHUP')
  return run.waitFor(/^(configuration reloaded|reload failed)/, seen)
}

const refused = (outcome: LogLine) => String(outcome.message).startsWith('reload failed')
const problemsOf = (outcome: LogLine) => JSON.stringify(outcome.problems ?? [])

/** Sends SIGTERM and waits for the exit; a stop longer than HANG_MS is a failure (and ends in SIGKILL). */
async function stop(run: Running, failures: string[]): Promise<void> {
  run.child.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<'hung'>((resolve) => {
    timer = setTimeout(() => resolve('hung'), HANG_MS)
  })
  const ended = await Promise.race([run.exit.then(() => 'exited' as const), hung])
  clearTimeout(timer)
  if (ended === 'hung') {
    failures.push(`SIGTERM did not stop the server within ${HANG_MS / 1000} s`)
    run.child.kill('SIGKILL')
    await run.exit
    return
  }

  // 0, or the signal itself when a reload was still stuck in a read
  const clean = run.child.exitCode === 0 || run.child.signalCode === 'SIGTERM'
  if (!clean) failures.push(`the stop ended with ${run.child.exitCode ?? run.child.signalCode}, expected 0 (or SIGTERM)`)
  if (!run.logs().some((line) => line.message === 'stopped')) failures.push('no "stopped" line: the output was not flushed')
}

/** Starts the server, checks the token is required, runs `attack`, checks the token is still required, stops. */
async function guarded(home: Home, args: string[], attack: (run: Running, failures: string[]) => Promise<void>, env: Record<string, string> = {}): Promise<string[]> {
  const failures: string[] = []
  const run = await startRun(home.dir, args, {...home.env, ...env})
  try {
    // Without the token a Java agent is refused: 401, or 403 when anonymous access is on (for RUM agents only).
    const guardedNow = async (when: string) => {
      const statuses = [await backend(run), await backend(run, home.token)]
      if (![401, 403].includes(statuses[0]) || statuses[1] !== 202) failures.push(`${when}: without/with the token ${statuses.join('/')}, expected 401 or 403/202 (open, or the token lost)`)
    }

    await guardedNow('before')
    await attack(run, failures)
    await guardedNow('after')
  } finally {
    await stop(run, failures)
  }

  return failures
}

/** A reload after `change` must fail with a problem matching `problem`; the old configuration stays. */
function refusedReload(change: (home: Home) => Promise<void>, problem: RegExp, args: string[] = [], env: Record<string, string> = {}) {
  return (home: Home) =>
    guarded(
      home,
      args,
      async (run, failures) => {
        const outcome = await reload(run, () => change(home))
        if (!refused(outcome)) failures.push(`the reload was applied ("${outcome.message}"), it must be refused`)
        else if (!problem.test(problemsOf(outcome))) failures.push(`the reload failed for another reason: ${problemsOf(outcome)}`)
      },
      env,
    )
}

const writeConfig = (home: Home, text: string, name = 'apm-server.yml') => fs.writeFile(path.join(home.dir, name), text)

export const SCENARIOS: Scenario[] = [
  {
    name: 'config file moved away (--path.config, no -c), SIGHUP, put back: the reload fails, the token stays required',
    run: async (home) => {
      await fs.mkdir(path.join(home.dir, 'conf'))
      await fs.rename(path.join(home.dir, 'apm-server.yml'), path.join(home.dir, 'conf', 'apm-server.yml'))
      const [file, moved] = [path.join(home.dir, 'conf', 'apm-server.yml'), path.join(home.dir, 'conf', 'moved.yml')]
      return guarded(home, ['--path.config', 'conf'], async (run, failures) => {
        const outcome = await reload(run, () => fs.rename(file, moved))
        if (!refused(outcome) || !/does not exist any more/.test(problemsOf(outcome))) failures.push(`file moved away: "${outcome.message}" ${problemsOf(outcome)}`)
        await fs.rename(moved, file)
        if ((await backend(run)) !== 401) failures.push('file put back: an agent without the token is let in')
        const again = await reload(run)
        if (refused(again)) failures.push(`file put back, SIGHUP: ${problemsOf(again)}`)
      })
    },
  },
  {
    name: 'config file truncated (-c), SIGHUP: the reload fails, the token stays required',
    run: refusedReload((home) => writeConfig(home, ''), /holds no settings/, ['-c', 'apm-server.yml']),
  },
  {
    name: 'a reload removing the secret token is refused, saying to restart',
    run: refusedReload((home) => writeConfig(home, 'apm-server.host: "127.0.0.1:0"\noutput.file.path: out\n'), /cannot remove the secret token.*restart the server/),
  },
  {
    name: 'a reload enabling RUM (anonymous access by default) is refused; anonymous RUM agents stay out',
    run: (home) =>
      guarded(home, [], async (run, failures) => {
        const outcome = await reload(run, () => writeConfig(home, config('  rum.enabled: true\n')))
        if (!refused(outcome) || !/cannot turn on anonymous access.*restart the server/.test(problemsOf(outcome))) failures.push(`RUM on: "${outcome.message}" ${problemsOf(outcome)}`)
        const status = await rum(run)
        if (status !== 401) failures.push(`an anonymous RUM agent got ${status}, expected 401`)
      }),
  },
  {
    name: 'a reload with the keystore gone and the token in the environment is refused (no silent switch of source)',
    run: refusedReload((home) => fs.rm(path.join(home.dir, 'data', 'apm-server.keystore')), /came from the keystore and the keystore .* is gone/, [], {
      APM_SECRET_TOKEN: 'stale-token-in-the-environment',
    }),
  },
  {
    name: "-E 'apm-server.auth={anonymous: {enabled: false}}' keeps the file's secret token",
    run: (home) => guarded(home, ['-E', 'apm-server.auth={anonymous: {enabled: false}}'], async () => {}),
  },
  {
    name: 'a secret token that is not a string (-E ...secret_token.x=1, a YAML mapping, a section as a value) stops the start, naming the setting',
    run: async (home) => {
      const failures: string[] = []
      const cases: Array<[string, string[], string]> = [
        ['-E secret_token.x=1', ['-E', `${TOKEN_SETTING}.x=1`], `${TOKEN_SETTING}: must be a string, not a mapping`],
        ['a mapping in the file', [], `${TOKEN_SETTING}: must be a string, not a mapping`],
        ['-E apm-server.auth=x', ['-E', 'apm-server.auth=x'], `-E apm-server.auth: would remove ${TOKEN_SETTING}`],
        ['-E apm-server.auth=null', ['-E', 'apm-server.auth=null'], `-E apm-server.auth: would remove ${TOKEN_SETTING}`],
      ]
      for (const [label, args, expected] of cases) {
        const yaml = args.length === 0 ? `apm-server:\n  host: "127.0.0.1:0"\n  auth.secret_token: {x: 1}\n` : config()
        // eslint-disable-next-line no-await-in-loop -- one start at a time
        await writeConfig(home, yaml)
        // eslint-disable-next-line no-await-in-loop -- one start at a time
        const result = await cli(['run', ...args], {cwd: home.dir, env: home.env, timeoutMs: HANG_MS})
        if (result.code !== 1 || !result.stderr.includes(expected)) failures.push(`${label}: exit ${result.code ?? result.signal}, stderr ${result.stderr.slice(0, 300)}`)
      }

      return failures
    },
  },
  {
    name: 'a start without a token says so at error level: no config file, or -E secret_token=null on purpose',
    run: async (home) => {
      const failures: string[] = []
      const cases: Array<[string, string[], RegExp]> = [
        ['no config file', ['-E', 'apm-server.host=127.0.0.1:0'], /^running WITHOUT authentication: there is no config file at .*apm-server\.yml, so the defaults apply/],
        ['-E secret_token=null', ['-E', `${TOKEN_SETTING}=null`], new RegExp(`^running WITHOUT authentication: the secret token is turned off by -E ${TOKEN_SETTING}=null`)],
      ]
      for (const [label, args, expected] of cases) {
        // eslint-disable-next-line no-await-in-loop -- one start at a time
        if (label === 'no config file') await fs.rename(path.join(home.dir, 'apm-server.yml'), path.join(home.dir, 'elsewhere.yml'))
        // eslint-disable-next-line no-await-in-loop -- one start at a time
        const run = await startRun(home.dir, args, home.env)
        const line = run.logs().find((record) => expected.test(String(record.message)))
        if (line?.['log.level'] !== 'error') failures.push(`${label}: no error-level line saying the server runs without authentication`)
        // eslint-disable-next-line no-await-in-loop -- one start at a time
        await stop(run, failures)
        // eslint-disable-next-line no-await-in-loop -- one start at a time
        if (label === 'no config file') await fs.rename(path.join(home.dir, 'elsewhere.yml'), path.join(home.dir, 'apm-server.yml'))
      }

      return failures
    },
  },
  {
    name: 'SIGTERM during a reload stuck on a FIFO password file stops the server',
    run: async (home) => {
      const failures: string[] = []
      const run = await startRun(home.dir, [], home.env)
      const pass = path.join(home.dir, 'pass')
      await fs.rm(pass)
      execFileSync('mkfifo', ['-m', '600', pass])
      const seen = run.logs().length
      run.child.kill('SIGHUP')
      await run.waitFor('SIGHUP: reloading the configuration', seen)
      // time to reach the open(2) of the FIFO, which blocks until a writer comes
      await sleep(300)
      await stop(run, failures)
      return failures
    },
  },
  ...fullScenarios(),
]

/** `npm run torture` only: the 30 s reload bound, and every other way a reload could loosen protection. */
function fullScenarios(): Scenario[] {
  const anonymousOn = config('  rum.enabled: true\n  auth.anonymous: {allow_agent: [rum-js], allow_service: [web], rate_limit: {event_limit: 10, ip_limit: 10}}\n')
  const loosening: Array<[string, string, RegExp]> = [
    ['more agents', anonymousOn.replace('[rum-js]', '[rum-js, java]'), /allow_agent: a reload cannot let more agents in/],
    ['every service', anonymousOn.replace('[web]', '[]'), /allow_service: a reload cannot let more services in/],
    ['a higher event limit', anonymousOn.replace('event_limit: 10', 'event_limit: 1000'), /event_limit: a reload cannot raise/],
    ['a whitespace token', 'apm-server:\n  host: "127.0.0.1:0"\n  auth.secret_token: "   "\n', /is only whitespace/],
    ['a null token in the file', config().replace('"${APM_SECRET_TOKEN}"', 'null'), /is set but empty/],
  ]
  return [
    ...loosening.map(([label, next, problem]) => ({
      full: true,
      name: `a reload to ${label} is refused`,
      run: async (home: Home) => {
        await writeConfig(home, anonymousOn)
        return refusedReload((h) => writeConfig(h, next), problem)(home)
      },
    })),
    {
      full: true,
      name: 'a reload turning TLS off is refused; the server keeps serving HTTPS',
      run: async (home) => {
        const pem = (name: string) => path.join(home.dir, name)
        await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', pem('key.pem'), '-out', pem('cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'])
        await writeConfig(home, config(`  ssl: {enabled: true, certificate: ${pem('cert.pem')}, key: ${pem('key.pem')}}\n`))
        const failures: string[] = []
        const run = await startRun(home.dir, [], home.env)
        const outcome = await reload(run, () => writeConfig(home, config()))
        if (!refused(outcome) || !/cannot turn TLS off/.test(problemsOf(outcome))) failures.push(`TLS off: "${outcome.message}" ${problemsOf(outcome)}`)
        if (!run.url.startsWith('https:')) failures.push(`the server listens on ${run.url}`)
        await stop(run, failures)
        return failures
      },
    },
    {full: true, name: 'a reload stuck for over 30 s is given up; a SIGHUP meanwhile runs when it ends', run: stuckReload},
  ]
}

/**
 * A FIFO password file blocks the reload for as long as `open(2)` of a FIFO blocks (issue 11, item 11
 * makes the password file reader refuse one at once: then nothing here blocks, and that is noted).
 */
async function stuckReload(home: Home, notes: string[]): Promise<string[]> {
  const failures: string[] = []
  const run = await startRun(home.dir, [], home.env)
  const pass = path.join(home.dir, 'pass')
  const fifo = path.join(home.dir, 'pass.fifo')
  try {
    await fs.rm(pass)
    execFileSync('mkfifo', ['-m', '600', pass])
    const t0 = Date.now()
    const outcome = await reload(run)
    notes.push(`reload ended after ${ms(Date.now() - t0)}`)
    if (!refused(outcome)) {
      failures.push(`a reload reading a FIFO password file was applied: ${outcome.message}`)
      return failures
    }

    if (!/did not finish within 30 s/.test(problemsOf(outcome))) {
      notes.push(`the FIFO did not block: ${problemsOf(outcome)}`)
      return failures
    }

    const seen = run.logs().length
    run.child.kill('SIGHUP')
    await run.waitFor(/^SIGHUP: the reload given up earlier is still running/, seen)
    // Release the stuck read, and leave a regular file for the queued reload.
    await fs.rename(pass, fifo)
    await fs.writeFile(pass, 'review-config-password\n', {mode: 0o600})
    const writer = await fs.open(fifo, 'w')
    await writer.write('review-config-password\n')
    await writer.close()
    const next = await run.waitFor(/^(configuration reloaded|reload failed)/, seen)
    if (refused(next)) failures.push(`the queued reload failed: ${problemsOf(next)}`)
    if (!run.logs().some((line) => line.message === 'the reload given up earlier has ended; its result is dropped')) failures.push('the late result was not reported as dropped')
    if ((await backend(run, home.token)) !== 202) failures.push('the token is no longer accepted after the queued reload')
    return failures
  } finally {
    await stop(run, failures)
  }
}

/** Every scenario (or only the fast ones), each in a fresh directory; failures are prefixed with the scenario. */
export async function checkReviewConfig(options: {full: boolean}): Promise<CheckResult> {
  const result = newResult()
  for (const scenario of SCENARIOS.filter((s) => options.full || !s.full)) {
    const t0 = Date.now()
    const notes: string[] = []
    // eslint-disable-next-line no-await-in-loop -- servers one at a time: each measures its own stop
    const failures = await runScenario(scenario, notes)
    for (const failure of failures) fail(result, `${scenario.name}: ${failure}`)
    const value = `${failures.length === 0 ? 'held' : 'FAILED'} (${ms(Date.now() - t0)}${notes.map((note) => `; ${note}`).join('')})`
    result.figures.push({check: 'review-config', figure: scenario.name, value})
  }

  return result
}

/** Runs one scenario in a fresh home (a password-protected keystore for the FIFO ones). */
export async function runScenario(scenario: Scenario, notes: string[] = []): Promise<string[]> {
  const home = await makeHome({password: /FIFO|stuck/.test(scenario.name)})
  try {
    return await scenario.run(home, notes)
  } finally {
    home.cleanup()
  }
}
