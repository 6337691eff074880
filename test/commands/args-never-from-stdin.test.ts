import assert from 'node:assert/strict'

import {makeTempDir, runCli} from '../helpers/cli.js'

/**
 * oclif reads a missing argument from piped stdin. A secret piped to `add --stdin` without a key name
 * became the key name, and the error line printed it ("empty value for key <the token>").
 */
describe('a missing argument is never read from stdin (stdin carries secrets)', () => {
  let tmp: ReturnType<typeof makeTempDir>
  before(async () => {
    tmp = makeTempDir()
    assert.equal((await runCli(['keystore', 'create'], {cwd: tmp.dir})).code, 0)
  })
  after(() => tmp.cleanup())

  const SECRET = 'PipedSecretValue42'
  const cases: Array<[string, string[], string]> = [
    ['add --stdin without a key', ['keystore', 'add', '--stdin'], SECRET],
    ['add --stdin, a secret with a space', ['keystore', 'add', '--stdin'], `${SECRET} with spaces`],
    ['show without a key', ['keystore', 'show'], SECRET],
    ['remove without a key', ['keystore', 'remove'], SECRET],
    ['import without a bundle', ['keystore', 'import'], SECRET],
    ['sync without a directory', ['keystore', 'sync'], SECRET],
  ]
  for (const [label, args, input] of cases) {
    it(label, async () => {
      const run = await runCli(args, {cwd: tmp.dir, input})
      assert.equal(run.code, 2, `${label}: ${run.stderr}`)
      assert.match(run.stderr, /^error: missing 1 required arg: /)
      assert.ok(!run.stderr.includes(SECRET) && !run.stdout.includes(SECRET), `${label}: the piped value was printed: ${run.stderr}`)
    })
  }
})
