/**
 * The environment `keystore run` gives a command: this process's, without the keystore's password
 * variables, plus the chosen entries. An environment variable is a C string of text, so a value must be
 * UTF-8 without NUL bytes, and Linux takes at most 128 KiB for one "NAME=value": anything else is
 * refused before the command starts, naming the key. Variables that change how programs load code
 * ({@link changesHowProgramsLoad}) are passed only when asked for by name.
 */
import {KeystoreError} from '../core/errors.js'
import {PASSWORD_ENV, PASSWORD_FILE_ENV} from '../core/password-env.js'

/** MAX_ARG_STRLEN on Linux: one "NAME=value" string, with its terminating NUL. */
const MAX_VARIABLE_BYTES = 128 * 1024

export function childEnvironment(parent: NodeJS.ProcessEnv, injected: ReadonlyMap<string, Buffer>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {...parent}
  // The key to every entry, not one of them: the command gets what it was given, nothing more.
  delete env[PASSWORD_ENV]
  delete env[PASSWORD_FILE_ENV]
  const decoder = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})
  for (const [name, value] of injected) {
    if (value.includes(0)) throw new KeystoreError('EBADVALUE', `the value of ${name} holds a NUL byte, which an environment variable cannot; leave it out with --key, or read it with "keystore show"`)
    let text: string
    try {
      text = decoder.decode(value)
    } catch {
      throw new KeystoreError('EBADVALUE', `the value of ${name} is not UTF-8 text, which an environment variable must be; leave it out with --key, or read it with "keystore show"`)
    }

    if (name.length + 2 + value.length > MAX_VARIABLE_BYTES) {
      throw new KeystoreError('ELIMITS', `the value of ${name} is ${value.length} bytes, more than one environment variable may hold (128 KiB); leave it out with --key, or read it with "keystore show"`)
    }

    env[name] = text
  }

  return env
}

/**
 * Variables that decide what code a program, or a program it starts, loads and runs. A keystore entry
 * is data that may come from elsewhere (a synced directory, a bundle), and `keystore run` without
 * --key gives every entry to the command, so an entry of one of these names would be code execution in
 * the command (often run as root): such entries are passed only when named with --key or --env.
 * Exact names, then prefixes (a family whose members all load code).
 */
const LOADER_NAMES: ReadonlySet<string> = new Set([
  // The search path for every command a script runs by name.
  'PATH',
  // Shells: bash sources $BASH_ENV and sh/dash $ENV at start; SHELLOPTS/BASHOPTS turn on xtrace, whose
  // PS4 is expanded (command substitution included) before every command; PROMPT_COMMAND is run.
  'BASH_ENV', 'ENV', 'SHELLOPTS', 'BASHOPTS', 'PS4', 'PROMPT_COMMAND',
  // glibc: character-set converters (gconv modules are shared objects), locale and host lookup files.
  'GCONV_PATH', 'GETCONF_DIR', 'LOCPATH', 'NLSPATH', 'HOSTALIASES', 'RESOLV_HOST_CONF',
  // Node.js: --require/--import/--loader, the module search path; and the TLS trust it starts with
  // (an added CA, or no verification at all, lets another host pose as the one the command talks to).
  'NODE_OPTIONS', 'NODE_PATH', 'NODE_REPL_EXTERNAL_MODULE', 'NODE_EXTRA_CA_CERTS', 'NODE_TLS_REJECT_UNAUTHORIZED',
  // Perl, Ruby, PHP, Tcl: libraries and options (-M, -r) loaded before the script.
  'PERLLIB', 'PERL5LIB', 'PERL5OPT', 'PERL5DB', 'RUBYOPT', 'RUBYLIB', 'PHPRC', 'PHP_INI_SCAN_DIR', 'TCLLIBPATH',
  // The JVM reads agent and option strings (-javaagent:) from these.
  'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS', 'CLASSPATH',
  // Git, ssh and many tools run these as commands.
  'GIT_SSH', 'GIT_SSH_COMMAND', 'GIT_EXEC_PATH', 'GIT_ASKPASS', 'SSH_ASKPASS', 'EDITOR', 'VISUAL', 'PAGER',
])

const LOADER_PREFIXES: readonly string[] = [
  // The dynamic linkers: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT (glibc); DYLD_INSERT_LIBRARIES (macOS).
  'LD_',
  'DYLD_',
  // Python: PYTHONPATH, PYTHONSTARTUP, PYTHONHOME, PYTHONINSPECT, ...
  'PYTHON',
  // Lua: LUA_INIT runs code, LUA_PATH/LUA_CPATH load it.
  'LUA_',
  // Exported bash functions are imported from BASH_FUNC_name%% (no key holds a %, but a prefix costs nothing).
  'BASH_FUNC_',
]

/** True for a variable that changes how programs load code (see {@link LOADER_NAMES}). */
export function changesHowProgramsLoad(name: string): boolean {
  return LOADER_NAMES.has(name) || LOADER_PREFIXES.some((prefix) => name.startsWith(prefix))
}
