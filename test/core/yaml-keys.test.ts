import assert from 'node:assert/strict'

import {isScalar, parseDocument} from 'yaml'

import {findKeyProblem} from '../../src/core/yaml-keys.js'

const parse = (text: string) => parseDocument(text, {schema: 'core', uniqueKeys: false}).contents

describe('core/yaml-keys', () => {
  it('finds a key written twice in one mapping, wherever the mapping is, and names both', () => {
    const table: Array<[string, string, number, number]> = [
      ['a: 1\na: 2\n', 'a', 0, 5],
      ['top:\n  list:\n    - x: 1\n      y: 2\n      x: 3\n', 'x', 19, 41],
      ['[{k: 1, k: 2}]', 'k', 2, 8],
      ['t: &anchor {k: 1}\nu: *anchor\n', '', -1, -1],
    ]
    for (const [yaml, key, first, again] of table) {
      const problem = findKeyProblem(parse(yaml))
      if (key === '') {
        assert.equal(problem, undefined, yaml)
        continue
      }

      assert.equal(problem?.kind, 'duplicate', yaml)
      if (problem?.kind !== 'duplicate') continue
      assert.deepEqual([String(problem.key.value), problem.first.range?.[0], problem.key.range?.[0]], [key, first, again], yaml)
    }
  })

  it('a key that is not a plain value (a list, a mapping, an alias) is a problem', () => {
    for (const yaml of ['? [a]\n: 1\n', '? {a: 1}\n: 1\n', 'a: &x k\n*x : 2\n']) {
      const problem = findKeyProblem(parse(yaml))
      assert.equal(problem?.kind, 'not-scalar', yaml)
      assert.equal(problem?.kind === 'not-scalar' && isScalar(problem.key), false, yaml)
    }
  })

  it('walks huge lists and deep nesting without overflowing the stack', () => {
    const long = `x:\n${'  - 0\n'.repeat(200_000)}`
    assert.equal(findKeyProblem(parse(long)), undefined)
    // Nesting as deep as the parser takes (it reports an error of its own at about 880 levels).
    let deep = ''
    for (let i = 0; i < 800; i++) deep += `${' '.repeat(i)}k${i}:\n`
    deep += `${' '.repeat(800)}last: 1\n${' '.repeat(800)}last: 2\n`
    const problem = findKeyProblem(parse(deep))
    assert.equal(problem?.kind === 'duplicate' && String(problem.key.value), 'last')
  })
})
