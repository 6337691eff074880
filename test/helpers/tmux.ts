/**
 * Drives a real terminal: a command runs in a detached tmux pane of a fixed size, and tests type into it
 * and read its screen as a person would. Each terminal has its own tmux server on a socket in a private
 * temp directory, so tests never touch (or collide with) other tmux servers, and cleanup removes every
 * trace: the server, the pane's processes and the socket.
 *
 * Waiting is always "poll until the screen shows X, or fail at a deadline", never a fixed sleep.
 *
 * The exit status comes from a tiny sh wrapper that waits for the command and writes `$?` to a file,
 * not from tmux's #{pane_dead_status}: tmux 3.3a (Debian) sometimes never reaps a pane's exited process
 * (it stays a zombie, the status stays empty), so that value cannot be waited for reliably.
 */
import {execFile} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {cleanEnv} from './cli.js'

const TMUX = 'tmux'

const POLL_MS = 50
const DEFAULT_DEADLINE_MS = 10_000
const SESSION = 'main'

/**
 * remain-on-exit keeps a finished pane's screen until we read it; no status line, so the pane is the
 * whole window; a deep history so nothing scrolls away before we capture it.
 */
const TMUX_CONF = ['set -g remain-on-exit on', 'set -g status off', 'set -g history-limit 10000', ''].join('\n')

/**
 * Runs "$@" and writes its exit status (128+n after signal n) to the file $0, atomically. `trap : INT`
 * keeps the wrapper alive if Ctrl-C reaches it as a signal, without making the command ignore SIGINT
 * (a trapped signal is reset to its default on exec; an ignored one would be inherited).
 */
const STATUS_WRAPPER = 'trap : INT; "$@"; status=$?; echo "$status" > "$0.tmp" && mv "$0.tmp" "$0"'

export interface TerminalOptions {
  /** argv: command[0] is the program; no shell parses the arguments */
  command: string[]
  cwd: string
  /** added to a clean environment (see cleanEnv in cli.ts: no APM_SERVER_* from the outer shell) */
  env?: Record<string, string | undefined>
  width?: number
  height?: number
}

export type ScreenMatch = ((screen: string) => boolean) | RegExp | string

const live = new Set<Terminal>()

function tmuxRaw(args: string[], env?: NodeJS.ProcessEnv): Promise<{code: number; stderr: string; stdout: string}> {
  return new Promise((resolve, reject) => {
    execFile(TMUX, args, {encoding: 'utf8', env, timeout: 5000}, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(error)
        return
      }

      resolve({code: typeof error?.code === 'number' ? error.code : 0, stderr, stdout})
    })
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms)
  })
}

/** False for a pid that is gone or a zombie (exited, only waiting to be reaped). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && existsSync('/proc/self')) return false
  }

  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The pids whose parent is `pid` (Linux /proc; empty elsewhere). */
function childrenOf(pid: number): number[] {
  if (!existsSync('/proc/self')) return []
  const children: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) children.push(Number(entry))
    } catch {
      // the process ended while we looked
    }
  }

  return children
}

function matches(screen: string, what: ScreenMatch): boolean {
  if (typeof what === 'string') return screen.includes(what)
  if (what instanceof RegExp) return what.test(screen)
  return what(screen)
}

export class Terminal {
  private constructor(
    private readonly dir: string,
    private readonly socket: string,
    private readonly serverPid: number,
    /** the sh wrapper; the command runs as its child */
    private readonly panePid: number,
  ) {}

  private get statusFile(): string {
    return path.join(this.dir, 'status')
  }

