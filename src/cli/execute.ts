/**
 * Running the CLI: oclif's `execute`, with the CLI's own plugin alone when one of its commands runs
 * (see executeCli), and the parsing of a command id from the arguments.
 */
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {Interfaces, execute as oclifExecute, Plugin} from '@oclif/core'

export interface ExecuteOptions {
  /** import.meta.url of bin/run.js (or its path): oclif finds package.json above it */
  dir: string
  /** the arguments, process.argv.slice(2) by default */
  args?: string[]
}

/** The command id `args` start with, if it is one of `ids` ("keystore list" and "keystore:list" alike). */
export function ownCommandId(args: string[], ids: ReadonlySet<string>): string | undefined {
  // Only as many words as the longest id has: `keystore add` may be given 10,000 key names.
  let depth = 0
  for (const id of ids) depth = Math.max(depth, id.split(':').length)
  const words: string[] = []
  for (const arg of args) {
    if (arg.startsWith('-') || words.length === depth) break
    words.push(arg)
  }

  for (let n = words.length; n > 0; n--) {
    const id = words.slice(0, n).join(':')
    if (ids.has(id)) return id
  }

  return undefined
}

/**
 * oclif's `execute`, loading only what the command needs. A command of this CLI, without --help or
 * --version, is run by a configuration holding the CLI's own plugin alone: loading plugin-help and
 * plugin-autocomplete (their package.json and manifest) is start-up time spent on commands and hooks
 * that are not run. Anything else (help, autocomplete, an unknown command) loads every plugin, as
 * before. User-installed plugins are never looked up: this CLI cannot install any.
 */
export async function executeCli(commandIds: ReadonlySet<string>, {args = process.argv.slice(2), dir}: ExecuteOptions): Promise<unknown> {
  const root = dir.startsWith('file:') ? fileURLToPath(dir) : dir
  const pjson = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as Interfaces.PJSON
  checkEnvironment(pjson)
  // Only before "--": what follows is another command's (keystore run -- CMD --help).
  const dashes = args.indexOf('--')
  const helpOrVersion = (dashes === -1 ? args : args.slice(0, dashes)).includes('--help') || args[0] === '--version'
  const id = helpOrVersion ? undefined : ownCommandId(args, commandIds)
  if (!id) return oclifExecute({args, loadOptions: {pjson, root, userPlugins: false}})
  const plugin = new Plugin({isRoot: true, pjson, root})
  keepOneCommand(plugin, id)
  await plugin.load()
  return oclifExecute({args, loadOptions: {plugins: new Map([[plugin.name, plugin]]), root}})
}

/** package.json `engines.node`: a minimum version. */
export const ENGINE_MINIMUM = /^>=\s*(\d+)\.(\d+)\.(\d+)$/

/**
 * The warnings oclif's index gives at load, which the bundle does not load (src/cli/oclif-core.ts): a
 * current directory that is gone, and a Node older than package.json `engines.node`, a minimum
 * (`>=x.y.z`, held to that form by test/cli/execute.test.ts) compared here without semver.
 */
export function checkEnvironment(pjson: Interfaces.PJSON, nodeVersion = process.versions.node): void {
  try {
    process.cwd()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') process.stderr.write('WARNING: current directory does not exist\n')
  }

  const minimum = ENGINE_MINIMUM.exec(pjson.engines?.node ?? '')
  if (!minimum || ['1', 'true'].includes(process.env.OCLIF_DISABLE_ENGINE_WARNING?.toLowerCase() ?? '')) return
  const have = nodeVersion.split('.').map(Number)
  const want = minimum.slice(1).map(Number)
  const older = have[0] === want[0] ? (have[1] === want[1] ? have[2] < want[2] : have[1] < want[1]) : have[0] < want[0]
  if (older) process.emitWarning(`Node version must be ${pjson.engines!.node} to use this CLI. Current node version: ${nodeVersion}`)
}

/**
 * Makes the plugin hold, of the manifest's commands, only the one being run: nothing on this path lists,
 * suggests or helps with the others. Plugin.load sorts its commands with localeCompare, and the first
 * localeCompare of a process builds an ICU collator, about 10 ms of `keystore list`'s start (CPU time,
 * bench/RESULTS.md); a list of one is never compared. `_manifest` is private in oclif's types (4.14.0,
 * pinned): if a later oclif renames it, this only stops saving the time.
 */
function keepOneCommand(plugin: Plugin, id: string): void {
  const internal = plugin as unknown as {_manifest?: () => Promise<Interfaces.Manifest>}
  const readManifest = internal._manifest
  if (typeof readManifest !== 'function') return
  internal._manifest = async () => {
    const manifest = await readManifest.call(plugin)
    const command = manifest.commands[id]
    return command ? {...manifest, commands: {[id]: command}} : manifest
  }
}
