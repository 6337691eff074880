import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {chmodSync, mkdirSync, truncateSync, writeFileSync} from 'node:fs'
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
