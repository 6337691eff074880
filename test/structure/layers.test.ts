/**
 * The layers of src/ and which way imports go (docs/architecture.md): commands -> cli -> core and
 * commands -> server -> core, never back; core is a library without oclif or HTTP; the server never
 * imports oclif; and a command module never loads the server at start-up (every command's module is
 * loaded by every CLI run, so `keystore list` would pay for it): it may import the server's types, and
 * load its modules with import() when it runs. Every module opens with a comment saying what it is.
 * Imports are read with the TypeScript parser, dynamic import() and type-only imports told apart.
 */
import assert from 'node:assert/strict'
import {readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'

import ts from 'typescript'

import {ROOT} from '../helpers/cli.js'

type Layer = 'cli' | 'commands' | 'core' | 'entry' | 'server'

interface Import {
  from: string
  specifier: string
  /** erased at build time: `import type`, `export type`, or only types named */
  typeOnly: boolean
  dynamic: boolean
}

const SRC = path.join(ROOT, 'src')

/** The layers each layer may import. The entry point (src/cli.ts, the command map) sits above them all. */
const ALLOWED: Record<Layer, readonly Layer[]> = {
  cli: ['cli', 'core'],
  commands: ['cli', 'core', 'server'],
  core: ['core'],
  entry: ['cli', 'commands', 'core', 'entry', 'server'],
  server: ['core', 'server'],
}

/** Packages a layer must not import, and why. */
const FORBIDDEN_PACKAGES: Partial<Record<Layer, RegExp>> = {
  // A library a stranger could embed: no CLI framework, no HTTP.
  core: /^(@oclif\/|node:(http|https|http2|net|tls)$)/,
  server: /^@oclif\//,
}

function layerOf(file: string): Layer {
  const relative = path.relative(SRC, file)
  // dist/cli.js, the module that loads the bundle of src/cli.ts: part of the entry point.
  if (relative === 'cli.ts' || relative === path.join('cli', 'bundle-entry.ts')) return 'entry'
  return relative.split(path.sep)[0] as Layer
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, {recursive: true, withFileTypes: true})
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort()
}

function importsOf(file: string): Import[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const found: Import[] = []
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push({dynamic: false, from: file, specifier: node.moduleSpecifier.text, typeOnly: typeOnly(node)})
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && ts.isStringLiteral(node.arguments[0])) {
      found.push({dynamic: true, from: file, specifier: node.arguments[0].text, typeOnly: false})
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push({dynamic: false, from: file, specifier: node.argument.literal.text, typeOnly: true})
    }

    ts.forEachChild(node, visit)
  }

  visit(source)
  return found
}

function typeOnly(node: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(node)) return node.isTypeOnly
  const clause = node.importClause
  if (!clause) return false // a side-effect import
  if (clause.isTypeOnly) return true
  if (clause.name) return false
  const bindings = clause.namedBindings
  return bindings !== undefined && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((element) => element.isTypeOnly)
}

/** The file a relative import names, or undefined for a package. */
function target(entry: Import): string | undefined {
  if (!entry.specifier.startsWith('.')) return undefined
  return path.resolve(path.dirname(entry.from), entry.specifier.replace(/\.js$/, '.ts'))
}

/** Every breach of the rules among `files`, one line each. */
function layerBreaches(files: string[], imports: (file: string) => Import[] = importsOf): string[] {
  const breaches: string[] = []
  for (const file of files) {
    const from = layerOf(file)
    const where = path.relative(ROOT, file)
    for (const entry of imports(file)) {
      const to = target(entry)
      if (to === undefined) {
        if (FORBIDDEN_PACKAGES[from]?.test(entry.specifier)) breaches.push(`${where}: the ${from} layer imports ${entry.specifier}`)
        continue
      }

      const layer = layerOf(to)
      if (!ALLOWED[from].includes(layer)) breaches.push(`${where}: the ${from} layer imports ${entry.specifier} (${layer})`)
      else if (from === 'commands' && layer === 'server' && !entry.typeOnly && !entry.dynamic) {
        breaches.push(`${where}: imports ${entry.specifier} at start-up; load the server with import() in run(), or import its types only`)
      }
    }
  }

  return breaches
}

describe('structure: layers and module comments', () => {
  const files = sourceFiles(SRC)

  it('finds the modules of every layer', () => {
    const layers = new Set(files.map(layerOf))
    assert.deepEqual([...layers].sort(), ['cli', 'commands', 'core', 'entry', 'server'])
  })

  it('imports go one way: commands -> cli -> core, commands -> server -> core; no oclif in core or server, no HTTP in core', () => {
    assert.deepEqual(layerBreaches(files), [])
  })

  it('catches each kind of breach (the check can fail)', () => {
    const at = (...parts: string[]) => path.join(SRC, ...parts)
    const fake: Record<string, Import[]> = {
      [at('cli', 'a.ts')]: [{dynamic: false, from: at('cli', 'a.ts'), specifier: '../server/config/load.js', typeOnly: true}],
      [at('commands', 'b.ts')]: [
        {dynamic: false, from: at('commands', 'b.ts'), specifier: '../server/lifecycle.js', typeOnly: false},
        {dynamic: true, from: at('commands', 'b.ts'), specifier: '../server/lifecycle.js', typeOnly: false},
        {dynamic: false, from: at('commands', 'b.ts'), specifier: '../server/logger.js', typeOnly: true},
      ],
      [at('core', 'c.ts')]: [
        {dynamic: false, from: at('core', 'c.ts'), specifier: '../cli/secrets.js', typeOnly: false},
        {dynamic: false, from: at('core', 'c.ts'), specifier: 'node:http', typeOnly: false},
      ],
      [at('server', 'd.ts')]: [
        {dynamic: false, from: at('server', 'd.ts'), specifier: '../commands/run.js', typeOnly: true},
        {dynamic: false, from: at('server', 'd.ts'), specifier: '@oclif/core', typeOnly: false},
      ],
    }
    assert.deepEqual(layerBreaches(Object.keys(fake), (file) => fake[file]), [
      'src/cli/a.ts: the cli layer imports ../server/config/load.js (server)',
      'src/commands/b.ts: imports ../server/lifecycle.js at start-up; load the server with import() in run(), or import its types only',
      'src/core/c.ts: the core layer imports ../cli/secrets.js (cli)',
      'src/core/c.ts: the core layer imports node:http',
      'src/server/d.ts: the server layer imports ../commands/run.js (commands)',
      'src/server/d.ts: the server layer imports @oclif/core',
    ])
  })

  it('every module opens with a comment saying what it is', () => {
    const without = files.filter((file) => !/^\/\*\*\s*\n?\s*\*?\s*\S/.test(readFileSync(file, 'utf8'))).map((file) => path.relative(ROOT, file))
    assert.deepEqual(without, [])
  })
})
