#!/usr/bin/env node
// Placeholder demo until the server lands: a keystore walkthrough in a temp directory.
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'run.js')
const dir = mkdtempSync(path.join(os.tmpdir(), 'apm-demo-'))
const env = {...process.env, APM_SERVER_KEYSTORE_PASSWORD: 'demo-password'}
const run = (args, input) => {
  console.log(`$ apm-server ${args.join(' ')}`)
  process.stdout.write(execFileSync(process.execPath, [bin, ...args], {cwd: dir, env, input}))
}
try {
  run(['keystore', 'create', '--password'])
  run(['keystore', 'add', 'APM_SECRET_TOKEN', '--generate'])
  run(['keystore', 'list'])
} finally {
  rmSync(dir, {force: true, recursive: true})
}
