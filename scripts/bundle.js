#!/usr/bin/env node
/**
 * Bundles the CLI (src/cli.ts, with @oclif/core and every command) into dist/cli.js. Modules the
 * commands import lazily become separate chunks, loaded only when used. Left out of the bundle:
 * argon2 (a native addon), pino, its ECS formatter and pino-pretty (pino resolves worker files by path), the prompt
 * library (loaded only when prompting) and the TypeScript tooling oclif loads only in development.
 */
import {readdirSync, rmSync} from 'node:fs'
import path from 'node:path'

import {build} from 'esbuild'

const result = await build({
  // CommonJS dependencies inside an ES module bundle still expect require, __filename and __dirname.
  banner: {
    js: [
      "import {createRequire as __createRequire} from 'node:module';",
      "import {fileURLToPath as __fileURLToPath} from 'node:url';",
      'const require = __createRequire(import.meta.url);',
      'const __filename = __fileURLToPath(import.meta.url);',
      "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
    ].join(' '),
  },
  bundle: true,
  entryNames: '[name]',
  entryPoints: ['src/cli.ts'],
  external: ['argon2', 'pino', 'pino-pretty', '@elastic/ecs-pino-format', '@inquirer/prompts', 'typescript', 'ts-node'],
  format: 'esm',
  logLevel: 'warning',
  metafile: true,
  outdir: 'dist',
  platform: 'node',
  sourcemap: 'linked',
  splitting: true,
  target: 'node20',
})

// Chunk names carry content hashes, so old chunks would pile up. Removing them after the new files are
// written (rather than emptying dist/ first) keeps a CLI that is running meanwhile working.
const written = new Set(Object.keys(result.metafile.outputs).map((file) => path.resolve(file)))
for (const name of readdirSync('dist')) {
  const file = path.resolve('dist', name)
  if (!written.has(file)) rmSync(file, {force: true, recursive: true})
}
