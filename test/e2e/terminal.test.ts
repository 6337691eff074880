/**
 * Every prompt, as a person at a real terminal meets it: the built CLI runs in a tmux pane, the test
 * types keys and reads the screen, then checks the keystore with the non-interactive CLI.
 */
import assert from 'node:assert/strict'
import {chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {BIN, CliResult, makeTempDir, runCli} from '../helpers/cli.js'
import {Terminal} from '../helpers/tmux.js'

const SECRET = 's3cr3t'
const PASSWORD = 'pw-Correct-1'
const NEW_PASSWORD = 'pw-Newer-2'
const KEYSTORE = path.join('data', 'apm-server.keystore')

const OK = 0
const FAILED = 1
const CANCELED = 130

const CANCEL_LINE = 'error: canceled; nothing was changed'

/** A prompt line showing exactly `stars` mask characters and nothing after them. */
function maskedLine(prompt: string, stars: number): RegExp {
  return new RegExp(`${prompt.replaceAll(/[$()*+.?[\\\]^{|}]/g, '\\$&')} \\*{${stars}}$`, 'm')
}

function lines(screen: string): string[] {
  return screen.split('\n')
}

function assertNotShown(screen: string, ...secrets: string[]): void {
  for (const secret of secrets) assert.ok(!screen.includes(secret), `the terminal shows the secret ${JSON.stringify(secret)}:\n${screen}`)
}

function assertLine(screen: string, line: string): void {
  assert.ok(lines(screen).includes(line), `the terminal does not show the line ${JSON.stringify(line)}:\n${screen}`)
}

const withPassword = (password = PASSWORD) => ({APM_SERVER_KEYSTORE_PASSWORD: password})

describe('keystore prompts at a real terminal (tmux)', function () {
  this.timeout(30_000)

  // Keystores built once by the CLI, then copied into each test's directory: CLI runs are the slow part.
  type Fixture = 'plain' | 'protected'
  let fixtures: ReturnType<typeof makeTempDir>
  before(async () => {
    fixtures = makeTempDir('apm-ks-tmux-fixtures-')
    const build = async (name: Fixture, steps: Array<{args: string[]; env?: Record<string, string>; input?: string}>) => {
      mkdirSync(path.join(fixtures.dir, name))
      for (const {args, env, input} of steps) {
        // eslint-disable-next-line no-await-in-loop -- each step builds on the last
        const result = await runCli(args, {cwd: path.join(fixtures.dir, name), env, input})
        assert.equal(result.code, 0, `building the ${name} fixture: ${args.join(' ')}: ${result.stderr}`)
      }
    }

    await Promise.all([
      build('plain', [{args: ['keystore', 'create']}, {args: ['keystore', 'add', 'KEY', '--stdin'], input: 'old-value'}]),
      build('protected', [
        {args: ['keystore', 'create', '--password'], env: withPassword()},
        {args: ['keystore', 'add', 'B_KEY', 'A_KEY', '--stdin'], env: withPassword(), input: 'b\nvalue-a\n'},
      ]),
    ])
  })
  after(() => fixtures?.cleanup())

  let tmp: ReturnType<typeof makeTempDir>
  let cwd: string
  let file: string
  beforeEach(() => {
    tmp = makeTempDir()
    cwd = realpathSync(tmp.dir)
    file = path.join(cwd, KEYSTORE)
  })
  afterEach(async () => {
    await Terminal.killAll()
    tmp.cleanup()
  })

  /** Puts a copy of a fixture keystore where the CLI looks for it: `plain` holds KEY=old-value; `protected` (PASSWORD) holds A_KEY, B_KEY. */
  function install(fixture: Fixture): void {
    mkdirSync(path.dirname(file), {mode: 0o700})
    copyFileSync(path.join(fixtures.dir, fixture, KEYSTORE), file)
    chmodSync(file, 0o600)
  }

  /** `apm-server <args>` in a tmux pane; no password in its environment. */
  function terminal(args: string[]): Promise<Terminal> {
    return Terminal.start({command: [process.execPath, BIN, ...args], cwd})
  }

  /** The same, with stdout going to the file `name` in cwd; stdin and stderr stay on the terminal. */
  function terminalWithStdoutTo(name: string, args: string[]): Promise<Terminal> {
    return Terminal.start({command: ['sh', '-c', 'exec "$@" > "$0"', name, process.execPath, BIN, ...args], cwd})
  }

  function cli(args: string[], env?: Record<string, string>): Promise<CliResult> {
    return runCli(args, {cwd, env})
  }

  /** The keystore's bytes (undefined when absent) and the listing of its directory (no leftovers). */
  function snapshot(): {bytes: Buffer | undefined; dir: string[]} {
    return {
      bytes: existsSync(file) ? readFileSync(file) : undefined,
      dir: existsSync(path.dirname(file)) ? readdirSync(path.dirname(file)).sort() : [],
    }
  }

  /** Waits for a masked prompt, types a secret, checks that only the mask shows, presses Enter. */
  async function typeMasked(term: Terminal, prompt: string, secret: string): Promise<void> {
    await term.waitFor(`? ${prompt}`)
    await term.type(secret)
    assertNotShown(await term.waitFor(maskedLine(prompt, secret.length)), secret)
    await term.press('Enter')
  }

  async function finish(term: Terminal): Promise<{exit: number; screen: string}> {
    const exit = await term.waitForExit()
    return {exit, screen: await term.screen()}
  }

  describe('keystore add KEY', () => {
    it('asks for the value at a masked prompt on stderr and stores exactly what was typed', async () => {
      install('plain')
      const term = await terminalWithStdoutTo('out.txt', ['keystore', 'add', 'NEW_KEY'])
      await term.waitFor('? Value for NEW_KEY:')
      for (const [i, char] of [...SECRET].entries()) {
        // eslint-disable-next-line no-await-in-loop -- one key at a time, as a person types
        await term.type(char)
        // eslint-disable-next-line no-await-in-loop -- the mask grows with each key
        const screen = await term.waitFor(maskedLine('Value for NEW_KEY:', i + 1))
        if (i >= 2) assertNotShown(screen, SECRET.slice(0, i + 1))
      }

      await term.press('Enter')
      const {exit, screen} = await finish(term)
      assert.equal(exit, OK, screen)
      assertLine(screen, '✔ Value for NEW_KEY: ******')
      assertNotShown(screen, SECRET)
      assert.equal(readFileSync(path.join(cwd, 'out.txt'), 'utf8'), `Added NEW_KEY to ${file}.\n`)
      const show = await cli(['keystore', 'show', 'NEW_KEY'])
      assert.equal(show.code, 0, show.stderr)
      assert.equal(show.stdout, SECRET)
    })

    describe('when KEY exists', () => {
      const question = '? Key KEY already exists. Overwrite it? (y/N)'

      it('asks to overwrite; Enter (default No) keeps the old value and exits 1', async () => {
        install('plain')
        const before = snapshot()
        const term = await terminal(['keystore', 'add', 'KEY'])
        await term.waitFor(question)
        await term.press('Enter')
        const {exit, screen} = await finish(term)
        assert.equal(exit, FAILED, screen)
        assertLine(screen, '✔ Key KEY already exists. Overwrite it? No')
        assertLine(screen, 'error: key KEY was kept; nothing was changed')
        assert.ok(!screen.includes('Value for KEY'), `asked for a value after No:\n${screen}`)
        assert.deepEqual(snapshot(), before)
        assert.equal((await cli(['keystore', 'show', 'KEY'])).stdout, 'old-value')
      })

      it('answering y asks for the new value and replaces it; both prompts on stderr', async () => {
        install('plain')
        const term = await terminalWithStdoutTo('out.txt', ['keystore', 'add', 'KEY'])
        await term.waitFor(question)
        await term.press('y', 'Enter')
        await term.waitFor('✔ Key KEY already exists. Overwrite it? Yes')
        await typeMasked(term, 'Value for KEY:', SECRET)
        const {exit, screen} = await finish(term)
        assert.equal(exit, OK, screen)
        assert.equal(readFileSync(path.join(cwd, 'out.txt'), 'utf8'), `Replaced KEY in ${file}.\n`)
        assertNotShown(screen, SECRET)
        assert.equal((await cli(['keystore', 'show', 'KEY'])).stdout, SECRET)
      })
    })

    describe('when there is no keystore', () => {
      const question = () => `? No keystore at ${file}. Create one without a password? (y/N)`

      it('asks to create one; Enter (default No) creates nothing and exits 1', async () => {
        const term = await terminal(['keystore', 'add', 'KEY'])
        await term.waitFor(question())
        await term.press('Enter')
        const {exit, screen} = await finish(term)
        assert.equal(exit, FAILED, screen)
        assertLine(screen, `error: no keystore at ${file}; create one with "apm-server keystore create --password"`)
        assert.ok(!screen.includes('Value for KEY'), `asked for a value after No:\n${screen}`)
        assert.deepEqual(snapshot(), {bytes: undefined, dir: []})
      })

      it('answering y creates an unprotected keystore holding the typed value', async () => {
        const term = await terminal(['keystore', 'add', 'KEY'])
        await term.waitFor(question())
        await term.press('y', 'Enter')
        await typeMasked(term, 'Value for KEY:', SECRET)
        const {exit, screen} = await finish(term)
        assert.equal(exit, OK, screen)
        assertLine(screen, `warning: created ${file} without a password; run "apm-server keystore passwd" to protect it`)
        const [show, hasPasswd] = await Promise.all([cli(['keystore', 'show', 'KEY']), cli(['keystore', 'has-passwd'])])
        assert.equal(show.stdout, SECRET, show.stderr)
        assert.equal(hasPasswd.code, 1)
      })
    })
  })

  describe('keystore create when a keystore exists', () => {
    const question = () => `? A keystore already exists at ${file}. Overwrite it? Its secrets will be lost. (y/N)`

    it('asks; Enter (default No) keeps the file byte for byte and exits 1', async () => {
      install('plain')
      const before = snapshot()
      const term = await terminal(['keystore', 'create'])
      await term.waitFor(question())
      await term.press('Enter')
      const {exit, screen} = await finish(term)
      assert.equal(exit, FAILED, screen)
      assertLine(screen, `error: keystore ${file} was kept; use --force to overwrite it`)
      assert.deepEqual(snapshot(), before)
    })

    it('answering y replaces it with an empty keystore', async () => {
      install('plain')
      const before = snapshot()
      const term = await terminal(['keystore', 'create'])
      await term.waitFor(question())
      await term.press('y', 'Enter')
      const {exit, screen} = await finish(term)
      assert.equal(exit, OK, screen)
      assertLine(screen, `Created native keystore at ${file}.`)
      assert.notDeepEqual(snapshot().bytes, before.bytes)
      const list = await cli(['keystore', 'list'])
      assert.equal(list.code, 0, list.stderr)
      assert.equal(list.stdout, '')
    })
  })

  describe('keystore create --password without a password in the environment', () => {
    it('asks twice (on stderr), asks again after an empty or mismatched password, and creates a protected keystore', async () => {
      const term = await terminalWithStdoutTo('out.txt', ['keystore', 'create', '--password'])
      await term.waitFor('? New keystore password:')
      await term.press('Enter')
      await term.waitFor('The password must not be empty; try again.')
      await typeMasked(term, 'New keystore password:', 'first-try')
      await typeMasked(term, 'Repeat the password:', 'other-try')
      await term.waitFor('The passwords do not match; try again.')
      // a third "New keystore password" prompt (one after the empty answer, one after the mismatch), still open
      await term.waitFor((screen) => screen.split('New keystore password:').length === 4 && screen.includes('? New keystore password:'))
      await typeMasked(term, 'New keystore password:', PASSWORD)
      await typeMasked(term, 'Repeat the password:', PASSWORD)
      const {exit, screen} = await finish(term)
      assert.equal(exit, OK, screen)
      assert.equal(readFileSync(path.join(cwd, 'out.txt'), 'utf8'), `Created native keystore at ${file}, password protected.\n`)
      assertNotShown(screen, 'first-try', 'other-try', PASSWORD)

      const [hasPasswd, list, wrong] = await Promise.all([
        cli(['keystore', 'has-passwd']),
        cli(['keystore', 'list'], withPassword()),
        cli(['keystore', 'list'], withPassword('first-try')),
      ])
      assert.equal(hasPasswd.code, 0, hasPasswd.stderr)
      assert.equal(list.code, 0, list.stderr)
      assert.equal(list.stdout, '')
      assert.equal(wrong.code, 1, 'the mismatched first password opened the keystore')
    })
  })

  describe('a password-protected keystore, no password in the environment', () => {
    it('list asks for the password at a masked prompt; the right one lists the keys', async () => {
      install('protected')
      const term = await terminal(['keystore', 'list'])
      await typeMasked(term, 'Keystore password:', PASSWORD)
      const {exit, screen} = await finish(term)
      assert.equal(exit, OK, screen)
      assert.match(screen, /^A_KEY\nB_KEY$/m)
      assertNotShown(screen, PASSWORD)
    })

    it('a wrong password gives the one decrypt error, exit 1, and changes nothing', async () => {
      install('protected')
      const before = snapshot()
      const term = await terminal(['keystore', 'list'])
      await typeMasked(term, 'Keystore password:', 'not-the-password')
      const {exit, screen} = await finish(term)
      assert.equal(exit, FAILED, screen)
      assertLine(screen, `error: ${file}: wrong password or keystore file tampered with`)
      assert.doesNotMatch(screen, /^[AB]_KEY$/m)
      assertNotShown(screen, 'not-the-password')
      assert.deepEqual(snapshot(), before)
    })

    // A person typing a password must not hold the lock meanwhile (every other writer would wait on them).
    it('sync and import ask for the password before they take the lock', async () => {
      install('protected')
      mkdirSync(path.join(cwd, 'secrets'))
      writeFileSync(path.join(cwd, 'secrets', 'C_KEY'), 'c')
      const recipient = (await cli(['keystore', 'recipient'], withPassword())).stdout.trim()
      const sealed = await runCli(['keystore', 'seal', '--to', recipient, 'D_KEY', '--stdin', '--out', 'd.bundle'], {cwd, input: 'd'})
      assert.equal(sealed.code, 0, sealed.stderr)
      for (const args of [
        ['keystore', 'sync', 'secrets'],
        ['keystore', 'import', 'd.bundle'],
      ]) {
        // eslint-disable-next-line no-await-in-loop -- one terminal at a time
        const term = await terminal(args)
        // eslint-disable-next-line no-await-in-loop -- the prompt is up
        await term.waitFor('? Keystore password:')
        assert.deepEqual(snapshot().dir, ['apm-server.keystore', 'apm-server.keystore.audit'], `${args[1]}: the lock is held while the prompt waits`)
        // eslint-disable-next-line no-await-in-loop -- answer it
        await typeMasked(term, 'Keystore password:', PASSWORD)
        // eslint-disable-next-line no-await-in-loop -- done
        const {exit, screen} = await finish(term)
        assert.equal(exit, OK, screen)
      }

      assert.equal((await cli(['keystore', 'list'], withPassword())).stdout, 'A_KEY\nB_KEY\nC_KEY\nD_KEY\n')
    })

    it('show KEY > file prompts on the terminal and writes only the value to the file', async () => {
      install('protected')
      const term = await terminalWithStdoutTo('value.out', ['keystore', 'show', 'A_KEY'])
      await typeMasked(term, 'Keystore password:', PASSWORD)
      const {exit, screen} = await finish(term)
      assert.equal(exit, OK, screen)
      assert.equal(readFileSync(path.join(cwd, 'value.out'), 'utf8'), 'value-a')
      assertNotShown(screen, PASSWORD, 'value-a')
    })
  })

  describe('keystore passwd', () => {
    it('asks the current password, then the new one twice; afterwards only the new one opens it', async () => {
      install('protected')
      const term = await terminal(['keystore', 'passwd'])
      await typeMasked(term, 'Keystore password:', PASSWORD)
      await typeMasked(term, 'New keystore password:', NEW_PASSWORD)
      await typeMasked(term, 'Repeat the password:', NEW_PASSWORD)
      const {exit, screen} = await finish(term)
      assert.equal(exit, OK, screen)
      assertLine(screen, `Password of ${file} changed.`)
      assertNotShown(screen, PASSWORD, NEW_PASSWORD)

      const [show, old] = await Promise.all([cli(['keystore', 'show', 'A_KEY'], withPassword(NEW_PASSWORD)), cli(['keystore', 'list'], withPassword())])
      assert.equal(show.code, 0, show.stderr)
      assert.equal(show.stdout, 'value-a')
      assert.equal(old.code, 1)
      assert.equal(old.stderr, `error: ${file}: wrong password or keystore file tampered with\n`)
    })

    it('on an unprotected keystore asks only the new password, twice, and protects it', async () => {
      install('plain')
      const term = await terminal(['keystore', 'passwd'])
      await typeMasked(term, 'New keystore password:', NEW_PASSWORD)
      await typeMasked(term, 'Repeat the password:', NEW_PASSWORD)
      const {exit, screen} = await finish(term)
      assert.equal(exit, OK, screen)
      assert.ok(!screen.includes('Keystore password:'), `asked for a current password that does not exist:\n${screen}`)
      assertLine(screen, `Password of ${file} set.`)
      const [hasPasswd, show] = await Promise.all([cli(['keystore', 'has-passwd']), cli(['keystore', 'show', 'KEY'], withPassword(NEW_PASSWORD))])
      assert.equal(hasPasswd.code, 0, hasPasswd.stderr)
      assert.equal(show.stdout, 'old-value', show.stderr)
    })
  })

  describe('Ctrl-C at a prompt exits 130 and leaves the keystore byte for byte as it was', () => {
    const cases: Array<{args: string[]; fixture?: Fixture; name: string; prompt: string; typed?: string}> = [
      {args: ['add', 'NEW_KEY'], fixture: 'plain', name: 'the value prompt, half typed', prompt: 'Value for NEW_KEY:', typed: 'half'},
      {args: ['add', 'KEY'], fixture: 'plain', name: 'the overwrite confirmation', prompt: 'Key KEY already exists. Overwrite it? (y/N)'},
      {args: ['add', 'KEY'], name: 'the create-a-keystore confirmation of add', prompt: 'No keystore at '},
      {args: ['create'], fixture: 'plain', name: 'the create-overwrite confirmation', prompt: 'A keystore already exists at '},
      {args: ['add', 'KEY'], fixture: 'protected', name: 'the password prompt of add', prompt: 'Keystore password:'},
      {args: ['list'], fixture: 'protected', name: 'the password prompt of list, half typed', prompt: 'Keystore password:', typed: 'pw-C'},
      {args: ['passwd'], fixture: 'protected', name: 'the current-password prompt of passwd', prompt: 'Keystore password:'},
      {args: ['create', '--password'], name: 'the new-password prompt of create', prompt: 'New keystore password:'},
      {args: ['passwd'], fixture: 'plain', name: 'the new-password prompt of passwd, half typed', prompt: 'New keystore password:', typed: 'new'},
    ]

    for (const {args, fixture, name, prompt, typed} of cases) {
      it(`at ${name} (keystore ${args.join(' ')})`, async () => {
        if (fixture) install(fixture)
        const before = snapshot()
        const term = await terminal(['keystore', ...args])
        await term.waitFor(`? ${prompt}`)
        if (typed) {
          await term.type(typed)
          await term.waitFor(maskedLine(prompt, typed.length))
        }

        await term.press('C-c')
        const {exit, screen} = await finish(term)
        assert.equal(exit, CANCELED, screen)
        assertLine(screen, CANCEL_LINE)
        assert.deepEqual(snapshot(), before)
      })
    }

    it('at the repeat prompt of create --password, after a first answer', async () => {
      const term = await terminal(['keystore', 'create', '--password'])
      await typeMasked(term, 'New keystore password:', PASSWORD)
      await term.waitFor('? Repeat the password:')
      await term.press('C-c')
      const {exit, screen} = await finish(term)
      assert.equal(exit, CANCELED, screen)
      assertLine(screen, CANCEL_LINE)
      assert.deepEqual(snapshot(), {bytes: undefined, dir: []})
    })
  })
})
