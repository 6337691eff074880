/**
 * The environment `keystore run` gives a command: this process's, without the keystore's password
 * variables, plus the chosen entries. An environment variable is a C string of text, so a value must be
 * UTF-8 without NUL bytes, and Linux takes at most 128 KiB for one "NAME=value": anything else is
 * refused before the command starts, naming the key. Variables that change how programs load code or
 * whom they trust ({@link changesHowProgramsLoad}) are passed only when asked for by name.
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
 * Variables that decide what code a program, or a program it starts, loads and runs, or whom it trusts
 * (which CA, which proxy, which config file). A keystore entry is data that may come from elsewhere (a
 * synced directory, a bundle), and `keystore run` without --key gives every entry to the command, so an
 * entry of one of these names would be code execution in the command (often run as root), or its TLS
 * and credentials handed to another host: such entries are passed only when named with --key or --env.
 * A denylist cannot be complete (every tool reads variables of its own): it is defense in depth, and a
 * script should name the keys it needs with --key. Exact names, then prefixes (a family open-ended or
 * all of whose members matter). Names are compared upper-cased: http_proxy and npm_config_* are
 * lower-case by custom, and a lower-case twin of a name is read by some tools (Windows by all).
 */
const LOADER_NAMES: ReadonlySet<string> = new Set([
  // The search path for every command a script runs by name.
  'PATH',
  // Shells: bash sources $BASH_ENV and sh/dash $ENV at start; SHELLOPTS/BASHOPTS turn on xtrace, whose
  // PS4 is expanded (command substitution included) before every command; PROMPT_COMMAND is run; IFS
  // splits every unquoted word differently; zsh reads its rc files from $ZDOTDIR; SHELL is what many
  // tools start for a subshell or a hook.
  'BASH_ENV', 'ENV', 'SHELLOPTS', 'BASHOPTS', 'PS4', 'PROMPT_COMMAND', 'IFS', 'ZDOTDIR', 'SHELL',
  // Every tool's rc and config files (.gitconfig, .npmrc, .ssh/config, .kube/config, .aws/config, ...)
  // are found through HOME; TMPDIR chooses where scripts write (and later run) their temporary files.
  'HOME', 'TMPDIR',
  // glibc: character-set converters (gconv modules are shared objects), locale and host lookup files.
  'GCONV_PATH', 'GETCONF_DIR', 'LOCPATH', 'NLSPATH', 'HOSTALIASES', 'RESOLV_HOST_CONF',
  // Node.js: --require/--import/--loader, the module search path; and the TLS trust it starts with
  // (an added CA, or no verification at all, lets another host pose as the one the command talks to).
  'NODE_OPTIONS', 'NODE_PATH', 'NODE_REPL_EXTERNAL_MODULE', 'NODE_EXTRA_CA_CERTS', 'NODE_TLS_REJECT_UNAUTHORIZED',
  // The TLS trust of OpenSSL, curl, Python requests and most other clients: a planted CA file or
  // directory lets another host pose as the one the command talks to.
  'SSL_CERT_FILE', 'SSL_CERT_DIR', 'CURL_CA_BUNDLE', 'REQUESTS_CA_BUNDLE', 'AWS_CA_BUNDLE',
  // TLS session keys written to a file of the entry's choosing: every connection, and the token in it,
  // can be decrypted by whoever reads that file (OpenSSL-based clients, Python, curl, Firefox/Chrome).
  'SSLKEYLOGFILE',
  // glibc tunables change the allocator and security features of every dynamically linked program.
  'GLIBC_TUNABLES',
  // rc files of curl and wget (proxies, CA files, headers, -K config) and GnuPG's home (its keys and
  // trust); Go's toolchain download and checksum database; rustc run through a wrapper command.
  'CURL_HOME', 'WGETRC', 'GNUPGHOME', 'GOTOOLCHAIN', 'GOINSECURE', 'GOSUMDB', 'GONOSUMDB', 'RUSTC_WRAPPER',
  // Proxies: every request (and the token in its Authorization header) goes through the host named.
  'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'FTP_PROXY',
  // Perl, Ruby, PHP, Tcl: libraries and options (-M, -r) loaded before the script.
  'PERLLIB', 'PERL5LIB', 'PERL5OPT', 'PERL5DB', 'RUBYOPT', 'RUBYLIB', 'PHPRC', 'PHP_INI_SCAN_DIR', 'TCLLIBPATH',
  // The JVM reads agent and option strings (-javaagent:) from these.
  'JAVA_TOOL_OPTIONS', '_JAVA_OPTIONS', 'JDK_JAVA_OPTIONS', 'CLASSPATH',
  // Go: GOFLAGS passes -toolexec (a command run for every compile step); GOPROXY chooses who serves the
  // modules it downloads and builds.
  'GOFLAGS', 'GOPROXY',
  // Config files that name commands: kubectl's exec credential plugins, the AWS CLI/SDKs'
  // credential_process, docker's credential helpers.
  'KUBECONFIG', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'DOCKER_CONFIG',
  // Commands that ssh, less, man and many tools run: askpass helpers, pagers, editors, browsers, and
  // less's input preprocessor (LESSOPEN/LESSCLOSE run a command on every file it shows).
  'SSH_ASKPASS', 'EDITOR', 'VISUAL', 'PAGER', 'MANPAGER', 'BROWSER', 'LESSOPEN', 'LESSCLOSE',
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
  // Git: GIT_CONFIG_COUNT/KEY_n/VALUE_n and GIT_CONFIG_PARAMETERS set any config key (core.fsmonitor,
  // core.sshCommand, core.pager, alias.* are commands git runs), GIT_CONFIG_GLOBAL/SYSTEM name the files;
  // GIT_SSH(_COMMAND), GIT_PAGER, GIT_EDITOR, GIT_EXTERNAL_DIFF, GIT_PROXY_COMMAND, GIT_ASKPASS are run;
  // GIT_EXEC_PATH is where its subcommands are found. Too many to list: the whole family.
  'GIT_',
  // OpenSSL: OPENSSL_CONF loads engines and providers (shared objects), OPENSSL_ENGINES/MODULES say
  // where from.
  'OPENSSL_',
  // The XDG base directories: where every tool finds its config (git, pip, systemd --user, ...), data
  // (desktop entries, which name commands) and runtime sockets.
  'XDG_',
  // npm reads any setting from npm_config_NAME (script-shell, node-options, registry, cafile, ...); pip
  // from PIP_NAME (index-url, trusted-host, cert); RubyGems from GEM_HOME/GEM_PATH (gems loaded).
  'NPM_CONFIG_',
  'PIP_',
  'GEM_',
]

/** True for a variable that changes how programs load code or whom they trust (see {@link LOADER_NAMES}). */
export function changesHowProgramsLoad(name: string): boolean {
  const upper = name.toUpperCase()
  return LOADER_NAMES.has(upper) || LOADER_PREFIXES.some((prefix) => upper.startsWith(prefix))
}
