/**
 * Runs a command for `keystore run` as a shell runs one in the foreground: stdin is the command's own,
 * its stdout and stderr pass through (each through its own Masker, when masking), SIGINT, SIGTERM and
 * SIGHUP sent to this process are sent on to it, and its end becomes this process's exit status: its
 * exit code, or 128 + the signal number when a signal killed it; 127 when the command is not found and
 * 126 when it cannot be run, as POSIX shells report them. When the reader of this process's output goes
 * away (EPIPE), the command gets SIGPIPE, as a writer in a shell pipeline does: Node's pipes to a child
 * are socket pairs, whose closing would show it "connection reset" instead.
 */
import {ChildProcess, spawn} from 'node:child_process'
import {constants} from 'node:os'
import type {Readable, Writable} from 'node:stream'

import {KeystoreError} from '../core/errors.js'
import {Masker, MaskTable} from '../core/masker.js'

// With it, `keystore run` loads one file of its own when it runs.
export {changesHowProgramsLoad, childEnvironment} from './child-env.js'

/** Signals a shell's foreground job gets from whoever signals the shell (a supervisor, `timeout`, `kill`). */
const FORWARDED: readonly NodeJS.Signals[] = ['SIGHUP', 'SIGINT', 'SIGTERM']

export interface ChildSpec {
  command: string
  args: readonly string[]
  env: NodeJS.ProcessEnv
  /** values to conceal in its output; undefined: no masking (its stdout and stderr are ours) */
  conceal?: readonly Uint8Array[]
}

/** Runs the command to its end; resolves with the exit status a shell would report. */
export async function runChild(spec: ChildSpec): Promise<number> {
  const table = spec.conceal ? new MaskTable(spec.conceal) : undefined
  const child = spawn(spec.command, [...spec.args], {env: spec.env, stdio: table ? ['inherit', 'pipe', 'pipe'] : 'inherit'})
  const forward = (signal: NodeJS.Signals) => child.kill(signal)
  for (const signal of FORWARDED) process.on(signal, forward)
  try {
    const broken = () => child.kill('SIGPIPE')
    const piped = table ? [pipeMasked(child.stdout!, process.stdout, table, broken), pipeMasked(child.stderr!, process.stderr, table, broken)] : []
    const status = await exitStatus(child, spec.command)
    await Promise.all(piped)
    return status
  } finally {
    for (const signal of FORWARDED) process.off(signal, forward)
  }
}

function exitStatus(child: ChildProcess, command: string): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) => {
      // Only spawn failures arrive here before 'exit': the command never ran.
      const shown = JSON.stringify(command.slice(0, 200))
      if (error.code === 'ENOENT') reject(Object.assign(new KeystoreError('EUSAGE', `command ${shown} not found; check its name and PATH`), {exitStatus: 127}))
      else if (error.code === 'EACCES' || error.code === 'EISDIR') reject(Object.assign(new KeystoreError('EUSAGE', `command ${shown} cannot be run (${error.code}); check that it is an executable file`), {exitStatus: 126}))
      else if (error.code === 'E2BIG') reject(new KeystoreError('ELIMITS', `the environment is too large to start ${shown} (E2BIG); choose fewer or smaller keys with --key`))
      else reject(new KeystoreError('EIO', `cannot start ${shown}: ${error.code ?? error.message}; check the command`))
    })
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)))
  })
}

/** Copies `from` to `to` through a Masker, pausing `from` while `to` is full; `onBroken` when `to` is gone (EPIPE). */
function pipeMasked(from: Readable, to: Writable, table: MaskTable, onBroken: () => void): Promise<void> {
  const masker = new Masker(table)
  return new Promise((resolve) => {
    let broken = false
    const onError = () => {
      broken = true
      onBroken()
      from.destroy()
      resolve()
    }

    to.once('error', onError)
    const write = (bytes: Buffer) => {
      if (broken || bytes.length === 0) return
      if (!to.write(bytes)) {
        from.pause()
        to.once('drain', () => from.resume())
      }
    }

    from.on('data', (chunk: Buffer) => write(masker.push(chunk)))
    from.once('end', () => {
      write(masker.end())
      to.off('error', onError)
      resolve()
    })
    from.once('error', () => resolve())
  })
}
