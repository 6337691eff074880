/**
 * dist/cli.js, the module bin/run.js and oclif (package.json `oclif.commands.target`) import: it loads
 * the CommonJS bundle of src/cli.ts, dist/cli.cjs, through a V8 code cache (./compile-cache.ts) and
 * re-exports it. Being the one ES module both import, the bundle is loaded once.
 */
import {fileURLToPath} from 'node:url'

import type * as Cli from '../cli.js'
import {loadBundle} from './compile-cache.js'

const bundle = loadBundle<typeof Cli>(fileURLToPath(new URL('cli.cjs', import.meta.url)), (specifier) => import(specifier))

export const {COMMANDS, execute} = bundle.exports
/** Used by the build (scripts/train-code-cache.js) to write dist/cli.cjs.cache. */
export const {saveCodeCache} = bundle
