/**
 * kill -9 of a CLI command at the moment that matters: right as its temp file (the new keystore being
 * written) appears, or after a given delay. Used to show that a crash leaves the old or the new keystore.
 */
import {watch} from 'node:fs'

import {BIN, CliResult, cleanEnv, startChild} from './cli.js'

/** The keystore writer's temp file: `apm-server.keystore.tmp-<32 hex digits>` next to the keystore. */
export const KEYSTORE_TEMP_FILE = /^apm-server\.keystore\.tmp-[0-9a-f]{32}$/

export interface KilledRun {
  /** true when the SIGKILL came before the command ended */
  killed: boolean
  result: CliResult
}

/**
 * Runs the CLI with `args` and SIGKILLs it: when `delayMs` is undefined, as soon as a temp file appears in
 * `dataDir` (half the time at once, half a tick later); else after `delayMs`.
 */
export async function runCliAndKill(
  args: string[],
  options: {cwd: string; env?: Record<string, string | undefined>; input?: Buffer | string},
  dataDir: string,
  delayMs?: number,
): Promise<KilledRun> {
  const running = startChild(process.execPath, [BIN, ...args], {cwd: options.cwd, env: cleanEnv(options.env), input: options.input, timeoutMs: 60_000})
  let sent = false
  const kill = () => {
    if (sent || running.child.exitCode !== null || running.child.signalCode !== null) return
    sent = true
    running.child.kill('SIGKILL')
  }

  const watcher =
    delayMs === undefined
      ? watch(dataDir, (_event, name) => {
          if (name && KEYSTORE_TEMP_FILE.test(name)) {
            if (Math.random() < 0.5) kill()
            else setImmediate(kill)
          }
        })
      : undefined
  const timer = delayMs === undefined ? undefined : setTimeout(kill, delayMs)
  try {
    const result = await running.done
    return {killed: sent && result.signal === 'SIGKILL', result}
  } finally {
    watcher?.close()
    if (timer) clearTimeout(timer)
  }
}
