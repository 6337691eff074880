/**
 * The real `apm-server run` as a child process for end-to-end tests (its ECS JSON log lines parsed as
 * they come, waited on by message), and one HTTP(S) request to it.
 */
import {ChildProcess, spawn} from 'node:child_process'
import http from 'node:http'
import https from 'node:https'

import {BIN, cleanEnv} from './cli.js'

export interface Reply {
  status: number
  body: string
  headers: http.IncomingHttpHeaders
}

export interface SendOptions {
  method?: string
  path: string
  headers?: Record<string, string>
  body?: Buffer | string
  ca?: Buffer
}

/** Starts a request and leaves its body open: write to `request`, end it, await `reply`. */
export function open(url: string, options: SendOptions): {request: http.ClientRequest; reply: Promise<Reply>} {
  const client = url.startsWith('https:') ? https : http
  let request!: http.ClientRequest
  const reply = new Promise<Reply>((resolve, reject) => {
    request = client.request(`${url}${options.path}`, {agent: false, ca: options.ca, headers: options.headers, method: options.method ?? 'POST'}, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({body: Buffer.concat(chunks).toString('utf8'), headers: res.headers, status: res.statusCode!}))
    })
    request.on('error', reject)
  })
  return {reply, request}
}

export function send(url: string, options: SendOptions): Promise<Reply> {
  const {reply, request} = open(url, options)
  request.end(options.body)
  return reply
}

export type LogLine = Record<string, unknown>

export interface Running {
  child: ChildProcess
  url: string
  logs: () => LogLine[]
  /** everything written to stderr so far, log lines or not */
  stderr: () => string
  /** the first line with this message among those logged after the first `after` lines */
  waitFor: (message: RegExp | string, after?: number) => Promise<LogLine>
  /** the exit code, or null when a signal ended it (then `child.signalCode` says which) */
  exit: Promise<number | null>
}

const started = new Set<ChildProcess>()

/** SIGKILLs every server `startRun` started that is still running (for afterEach). */
export function killStartedServers(): void {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  started.clear()
}

/** Starts `apm-server run` in `cwd` (a clean environment plus `env`) and waits for its "listening" line. */
export async function startRun(cwd: string, args: string[] = [], env: Record<string, string | undefined> = {}): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'run', ...args], {cwd, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe']})
  started.add(child)
  let stderr = ''
  const waiters: (() => void)[] = []
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8')
    for (const waiter of waiters.splice(0)) waiter()
  })
  const exit = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => {
      for (const waiter of waiters.splice(0)) waiter()
      resolve(code)
    })
  })
  const logs = () =>
    stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine)
  const waitFor = async (message: RegExp | string, after = 0) => {
    const matches = (line: LogLine) => (typeof message === 'string' ? line.message === message : message.test(String(line.message)))
    for (;;) {
      const found = logs().slice(after).find(matches)
      if (found) return found
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`apm-server run exited (${child.exitCode ?? child.signalCode}) before logging "${message}":\n${stderr}`)
      // eslint-disable-next-line no-await-in-loop -- waiting for the next chunk of stderr
      await new Promise<void>((resolve) => {
        waiters.push(resolve)
      })
    }
  }

  const listening = await waitFor('listening')
  return {child, exit, logs, stderr: () => stderr, url: listening.url as string, waitFor}
}
