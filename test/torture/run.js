#!/usr/bin/env node
// `npm run torture`: runs the TypeScript torture suite (main.ts) through tsx, passing the arguments on.
import {spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const {error, signal, status} = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'main.ts'), ...process.argv.slice(2)], {
  cwd: path.resolve(here, '..', '..'),
  stdio: 'inherit',
})
if (error) throw error
process.exitCode = status ?? (signal ? 1 : 0)
