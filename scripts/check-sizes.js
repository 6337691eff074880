#!/usr/bin/env node
/**
 * The size rules of the house style (STYLE.md, habit 13), measured with the TypeScript compiler's own
 * parser: no function or method in src/ over 80 lines, no command file (src/commands/) over 120 lines
 * and no command's `run` over 80. A function's lines run from its first line to its last, inner
 * functions included (they are part of what a reader must hold), comments and blank lines included.
 *
 *   node scripts/check-sizes.js [--top N] [DIR]
 *
 * Prints every breach and exits 1 when there is one; --top N also lists the N longest functions. DIR
 * defaults to this checkout. test/structure/sizes.test.ts runs it on every `npm test`.
 */
import {readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import ts from 'typescript'

export const MAX_FUNCTION_LINES = 80
export const MAX_COMMAND_FILE_LINES = 120

/** Every .ts file below `dir`, sorted. */
function sourceFiles(dir) {
  return readdirSync(dir, {recursive: true, withFileTypes: true})
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name))
    .sort()
}

/** A readable name for a function-like node: `Class.method`, `name`, or `(arrow in name)`. */
function nameOf(node) {
  const own = node.name && ts.isIdentifier(node.name) ? node.name.text : undefined
  const holder = node.parent
  if (ts.isConstructorDeclaration(node)) return `${holder.name?.text ?? '(class)'}.constructor`
  if (ts.isClassLike(holder)) return `${holder.name?.text ?? '(class)'}.${own ?? '(member)'}`
  if (own) return own
  if (ts.isVariableDeclaration(holder) && ts.isIdentifier(holder.name)) return holder.name.text
  if ((ts.isPropertyAssignment(holder) || ts.isPropertyDeclaration(holder)) && holder.name && ts.isIdentifier(holder.name)) return holder.name.text
  return '(anonymous)'
}

/** Line counts of every function, method, accessor, arrow function and class in `file`. */
export function measureFile(file, text = readFileSync(file, 'utf8')) {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const lines = (node) => source.getLineAndCharacterOfPosition(node.getEnd()).line - source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1
  const functions = []
  const classes = []
  const visit = (node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      functions.push({file, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, lines: lines(node), name: nameOf(node)})
    } else if (ts.isClassLike(node)) {
      classes.push({file, lines: lines(node), name: node.name?.text ?? '(class)'})
    }

    ts.forEachChild(node, visit)
  }

  visit(source)
  return {classes, functions, lines: text.split('\n').length - (text.endsWith('\n') ? 1 : 0)}
}

/** Every breach of the size rules in `root`'s src/, as lines of text. */
export function checkSizes(root) {
  const breaches = []
  const functions = []
  for (const file of sourceFiles(path.join(root, 'src'))) {
    const relative = path.relative(root, file)
    const measured = measureFile(file)
    functions.push(...measured.functions.map((fn) => ({...fn, file: relative})))
    for (const fn of measured.functions) {
      if (fn.lines > MAX_FUNCTION_LINES) breaches.push(`${relative}:${fn.line}: ${fn.name} is ${fn.lines} lines; at most ${MAX_FUNCTION_LINES}`)
    }

    if (relative.startsWith(`src${path.sep}commands${path.sep}`) && measured.lines > MAX_COMMAND_FILE_LINES) {
      breaches.push(`${relative}: the command file is ${measured.lines} lines; at most ${MAX_COMMAND_FILE_LINES}`)
    }
  }

  return {breaches, functions: functions.sort((a, b) => b.lines - a.lines)}
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2)
  const topAt = args.indexOf('--top')
  const top = topAt === -1 ? 0 : Number(args.splice(topAt, 2)[1])
  const root = path.resolve(args[0] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'))
  const {breaches, functions} = checkSizes(root)
  for (const fn of functions.slice(0, top)) process.stdout.write(`${String(fn.lines).padStart(4)}  ${fn.name}  ${fn.file}:${fn.line}\n`)
  for (const breach of breaches) process.stderr.write(`error: ${breach}\n`)
  process.exitCode = breaches.length > 0 ? 1 : 0
}
