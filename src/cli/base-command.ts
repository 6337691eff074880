/**
 * The base class of every command: the global flags, the keystore's location and open options from
 * them, human output that --json silences, and the one place where errors become a message and an exit code.
 */
import {Command, Errors, Flags, Interfaces} from '@oclif/core'

import {ErrorCode, KeystoreError} from '../core/errors.js'
import {clockOf, parseExpires} from '../core/expiry.js'
import {OpenOptions, UpdateOptions} from '../core/keystore.js'
import {passwordSupplied, unusedPasswordProblem} from '../core/password-env.js'
import {resolvePaths, ResolvedPaths} from '../core/settings.js'
import {readPassword} from './secrets.js'

/** Exit codes, documented in the README. */
export const EXIT = Object.freeze({canceled: 130, error: 1, ok: 0, usage: 2})

const USAGE_CODES = new Set<ErrorCode>(['EBADKEY', 'EBADRECIPIENT', 'EUSAGE'])

const strictPermsFlag = Flags.custom<boolean>({
  description: 'refuse a keystore (and, in keystore commands, a config file) that another user could change: its owner or mode, or a directory or link on the way (also BEAT_STRICT_PERMS)',
  helpValue: 'true|false',
  options: ['true', 'false'],
  async parse(input) {
    return input === 'true'
  },
})

/** --expires of the commands that store values (add, sync, import). */
export const expiresFlag = Flags.string({
  description: 'when the stored values expire: a duration (90d, 12w, 36h) or a date (2027-03-01, 2027-03-01T12:00:00Z); test config and run warn 14 days ahead',
  helpValue: '90d|DATE',
})

/**
 * oclif reads a missing argument from piped stdin. Here stdin carries secrets (`add --stdin`, `seal
 * --stdin`) and bundles: `printf "$TOKEN" | apm-server keystore add --stdin` without a key name made the
 * token the key name, echoed in the error. Arguments only ever come from argv.
 */
function withoutStdin(args: Interfaces.ArgInput | undefined): Interfaces.ArgInput {
  return Object.fromEntries(Object.entries(args ?? {}).map(([name, arg]) => [name, {...arg, ignoreStdin: true}]))
}

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>

/**
 * Global flags, path resolution, and the one place where errors become a message and an exit code.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static baseFlags = {
    config: Flags.string({char: 'c', description: 'configuration file [default: ${path.config}/apm-server.yml]', helpGroup: 'GLOBAL'}),
    debug: Flags.boolean({description: 'print stack traces of errors (also DEBUG=1)', helpGroup: 'GLOBAL'}),
    'path.config': Flags.string({description: 'configuration path [default: ${path.home}]', helpGroup: 'GLOBAL'}),
    'path.data': Flags.string({description: 'data path, where the keystore lives [default: ${path.home}/data]', helpGroup: 'GLOBAL'}),
    'path.home': Flags.string({description: 'home path [default: the current directory]', helpGroup: 'GLOBAL'}),
    'strict.perms': strictPermsFlag({helpGroup: 'GLOBAL'}),
  }

  static enableJsonFlag = true

  protected flags!: BaseFlags<T>
  protected args!: Interfaces.InferredArgs<T['args']>
  /** positional arguments, for commands that take any number of them */
  protected positionals: string[] = []

  public async init(): Promise<void> {
    await super.init()
    const {args, argv, flags} = await this.parse({
      args: withoutStdin(this.ctor.args),
      baseFlags: (super.ctor as unknown as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      flags: this.ctor.flags,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as Interfaces.InferredArgs<T['args']>
    this.positionals = argv as string[]
  }

  /** Keystore location from the flags and the config file (judged under strict perms). */
  protected async paths(): Promise<ResolvedPaths> {
    return resolvePaths(this.flags, process.cwd(), {strictPerms: this.strictPerms})
  }

  protected get strictPerms(): boolean {
    if (this.flags['strict.perms'] !== undefined) return this.flags['strict.perms']
    return process.env.BEAT_STRICT_PERMS?.toLowerCase() !== 'false'
  }

  /**
   * Options for opening a keystore: permission check, the password sources (asked lazily), and one
   * warning when the environment supplies a password the keystore does not have.
   */
  protected openOptions(): OpenOptions {
    let password: Promise<Buffer> | undefined
    let warned = false
    return {
      onUnprotected: passwordSupplied(process.env)
        ? (file) => {
            if (!warned) this.note(unusedPasswordProblem(file))
            warned = true
          }
        : undefined,
      password: () => {
        password ??= readPassword()
        return password
      },
      strictPerms: this.strictPerms,
    }
  }

  /**
   * Options for a command that changes the keystore: the change, or its refusal once the keystore is
   * locked, is recorded in the audit trail, naming `keys` when it is refused.
   */
  protected writeOptions(keys?: readonly string[]): UpdateOptions {
    return {...this.openOptions(), audit: {command: (this.id ?? 'keystore').replaceAll(':', ' '), ...(keys ? {keys} : {})}}
  }

  /** --expires as ms since the epoch (undefined without it), judged by the clock tests may fix. */
  protected expiresAt(text: string | undefined): number | undefined {
    if (text === undefined) return undefined
    const clock = clockOf(process.env)
    if (clock.warning) this.note(clock.warning)
    return parseExpires(text, clock.now)
  }

  /** Human output, suppressed under --json. */
  protected say(line: string): void {
    if (!this.jsonEnabled()) process.stdout.write(`${line}\n`)
  }

  /** One warning line on stderr. */
  protected note(message: string): void {
    process.stderr.write(`warning: ${message}\n`)
  }

  protected async catch(error: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    if (error instanceof Errors.ExitError) throw error
    let code: string
    let exit: number
    let message: string
    if (error instanceof KeystoreError) {
      code = error.code
      exit = error.code === 'ECANCELED' ? EXIT.canceled : USAGE_CODES.has(error.code) ? EXIT.usage : EXIT.error
      message = error.message
    } else if (error instanceof Errors.CLIError) {
      code = 'EUSAGE'
      exit = error.oclif?.exit ?? EXIT.usage
      message = error.message.replace(/\nSee more help with --help$/, '').replaceAll('\n', ' ').replaceAll(/\s+/g, ' ').trim()
      message = `${message.charAt(0).toLowerCase()}${message.slice(1)}; see --help`
    } else {
      code = 'EINTERNAL'
      exit = EXIT.error
      message = `unexpected error: ${error.message}; rerun with --debug and report it`
    }

    if (this.jsonEnabled?.()) process.stdout.write(`${JSON.stringify({error: {code, message}})}\n`)
    process.stderr.write(`error: ${message}\n`)
    if (this.debugEnabled()) process.stderr.write(`${error.stack}\n`)
    this.exit(exit)
  }

  private debugEnabled(): boolean {
    return Boolean(this.argv.includes('--debug') || (process.env.DEBUG && process.env.DEBUG !== '0'))
  }
}
