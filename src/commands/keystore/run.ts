/**
 * `apm-server keystore run [--key KEY]... [--env NAME=KEY]... [--no-mask] -- CMD [ARGS...]`: runs a command with keystore entries as environment variables, their values masked in its output.
 */
import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {assertValidKeyName} from '../../core/entries.js'
import {KeystoreError} from '../../core/errors.js'
import {openKeystore} from '../../core/keystore.js'

export default class Run extends BaseCommand<typeof Run> {
  static summary = 'Run a command with keystore entries as environment variables, their values masked in its output.'
  static description = `Every entry (or those chosen with --key and --env) becomes an environment variable of the command: its name is the key's, or the NAME of --env NAME=KEY, which a key that is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*) needs. Values never pass through arguments. The keystore password variables are not passed on. Entries whose names change how programs load code or whom they trust (LD_*, DYLD_*, NODE_OPTIONS, BASH_ENV, PATH, HOME, PYTHON*, GIT_*, OPENSSL_*, XDG_*, npm_config_*, KUBECONFIG, SSL_CERT_FILE, HTTPS_PROXY, PAGER, ...) are passed only when named with --key or --env, with a warning naming those skipped. That list is defense in depth and cannot name every tool's variables: a script should name the keys it needs with --key.

The command's stdout and stderr pass through with every injected value replaced by "<concealed by apm-server>", also when a value is split across writes or lines; --no-mask turns this off and gives the command this terminal itself. stdin is the command's. SIGINT, SIGTERM and SIGHUP are sent on to it; the exit status is the command's, or 128 + the signal number when a signal ended it, as a shell reports it (127: command not found, 126: not executable).`

  static examples = [
    {command: '<%= config.bin %> <%= command.id %> -- ./deploy.sh', description: 'Every entry as a variable, masked in the output'},
    {command: '<%= config.bin %> <%= command.id %> --key ES_PASSWORD -- ./reindex.sh', description: 'One entry, for a script that reads $ES_PASSWORD (never put it in an argument: argv is visible to every user)'},
    {command: '<%= config.bin %> <%= command.id %> --env TOKEN=apm.secret-token -- ./smoke-test.sh', description: 'A key that is not a variable name, as $TOKEN'},
  ]

  static strict = false
  static enableJsonFlag = false
  static usage = '<%= command.id %> [--key KEY]... [--env NAME=KEY]... [--no-mask] -- CMD [ARGS...]'
  static flags = {
    env: Flags.string({description: 'give the entry KEY to the command as the variable NAME (repeat for more)', helpValue: 'NAME=KEY', multiple: true, multipleNonGreedy: true}),
    key: Flags.string({description: 'give this entry to the command, under its own name (repeat for more) [default: every entry]', multiple: true, multipleNonGreedy: true}),
    mask: Flags.boolean({allowNo: true, default: true, description: 'replace the values in the command\'s stdout and stderr with a mask (--no-mask: pass them through untouched)'}),
  }

  async run(): Promise<void> {
    const dashes = this.argv.indexOf('--')
    const [command, ...args] = dashes === -1 ? [] : this.argv.slice(dashes + 1)
    if (command === undefined) throw new KeystoreError('EUSAGE', 'no command to run; give it after --: apm-server keystore run [--key KEY] -- CMD [ARGS...]')
    const wanted = chooseVariables(this.flags.key ?? [], this.flags.env ?? [])
    const {keystore: file} = await this.paths()
    const keystore = await openKeystore(file, this.openOptions())
    // Loaded here, not at the top: every command's module is loaded at start-up, and keystore list must not pay for this.
    const {changesHowProgramsLoad, childEnvironment, runChild} = await import('../../cli/run-child.js')
    const every = keystore.keys().map((key) => [key, key] as const)
    const skipped = wanted ? [] : every.filter(([name]) => changesHowProgramsLoad(name)).map(([name]) => name)
    if (skipped.length > 0) this.note(`not passed to the command: ${skipped.join(', ')}: variables that change how programs load code are passed only when named (--key ${skipped[0]})`)
    const injected = new Map<string, Buffer>()
    for (const [name, key] of wanted ?? every.filter(([name]) => !skipped.includes(name))) injected.set(checkName(name, key, wanted === undefined), keystore.get(key))
    const env = childEnvironment(process.env, injected)
    const short = [...injected].filter(([, value]) => value.length < 4).map(([name]) => name)
    if (this.flags.mask && short.length > 0) this.note(`the values of ${short.join(', ')} are shorter than 4 bytes: every occurrence of those bytes in the output is concealed too`)
    try {
      const status = await runChild({args, command, conceal: this.flags.mask ? [...injected.values()] : undefined, env})
      if (status !== 0) this.exit(status)
    } catch (error) {
      const {exitStatus} = error as {exitStatus?: number}
      if (exitStatus === undefined) throw error
      process.stderr.write(`error: ${(error as Error).message}\n`)
      this.exit(exitStatus)
    }
  }
}

const VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/

/** The variables asked for by --key and --env (name -> key), or undefined for every entry. */
function chooseVariables(keys: readonly string[], mappings: readonly string[]): Array<[string, string]> | undefined {
  if (keys.length === 0 && mappings.length === 0) return undefined
  const chosen: Array<[string, string]> = keys.map((key) => [key, key])
  for (const mapping of mappings) {
    const at = mapping.indexOf('=')
    if (at === -1 || !VARIABLE.test(mapping.slice(0, at))) {
      throw new KeystoreError('EUSAGE', `--env ${JSON.stringify(mapping.slice(0, 80))} is not NAME=KEY with NAME a variable name ([A-Za-z_][A-Za-z0-9_]*); write --env NAME=KEY`)
    }

    chosen.push([mapping.slice(0, at), mapping.slice(at + 1)])
  }

  for (const [, key] of chosen) assertValidKeyName(key)
  const names = chosen.map(([name]) => name)
  const twice = names.find((name, i) => names.indexOf(name) !== i)
  if (twice) throw new KeystoreError('EUSAGE', `the variable ${twice} is given twice; give each variable once`)
  return chosen
}

function checkName(name: string, key: string, every: boolean): string {
  if (VARIABLE.test(name)) return name
  const how = every ? 'choose the entries with --key and map this one' : 'map it'
  throw new KeystoreError('EUSAGE', `key ${key} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*); ${how} with --env NAME=${key}`)
}
