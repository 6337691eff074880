/**
 * `keystore run` (issue 16): entries as environment variables (never argv), the output masked also when
 * a value arrives split across writes or lines, --no-mask, exit status and signals as a shell has them.
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {chmodSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {createKeystore, updateKeystore} from '../../src/core/keystore.js'
import {BIN, cleanEnv, CliOptions, makeTempDir, runCli, startChild} from '../helpers/cli.js'
import {assertRun, CHEAP_KDF, defaultKeystore, passwordOf} from '../helpers/keystore.js'

const PASSWORD = 'run password'
const TOKEN = 'tok-Sup3r-s3cret-4242'
const PEM = '-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n-----END KEY-----\n'
const MASK = '<concealed by apm-server>'
const NODE = process.execPath

describe('apm-server keystore run', () => {
  let tmp: ReturnType<typeof makeTempDir>
  let file: string
  const ks = (args: string[], options: Partial<CliOptions> = {}) =>
    runCli(['keystore', 'run', ...args], {cwd: tmp.dir, ...options, env: {APM_SERVER_KEYSTORE_PASSWORD: PASSWORD, ...options.env}})
  /** `node -e script` as the command. */
  const node = (script: string, ...args: string[]) => ['--', NODE, '-e', script, ...args]
  beforeEach(async () => {
    tmp = makeTempDir('apm-run-test-')
    file = defaultKeystore(tmp.dir)
    await createKeystore(file, {format: 'native', kdfParams: CHEAP_KDF, password: Buffer.from(PASSWORD)})
    await updateKeystore(file, {password: passwordOf(PASSWORD)}, (keystore) => {
      keystore.set('APM_SECRET_TOKEN', Buffer.from(TOKEN))
      keystore.set('TLS_KEY', Buffer.from(PEM))
      keystore.set('es.password', Buffer.from('es-Pa55word'))
    })
  })
  afterEach(() => tmp.cleanup())

  it('gives the chosen entries as environment variables, masks them in stdout and stderr, keeps argv as given', async () => {
    const script = 'const e = process.env; console.log(JSON.stringify([e.APM_SECRET_TOKEN, e.ES, e.TLS_KEY, e.APM_SERVER_KEYSTORE_PASSWORD, process.argv.slice(1)])); console.error("err " + e.APM_SECRET_TOKEN)'
    const run = await ks(['--key', 'APM_SECRET_TOKEN', '--env', 'ES=es.password', ...node(script, 'a', '--help', 'a')])
    assertRun(run, {code: 0, stderr: `err ${MASK}\n`})
    assert.deepEqual(JSON.parse(run.stdout.replaceAll(MASK, 'MASKED')), ['MASKED', 'MASKED', null, null, ['a', '--help', 'a']])
    const plain = await ks(['--no-mask', '--key', 'APM_SECRET_TOKEN', ...node('console.log(process.env.APM_SECRET_TOKEN)')])
    assertRun(plain, {code: 0, stderr: '', stdout: `${TOKEN}\n`})
  })

  it('masks a value split across writes at every byte boundary, and a value that spans lines', async () => {
    // The child writes the token in two pieces, split at each boundary, with a pause between them.
    const script = `const t = process.env.APM_SECRET_TOKEN; (async () => { for (let i = 0; i <= t.length; i++) { process.stdout.write('[' + t.slice(0, i)); await new Promise((r) => setTimeout(r, 2)); process.stdout.write(t.slice(i) + ']') } process.stdout.write(process.env.TLS_KEY + 'end') })()`
    const run = await ks(['--key', 'APM_SECRET_TOKEN', '--key', 'TLS_KEY', ...node(script)])
    assertRun(run, {code: 0, stderr: '', stdout: `${`[${MASK}]`.repeat(TOKEN.length + 1)}${MASK}end`})
  })

  it('every entry by default; a key that is not a variable name needs --env, and nothing runs', async () => {
    const marker = path.join(tmp.dir, 'ran')
    const every = await ks(node(`require('fs').writeFileSync(${JSON.stringify(marker)}, 'x')`))
    assertRun(every, {
      code: 2,
      stderr: 'error: key es.password is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*); choose the entries with --key and map this one with --env NAME=es.password\n',
      stdout: '',
    })
    assert.throws(() => readFileSync(marker))
    await updateKeystore(file, {password: passwordOf(PASSWORD)}, (keystore) => keystore.remove(['es.password']))
    const run = await ks(node('console.log(Object.keys(process.env).filter((k) => ["APM_SECRET_TOKEN", "TLS_KEY"].includes(k)).sort().join())'))
    assertRun(run, {code: 0, stderr: '', stdout: 'APM_SECRET_TOKEN,TLS_KEY\n'})
  })

  it('usage errors: no command, a bad --env, a variable twice, a missing key', async () => {
    const cases: Array<[string[], number, string]> = [
      [['--key', 'APM_SECRET_TOKEN'], 2, 'error: no command to run; give it after --: apm-server keystore run [--key KEY] -- CMD [ARGS...]\n'],
      [['--env', 'not-a-name=TLS_KEY', '--', 'true'], 2, 'error: --env "not-a-name=TLS_KEY" is not NAME=KEY with NAME a variable name ([A-Za-z_][A-Za-z0-9_]*); write --env NAME=KEY\n'],
      [['--key', 'TLS_KEY', '--env', 'TLS_KEY=APM_SECRET_TOKEN', '--', 'true'], 2, 'error: the variable TLS_KEY is given twice; give each variable once\n'],
      [['--key', 'NOPE', '--', 'true'], 1, `error: key NOPE not found in ${file}; "apm-server keystore list" shows the keys\n`],
    ]
    for (const [args, code, stderr] of cases) {
      // eslint-disable-next-line no-await-in-loop -- one at a time
      assertRun(await ks(args), {code, stderr, stdout: ''})
    }
  })

  it('entries that change how programs load code (NODE_OPTIONS, LD_PRELOAD, PATH, ...) are passed only when named, with one warning when skipped', async () => {
    const marker = path.join(tmp.dir, 'evil-ran')
    const evil = path.join(tmp.dir, 'evil.cjs')
    writeFileSync(evil, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'x')`)
    const loaders = ['NODE_OPTIONS', 'LD_PRELOAD', 'BASH_ENV', 'PATH', 'PYTHONSTARTUP', 'JAVA_TOOL_OPTIONS']
    await updateKeystore(file, {password: passwordOf(PASSWORD)}, (keystore) => {
      keystore.remove(['es.password'])
      keystore.set('NODE_OPTIONS', Buffer.from(`--require=${evil}`))
      for (const name of loaders.slice(1)) keystore.set(name, Buffer.from('/nonexistent/evil'))
      keystore.set('LDAP_URL', Buffer.from('ldap://x'))
    })
    const names = 'console.log(Object.keys(process.env).filter((k) => ["APM_SECRET_TOKEN", "TLS_KEY", "LDAP_URL", "NODE_OPTIONS", "LD_PRELOAD", "BASH_ENV", "PYTHONSTARTUP", "JAVA_TOOL_OPTIONS"].includes(k)).sort().join())'
    const every = await ks(node(names))
    assertRun(every, {
      code: 0,
      stderr: 'warning: not passed to the command: BASH_ENV, JAVA_TOOL_OPTIONS, LD_PRELOAD, NODE_OPTIONS, PATH, PYTHONSTARTUP: variables that change how programs load code are passed only when named (--key BASH_ENV)\n',
      stdout: 'APM_SECRET_TOKEN,LDAP_URL,TLS_KEY\n',
    })
    assert.throws(() => readFileSync(marker), 'NODE_OPTIONS from the keystore ran code in the command')
    // Named on the command line: passed, as asked (the operator chose it).
    const named = await ks(['--key', 'NODE_OPTIONS', '--env', 'PRE=LD_PRELOAD', '--no-mask', ...node('console.log(process.env.PRE)')])
    assertRun(named, {code: 0, stderr: '', stdout: '/nonexistent/evil\n'})
    assert.equal(readFileSync(marker, 'utf8'), 'x')
  })

  it('GIT_CONFIG_*, HOME, OPENSSL_CONF, proxies and other families that run code or redirect trust are passed only when named (break-new2 2)', async () => {
    // GIT_CONFIG_COUNT/KEY_0/VALUE_0 set core.fsmonitor: a command `git status` runs.
    const repo = path.join(tmp.dir, 'repo')
    execFileSync('git', ['init', '-q', repo])
    const marker = path.join(tmp.dir, 'git-ran')
    const planted: Record<string, string> = {
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'core.fsmonitor',
      GIT_CONFIG_VALUE_0: `echo x > '${marker}'; false`,
      HOME: '/nonexistent/home',
      KUBECONFIG: '/nonexistent/kubeconfig',
      OPENSSL_CONF: '/nonexistent/openssl.cnf',
      XDG_CONFIG_HOME: '/nonexistent/config',
      https_proxy: 'http://attacker.invalid:8080',
      npm_config_script_shell: '/nonexistent/sh',
    }
    await updateKeystore(file, {password: passwordOf(PASSWORD)}, (keystore) => {
      keystore.remove(['es.password'])
      for (const [name, value] of Object.entries(planted)) keystore.set(name, Buffer.from(value))
    })
    const every = await ks(['--no-mask', '--', 'git', '-C', repo, 'status', '--short'])
    assertRun(every, {
      code: 0,
      stderr: 'warning: not passed to the command: GIT_CONFIG_COUNT, GIT_CONFIG_KEY_0, GIT_CONFIG_VALUE_0, HOME, KUBECONFIG, OPENSSL_CONF, XDG_CONFIG_HOME, https_proxy, npm_config_script_shell: variables that change how programs load code are passed only when named (--key GIT_CONFIG_COUNT)\n',
      stdout: '',
    })
    assert.throws(() => readFileSync(marker), 'GIT_CONFIG_* from the keystore ran a command in git status')
    // Named on the command line: passed, as asked, and git runs the hook (so the check above can fail).
    const named = await ks(['--key', 'GIT_CONFIG_COUNT', '--key', 'GIT_CONFIG_KEY_0', '--key', 'GIT_CONFIG_VALUE_0', '--no-mask', '--', 'git', '-C', repo, 'status', '--short'])
    assert.equal(named.code, 0, named.stderr)
    assert.equal(readFileSync(marker, 'utf8'), 'x\n')
  })

  it('refuses values an environment variable cannot hold, before the command runs', async () => {
    await updateKeystore(file, {password: passwordOf(PASSWORD)}, (keystore) => {
      keystore.set('NUL', Buffer.from([0x61, 0, 0x62]))
      keystore.set('BINARY', Buffer.from([0xff, 0xfe]))
      keystore.set('BIG', Buffer.alloc(200_000, 0x61))
    })
    for (const [key, message] of [
      ['NUL', 'the value of NUL holds a NUL byte, which an environment variable cannot'],
      ['BINARY', 'the value of BINARY is not UTF-8 text, which an environment variable must be'],
      ['BIG', 'the value of BIG is 200000 bytes, more than one environment variable may hold (128 KiB)'],
    ]) {
      // eslint-disable-next-line no-await-in-loop -- one at a time
      const run = await ks(['--key', key, '--', 'true'])
      assert.equal(run.code, 1)
      assert.ok(run.stderr.startsWith(`error: ${message}; leave it out with --key`), run.stderr)
    }
  })

  it('exit status as a shell has it: the code, 128+n for a signal, 127 not found, 126 not executable, 141 when the reader quits', async () => {
    const token = ['--key', 'APM_SECRET_TOKEN']
    assert.equal((await ks([...token, ...node('process.exit(3)')])).code, 3)
    assert.equal((await ks([...token, ...node('process.kill(process.pid, "SIGTERM")')])).code, 143)
    assert.equal((await ks([...token, ...node('process.kill(process.pid, "SIGKILL")')])).code, 137)
    assertRun(await ks([...token, '--', 'no-such-command-here']), {code: 127, stderr: 'error: command "no-such-command-here" not found; check its name and PATH\n'})
    const notExecutable = path.join(tmp.dir, 'script.sh')
    writeFileSync(notExecutable, 'echo hi\n')
    chmodSync(notExecutable, 0o600)
    assertRun(await ks([...token, '--', notExecutable]), {code: 126, stderr: `error: command ${JSON.stringify(notExecutable)} cannot be run (EACCES); check that it is an executable file\n`})
    const bash = await startChild('/bin/bash', ['-c', `"${NODE}" "${BIN}" keystore run --key APM_SECRET_TOKEN -- yes | head -1; echo "status \${PIPESTATUS[0]}"`], {
      cwd: tmp.dir,
      env: cleanEnv({APM_SERVER_KEYSTORE_PASSWORD: PASSWORD}),
      timeoutMs: 30_000,
    }).done
    assert.equal(bash.signal, null, 'the command did not end when its reader quit')
    assert.equal(bash.stdout, 'y\nstatus 141\n')
  })

  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    it(`sends ${signal} on to the command and exits as it does`, async () => {
      const script = `process.on(${JSON.stringify(signal)}, () => { console.log('got ${signal}'); process.exit(7) }); console.log('ready'); setInterval(() => {}, 1000)`
      const run = startChild(NODE, [BIN, 'keystore', 'run', '--key', 'APM_SECRET_TOKEN', ...node(script)], {cwd: tmp.dir, env: cleanEnv({APM_SERVER_KEYSTORE_PASSWORD: PASSWORD}), timeoutMs: 30_000})
      let out = ''
      run.child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString()
      })
      while (!out.includes('ready')) {
        // eslint-disable-next-line no-await-in-loop -- waiting for the command to start
        await sleep(20)
      }

      run.child.kill(signal)
      const result = await run.done
      assert.deepEqual([result.code, result.signal, result.stdout], [7, null, `ready\ngot ${signal}\n`])
    })
  }
})
