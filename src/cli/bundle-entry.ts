/**
 * dist/cli.js, the module bin/run.js and oclif (package.json `oclif.commands.target`) load: it loads
 * the bundle of src/cli.ts, dist/cli.cjs and its chunks, through V8 code caches (./compile-cache.ts)
 * and re-exports it. Built as CommonJS (dist/package.json says so): an ES module entry would start
 * Node's ES module loader, about 5 ms of every run (bench/RESULTS.md). Being the one module both
 * load, the bundle is loaded once.
 */
import {fileURLToPath} from 'node:url'

import type * as Cli from '../cli.js'
import {loadBundle} from './compile-cache.js'

const bundle = loadBundle<typeof Cli>(fileURLToPath(new URL('cli.cjs', import.meta.url)), (specifier) => import(specifier))

export const {COMMANDS, execute} = bundle.exports
/** Used by the build (scripts/train-code-cache.js) to write the shipped caches. */
export const {saveCodeCaches} = bundle
