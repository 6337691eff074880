import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {chmodSync, chownSync, mkdirSync, symlinkSync, truncateSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {getSetting, MAX_CONFIG_BYTES, parseConfigText, resolvePaths} from '../../src/core/settings.js'
import {makeTempDir} from '../helpers/cli.js'
import {assertKeystoreError} from '../helpers/keystore.js'

describe('core/settings', () => {
  describe('getSetting', () => {
    it('reads dotted and nested spellings alike', () => {
      const table: Array<[unknown, string, unknown]> = [
        [{'keystore.path': 'a'}, 'keystore.path', 'a'],
        [{keystore: {path: 'b'}}, 'keystore.path', 'b'],
        [{'a.b': {c: 1}}, 'a.b.c', 1],
        [{a: {'b.c': 2}}, 'a.b.c', 2],
        [{a: {b: {c: 3}}}, 'a.b.c', 3],
        [{a: {b: 1}}, 'a.c', undefined],
        [{a: 'not an object'}, 'a.b', undefined],
        [null, 'a', undefined],
        [{}, 'a', undefined],
      ]
      for (const [settings, name, expected] of table) assert.equal(getSetting(settings, name), expected, `${JSON.stringify(settings)} ${name}`)
    })
  })

  describe('parseConfigText', () => {
    it('parses a mapping; empty text is no settings; strings stay strings', async () => {
      assert.deepEqual(await parseConfigText('', 'f.yml'), {})
      assert.deepEqual(await parseConfigText('# only a comment\n', 'f.yml'), {})
      assert.deepEqual(await parseConfigText('a: yes\nb: on\nc: off\n', 'f.yml'), {a: 'yes', b: 'on', c: 'off'})
    })

    it('table of bad config: ECONFIG naming the file', async () => {
      await assertKeystoreError(parseConfigText('- a\n- b\n', '/x/f.yml'), 'ECONFIG', 'config file /x/f.yml is not a mapping of settings; fix the YAML')
      await assertKeystoreError(parseConfigText('just text', '/x/f.yml'), 'ECONFIG', 'config file /x/f.yml is not a mapping of settings; fix the YAML')
      await assertKeystoreError(parseConfigText('a: 1\na: 2\n', '/x/f.yml'), 'ECONFIG', /^cannot parse config file \/x\/f\.yml: .+; fix the YAML$/)
      await assertKeystoreError(parseConfigText('a: [\n', '/x/f.yml'), 'ECONFIG', /^cannot parse config file \/x\/f\.yml: .+; fix the YAML$/)
    })

    it('a key written twice in one mapping, at any depth, or a key that is not a plain name: ECONFIG naming the lines', async () => {
      const table: Array<[string, string]> = [
        ['a: 1\nb: 2\na: 3\n', 'key a at line 3 is also at line 1 of the same mapping'],
        ['keystore:\n  path: /a\n  path: /b\n', 'key path at line 3 is also at line 2 of the same mapping'],
        ['x:\n  - {k: 1, k: 2}\n', 'key k at line 2 is also at line 2 of the same mapping'],
        ['1: a\n"1": b\n', 'key 1 at line 2 is also at line 1 of the same mapping'],
        ['? [a, b]\n: 1\n', 'the key at line 1 is not a plain name'],
      ]
      for (const [yaml, problem] of table) {
        // eslint-disable-next-line no-await-in-loop -- a table
        await assertKeystoreError(parseConfigText(yaml, '/x/f.yml'), 'ECONFIG', `cannot parse config file /x/f.yml: ${problem}; fix the YAML`)
      }

      // The same key in different mappings is no duplicate.
      assert.deepEqual(await parseConfigText('a: {k: 1}\nb: {k: 2}\n', 'f.yml'), {a: {k: 1}, b: {k: 2}})
    })

    // The break-local review: yaml's uniqueKeys compares each key with every earlier one; 40,000 settings
    // took 13.4 s, 80,000 took 52.7 s. Checked as a ratio of two sizes, not against the clock.
    it('time grows linearly with the number of settings: 8 times the settings take nowhere near 64 times as long', async () => {
      const config = (n: number) => Array.from({length: n}, (_, i) => `x${i}: ${i}\n`).join('')
      const small = config(4000)
      const large = config(32_000)
      const fastest = async (text: string) => {
        let best = Number.POSITIVE_INFINITY
        for (let i = 0; i < 3; i++) {
          const t0 = process.hrtime.bigint()
          // eslint-disable-next-line no-await-in-loop -- timed one after another
          await parseConfigText(text, 'f.yml')
          best = Math.min(best, Number(process.hrtime.bigint() - t0))
        }

        return best
      }

      await parseConfigText(small, 'f.yml') // loads the parser and warms it up
      const ratio = (await fastest(large)) / (await fastest(small))
      assert.ok(ratio < 24, `8x the settings took ${ratio.toFixed(1)}x as long (linear: ~8, quadratic: ~64)`)
      await assertKeystoreError(parseConfigText(`${large}x31999: again\n`, 'f.yml'), 'ECONFIG', /key x31999 at line 32001 is also at line 32000/)
    })
  })

  describe('resolvePaths', () => {
    let tmp: ReturnType<typeof makeTempDir>
    let cwd: string
    beforeEach(() => {
      tmp = makeTempDir()
      cwd = tmp.dir
    })
    afterEach(() => tmp.cleanup())

    it('defaults: home = cwd, data = home/data, keystore = data/apm-server.keystore; no config file is fine', async () => {
      assert.deepEqual(await resolvePaths({}, cwd), {
        config: cwd,
        configExists: false,
        configFile: path.join(cwd, 'apm-server.yml'),
        data: path.join(cwd, 'data'),
        home: cwd,
        keystore: path.join(cwd, 'data', 'apm-server.keystore'),
        settings: undefined,
      })
    })

    it('--path.home moves data, config and keystore; --path.data moves the keystore only', async () => {
      const home = await resolvePaths({'path.home': 'h'}, cwd)
      assert.equal(home.home, path.join(cwd, 'h'))
      assert.equal(home.configFile, path.join(cwd, 'h', 'apm-server.yml'))
      assert.equal(home.keystore, path.join(cwd, 'h', 'data', 'apm-server.keystore'))
      const data = await resolvePaths({'path.data': '/var/lib/x', 'path.home': 'h'}, cwd)
      assert.equal(data.data, '/var/lib/x')
      assert.equal(data.keystore, '/var/lib/x/apm-server.keystore')
      assert.equal(data.home, path.join(cwd, 'h'))
    })

    it('--path.config says where apm-server.yml is', async () => {
      mkdirSync(path.join(cwd, 'conf'))
      writeFileSync(path.join(cwd, 'conf', 'apm-server.yml'), 'path.data: from-config\n')
      const paths = await resolvePaths({'path.config': 'conf'}, cwd)
      assert.equal(paths.configExists, true)
      assert.equal(paths.config, path.join(cwd, 'conf'))
      assert.equal(paths.keystore, path.join(cwd, 'from-config', 'apm-server.keystore'))
    })

    it('keystore.path from -c, with ${path.data}, ${path.home} and ${path.config} expanded', async () => {
      const table: Array<[string, string]> = [
        ['keystore.path: ${path.data}/custom.keystore\npath.data: d\n', path.join(cwd, 'd', 'custom.keystore')],
        ['keystore:\n  path: ${path.home}/k\npath.home: h\n', path.join(cwd, 'h', 'k')],
        ['keystore.path: ${path.config}/k\npath.config: c\n', path.join(cwd, 'c', 'k')],
        ['keystore.path: relative/k\npath.home: h\n', path.join(cwd, 'h', 'relative', 'k')],
        ['keystore.path: /abs/k\n', '/abs/k'],
        ['path.data: d2\n', path.join(cwd, 'd2', 'apm-server.keystore')],
      ]
      for (const [yaml, expected] of table) {
        writeFileSync(path.join(cwd, 'my.yml'), yaml)
        // eslint-disable-next-line no-await-in-loop -- a table
        const paths = await resolvePaths({config: 'my.yml'}, cwd)
        assert.equal(paths.keystore, expected, yaml)
        assert.equal(paths.configFile, path.join(cwd, 'my.yml'))
      }
    })

    it('flags beat the config file', async () => {
      writeFileSync(path.join(cwd, 'apm-server.yml'), 'path.data: from-config\nkeystore.path: ${path.data}/k\n')
      const paths = await resolvePaths({'path.data': 'from-flag'}, cwd)
      assert.equal(paths.keystore, path.join(cwd, 'from-flag', 'k'))
    })

    it('-c naming a missing file is ECONFIG; a missing default config file is not', async () => {
      await assertKeystoreError(
        resolvePaths({config: 'nope.yml'}, cwd),
        'ECONFIG',
        `config file ${path.join(cwd, 'nope.yml')} does not exist; check the -c/--config path`,
      )
      assert.equal((await resolvePaths({}, cwd)).configExists, false)
    })

    it('a config file that is a FIFO, a device or over 4 MiB is ECONFIG at once (every keystore command reads ./apm-server.yml)', async () => {
      const fifo = path.join(cwd, 'apm-server.yml')
      execFileSync('mkfifo', [fifo])
      await assertKeystoreError(resolvePaths({}, cwd), 'ECONFIG', `config file ${fifo} is a FIFO, not a regular file; point -c/--config at a file`)
      await assertKeystoreError(resolvePaths({config: '/dev/zero'}, cwd), 'ECONFIG', 'config file /dev/zero is a character device, not a regular file; point -c/--config at a file')
      const big = path.join(cwd, 'big.yml')
      writeFileSync(big, '')
      truncateSync(big, MAX_CONFIG_BYTES + 1)
      await assertKeystoreError(resolvePaths({config: 'big.yml'}, cwd), 'ECONFIG', `config file ${big} is over ${MAX_CONFIG_BYTES} bytes; it is not an apm-server.yml, point -c/--config at the right file`)
    })

    // The break-local review: root in a directory others can write read their apm-server.yml, whose
    // keystore.path named a file of root's that `keystore create --force` then replaced.
    it('strict perms: a config file group or others can write, or another user owns, is refused (EPERMS) naming the fix; strictPerms false reads it', async function () {
      const file = path.join(cwd, 'apm-server.yml')
      writeFileSync(file, 'keystore.path: /etc/victim\n')
      chmodSync(file, 0o666)
      await assertKeystoreError(
        resolvePaths({}, cwd),
        'EPERMS',
        `config file ${file} has mode 0666, writable by group or others; run "chmod go-w ${file}" (--strict.perms=false disables this check)`,
      )
      assert.equal((await resolvePaths({}, cwd, {strictPerms: false})).keystore, '/etc/victim')
      chmodSync(file, 0o644)
      assert.equal((await resolvePaths({}, cwd)).keystore, '/etc/victim')
      if (process.getuid?.() !== 0) this.skip()
      chownSync(file, 54_321, 54_321)
      await assertKeystoreError(
        resolvePaths({config: 'apm-server.yml'}, cwd),
        'EPERMS',
        `config file ${file} is owned by uid 54321, not by the current user (uid 0) or root, and a config file decides where the keystore is and what is written where; check its contents, then run "chown 0 ${file}" (--strict.perms=false disables this check)`,
      )
    })

    it('strict perms: a config file in a directory others can write (not sticky), or reached through such a link, is refused; in a sticky one it is read', async () => {
      const shared = path.join(cwd, 'shared')
      mkdirSync(shared)
      chmodSync(shared, 0o777)
      const file = path.join(shared, 'apm-server.yml')
      writeFileSync(file, 'path.data: d\n', {mode: 0o644})
      await assertKeystoreError(
        resolvePaths({}, shared),
        'EPERMS',
        `directory ${shared} of config file ${file} has mode 0777, writable by group or others, who could replace the config file; run "chmod go-w ${shared}" (--strict.perms=false disables this check)`,
      )
      const link = path.join(cwd, 'linked.yml')
      symlinkSync(file, link)
      await assertKeystoreError(resolvePaths({config: 'linked.yml'}, cwd), 'EPERMS', new RegExp(`^directory ${shared} of config file ${link} has mode 0777`))
      chmodSync(shared, 0o1777)
      assert.equal((await resolvePaths({}, shared)).data, path.join(shared, 'd'))
    })

    it('a keystore.path that is not a string, and an unreadable config, are ECONFIG', async () => {
      writeFileSync(path.join(cwd, 'apm-server.yml'), 'keystore.path: [1, 2]\n')
      await assertKeystoreError(resolvePaths({}, cwd), 'ECONFIG', `setting keystore.path in ${path.join(cwd, 'apm-server.yml')} must be a string path`)
      const dir = path.join(cwd, 'dir.yml')
      mkdirSync(dir)
      await assertKeystoreError(resolvePaths({config: 'dir.yml'}, cwd), 'ECONFIG', `config file ${dir} is a directory, not a regular file; point -c/--config at a file`)
      if (process.getuid?.() !== 0) {
        writeFileSync(path.join(cwd, 'secret.yml'), 'a: 1\n')
        chmodSync(path.join(cwd, 'secret.yml'), 0)
        await assertKeystoreError(resolvePaths({config: 'secret.yml'}, cwd), 'ECONFIG', /EACCES/)
      }
    })
  })
})
