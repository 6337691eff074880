/**
 * Every runbook in docs/runbooks is executed: its ```sh blocks, in order, as one bash script with
 * `set -euo pipefail`, in a fresh temp directory, with `apm-server` on PATH. Blocks in other languages
 * (yaml, ini) are configuration examples and are not run. So the docs cannot rot.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {chmodSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {BIN, cleanEnv, makeTempDir, ROOT} from '../helpers/cli.js'

const RUNBOOKS = path.join(ROOT, 'docs', 'runbooks')

export function shellBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((match) => match[1])
}

function runScript(script: string, cwd: string, binDir: string): Promise<{code: null | number; output: string}> {
  return new Promise((resolve, reject) => {
    const env = cleanEnv({PATH: `${binDir}:${process.env.PATH}`})
    // Its own process group, so that a server a runbook started in the background is stopped with it,
    // even when a step fails before the runbook's own `kill`.
    const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {cwd, detached: true, env, stdio: ['ignore', 'pipe', 'pipe']})
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // the group is already gone
      }
    }

    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')))
    const timer = setTimeout(killGroup, 120_000)
    child.on('error', reject)
    // On bash's exit, not on close: a leftover background process would hold the output pipes open.
    child.on('exit', killGroup)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, output})
    })
  })
}

describe('docs/runbooks: every shell block runs', () => {
  const files = readdirSync(RUNBOOKS).filter((name) => name.endsWith('.md'))

  it('finds the five runbooks, each with shell blocks', () => {
    assert.deepEqual(files.sort(), ['migrate-from-go-keystore.md', 'password-at-boot.md', 'provision-fleet.md', 'rotate-secret-token.md', 'ship-to-redis.md'])
    for (const name of files) assert.ok(shellBlocks(readFileSync(path.join(RUNBOOKS, name), 'utf8')).length > 0, name)
  })

  it('no runbook puts a secret file into the arguments of a program (every local user can read argv)', () => {
    // Bash builtins run in the shell itself: their arguments never reach a process's argv.
    const builtins = new Set(['[', 'echo', 'export', 'printf', 'test'])
    const secretFile = /\$\(cat "?[^)]*(?:token|pass|secret|key)[^)]*\)/i
    const leaks: string[] = []
    for (const name of files) {
      let heredoc: string | undefined
      for (const line of shellBlocks(readFileSync(path.join(RUNBOOKS, name), 'utf8')).join('\n').split('\n')) {
        // A here-document's lines are a file's content (a config file), not commands.
        if (heredoc !== undefined) {
          if (line.trim() === heredoc) heredoc = undefined
          continue
        }

        heredoc = /<<-?\s*['"]?(\w+)/.exec(line)?.[1]
        for (const command of line.split(/\|\||&&|[|;]/)) {
          if (!secretFile.test(command)) continue
          const words = command.trim().split(/\s+/).filter((word) => !/^[A-Z_]+=/.test(word))
          if (!builtins.has(words[0])) leaks.push(`${name}: ${line.trim()}`)
        }
      }
    }

    assert.deepEqual(leaks, [])
  })

  for (const name of files) {
    it(name, async function () {
      this.timeout(180_000)
      const tmp = makeTempDir('apm-runbook-')
      try {
        const binDir = path.join(tmp.dir, '.bin')
        const work = path.join(tmp.dir, 'work')
        const setup = `mkdir -p '${binDir}' '${work}'`
        await runScript(setup, tmp.dir, binDir)
        const shim = path.join(binDir, 'apm-server')
        writeFileSync(shim, `#!/bin/sh\nexec '${process.execPath}' '${BIN}' "$@"\n`)
        chmodSync(shim, 0o755)
        const script = shellBlocks(readFileSync(path.join(RUNBOOKS, name), 'utf8')).join('\n')
        const {code, output} = await runScript(script, work, binDir)
        assert.equal(code, 0, `${name} failed:\n${output}`)
      } finally {
        tmp.cleanup()
      }
    })
  }
})