  /** Starts `command` in a new detached tmux session of width x height (default 200 x 50). */
  static async start(options: TerminalOptions): Promise<Terminal> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'apm-ks-tmux-'))
    const socket = path.join(dir, 'socket')
    const conf = path.join(dir, 'tmux.conf')
    writeFileSync(conf, TMUX_CONF)
    // The first client starts the server, which passes its own environment on to the pane.
    const env = cleanEnv(options.env)
    delete env.TMUX
    delete env.TMUX_PANE
    const {height = 50, width = 200} = options
    const started = await tmuxRaw(
      [
        ...['-S', socket, '-f', conf, 'new-session', '-d', '-s', SESSION, '-x', String(width), '-y', String(height), '-c', options.cwd, '--'],
        ...['sh', '-c', STATUS_WRAPPER, path.join(dir, 'status'), ...options.command],
      ],
      env,
    ).catch((error: Error) => ({code: -1, stderr: error.message, stdout: ''}))
    if (started.code !== 0) {
      rmSync(dir, {force: true, recursive: true})
      throw new Error(`tmux new-session failed (${started.code}): ${started.stderr.trim()}; is tmux installed?`)
    }

    const ids = await tmuxRaw(['-S', socket, 'display-message', '-p', '-t', SESSION, '#{pid} #{pane_pid}'])
    const [serverPid, panePid] = ids.stdout.trim().split(' ').map(Number)
    const terminal = new Terminal(dir, socket, serverPid, panePid)
    live.add(terminal)
    return terminal
  }

  /** Kills every terminal not yet killed; call it from afterEach. */
  static async killAll(): Promise<void> {
    await Promise.all([...live].map((terminal) => terminal.kill()))
  }

  /** Types text literally (no key-name lookup). */
  async type(text: string): Promise<void> {
    await this.tmux(['send-keys', '-t', SESSION, '-l', '--', text])
  }

  /** Presses keys by tmux name: 'Enter', 'C-c', 'BSpace', 'y', ... */
  async press(...keys: string[]): Promise<void> {
    await this.tmux(['send-keys', '-t', SESSION, '--', ...keys])
  }

  /** Everything the pane has shown (history and screen), wrapped lines joined, trailing blanks removed. */
  async screen(): Promise<string> {
    const {stdout} = await this.tmux(['capture-pane', '-p', '-J', '-S', '-', '-E', '-', '-t', SESSION])
    return stdout
      .split('\n')
      .map((line) => line.trimEnd())
      .join('\n')
      .trimEnd()
  }

  /**
   * Polls the screen until it matches; fails at the deadline, or as soon as the command has ended
   * without showing it, with what the screen showed.
   */
  async waitFor(what: ScreenMatch, deadlineMs = DEFAULT_DEADLINE_MS): Promise<string> {
    const deadline = Date.now() + deadlineMs
    for (;;) {
      // Checked before the capture, so a screen captured after the command ended is its last one.
      const ended = existsSync(this.statusFile)
      // eslint-disable-next-line no-await-in-loop -- polling
      const screen = await this.screen()
      if (matches(screen, what)) return screen
      if (ended || Date.now() > deadline) {
        const why = ended ? `the command ended (exit ${readFileSync(this.statusFile, 'utf8').trim()})` : `${deadlineMs} ms passed`
        throw new Error(`the terminal did not show ${String(what)}: ${why}; it shows:\n${screen}`)
      }

      // eslint-disable-next-line no-await-in-loop -- polling
      await sleep(POLL_MS)
    }
  }

  /** Waits for the command to end and returns its exit status (128+n if signal n killed it). */
  async waitForExit(deadlineMs = DEFAULT_DEADLINE_MS): Promise<number> {
    const deadline = Date.now() + deadlineMs
    for (;;) {
      if (existsSync(this.statusFile)) return Number(readFileSync(this.statusFile, 'utf8').trim())
      if (Date.now() > deadline) {
        // eslint-disable-next-line no-await-in-loop -- once, for the message
        throw new Error(`the command did not exit within ${deadlineMs} ms; the terminal shows:\n${await this.screen()}`)
      }

      // eslint-disable-next-line no-await-in-loop -- polling
      await sleep(POLL_MS)
    }
  }

  /**
   * Kills the tmux server and everything started in the pane (tmux hangs them up), waits until they are
   * gone, and removes the socket directory.
   */
  async kill(): Promise<void> {
    if (!live.delete(this)) return
    const pids = [this.serverPid, this.panePid, ...childrenOf(this.panePid)].filter((pid) => Number.isInteger(pid) && pid > 0)
    await tmuxRaw(['-S', this.socket, 'kill-server']).catch(() => {})
    const deadline = Date.now() + 5000
    while (pids.some((pid) => running(pid)) && Date.now() < deadline) {
      // eslint-disable-next-line no-await-in-loop -- polling
      await sleep(20)
    }

    for (const pid of pids.filter((pid) => running(pid))) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }

    rmSync(this.dir, {force: true, recursive: true})
  }

  private async tmux(args: string[]): Promise<{stdout: string}> {
    const result = await tmuxRaw(['-S', this.socket, ...args])
    if (result.code !== 0) throw new Error(`tmux ${args[0]} failed (${result.code}): ${result.stderr.trim()}`)
    return result
  }
}
