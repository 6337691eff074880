/**
 * docs/json.md shows the --json output of every command; this runs each command and checks that what
 * it prints has the documented shape: the same keys, each value of the same JSON type, recursively
 * (arrays by their first element, when both have one).
 */
import assert from 'node:assert/strict'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {makeTempDir, ROOT, runCli} from '../helpers/cli.js'

function documented(): Map<string, unknown> {
  const text = readFileSync(path.join(ROOT, 'docs', 'json.md'), 'utf8')
  const shapes = new Map<string, unknown>()
  for (const match of text.matchAll(/^## (.+)\n[\s\S]*?^```json\n([\s\S]*?)^```$/gm)) shapes.set(match[1].trim(), JSON.parse(match[2]))
  return shapes
}

function kind(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value
}

function assertShape(actual: unknown, expected: unknown, where: string): void {
  assert.equal(kind(actual), kind(expected), `${where}: type`)
  if (Array.isArray(expected) && Array.isArray(actual)) {
    if (expected.length > 0 && actual.length > 0) assertShape(actual[0], expected[0], `${where}[0]`)
  } else if (kind(expected) === 'object') {
    const a = actual as Record<string, unknown>
    const e = expected as Record<string, unknown>
    assert.deepEqual(Object.keys(a).sort(), Object.keys(e).sort(), `${where}: keys`)
    for (const key of Object.keys(e)) assertShape(a[key], e[key], `${where}.${key}`)
  }
}

describe('docs/json.md: the documented --json shapes', () => {
  const shapes = documented()
  let tmp: ReturnType<typeof makeTempDir>
  const env = {APM_SERVER_KEYSTORE_PASSWORD: 'json shapes password'}
  before(() => {
    tmp = makeTempDir()
  })
  after(() => tmp.cleanup())

  async function json(section: string, args: string[], options: {cwd?: string; input?: string; code?: number} = {}): Promise<void> {
    const result = await runCli([...args, '--json'], {cwd: options.cwd ?? tmp.dir, env, input: options.input})
    assert.equal(result.code, options.code ?? 0, `${args.join(' ')}: ${result.stderr}`)
    assert.ok(shapes.has(section), `docs/json.md has a section "${section}"`)
    assertShape(JSON.parse(result.stdout), shapes.get(section), section)
  }

  it('documents every command that takes --json', () => {
    assert.deepEqual(
      [...shapes.keys()].sort(),
      [
        'Errors',
        'agent-config',
        'export config',
        'keystore add',
        'keystore audit',
        'keystore audit --restart',
        'keystore audit --verify',
        'keystore create',
        'keystore has-passwd',
        'keystore import',
        'keystore list',
        'keystore list --long',
        'keystore passwd',
        'keystore recipient',
        'keystore remove',
        'keystore seal',
        'keystore show',
        'keystore sync',
        'keystore upgrade',
        'test config',
        'test output',
        'test config --explain',
      ].sort(),
    )
  })

  it('errors', () => json('Errors', ['keystore', 'list'], {code: 1}))

  it('keystore commands, in the order of a keystore life', async () => {
    await json('keystore create', ['keystore', 'create', '--password'])
    await json('keystore add', ['keystore', 'add', 'APM_SECRET_TOKEN', '--generate', '--expires', '90d'])
    await json('keystore list', ['keystore', 'list'])
    await json('keystore list --long', ['keystore', 'list', '--long'])
    await json('keystore show', ['keystore', 'show', 'APM_SECRET_TOKEN'])
    await json('keystore has-passwd', ['keystore', 'has-passwd'])
    await json('keystore passwd', ['keystore', 'passwd', '--stdin'], {input: `${env.APM_SERVER_KEYSTORE_PASSWORD}\n`})
    await json('keystore upgrade', ['keystore', 'upgrade'])
    await json('keystore audit', ['keystore', 'audit'])
    await json('keystore audit --verify', ['keystore', 'audit', '--verify'])
    await json('keystore audit --restart', ['keystore', 'audit', '--restart'])
  })

  it('sync, recipient, seal, import', async () => {
    mkdirSync(path.join(tmp.dir, 'secrets'))
    writeFileSync(path.join(tmp.dir, 'secrets', 'ES_PASSWORD'), 'changeme')
    await json('keystore sync', ['keystore', 'sync', 'secrets'])
    await json('keystore recipient', ['keystore', 'recipient'])
    const recipient = JSON.parse((await runCli(['keystore', 'recipient', '--json'], {cwd: tmp.dir, env})).stdout).recipient as string
    await json('keystore seal', ['keystore', 'seal', '--to', recipient, 'ES_PASSWORD', '--out', 'fleet.bundle'])
    await json('keystore import', ['keystore', 'import', 'fleet.bundle'])
  })

  it('test config, test output, export config, agent-config, remove', async () => {
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), 'apm-server:\n  host: "127.0.0.1:8200"\n  auth.secret_token: "${APM_SECRET_TOKEN}"\n')
    await json('export config', ['export', 'config'])
    await json('test config --explain', ['test', 'config', '--explain'])
    await json('agent-config', ['agent-config', '--agent', 'go'])
    await json('test output', ['test', 'output', '-E', 'output.redis.hosts=["127.0.0.1:1"]'], {code: 1})
    writeFileSync(path.join(tmp.dir, 'apm-server.yml'), 'apm-server:\n  auth.secret_token: "${NOT_THERE}"\n  foo: 1\n')
    await json('test config', ['test', 'config'], {code: 1})
    await json('keystore remove', ['keystore', 'remove', 'APM_SECRET_TOKEN'])
  })
})
