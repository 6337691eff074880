import assert from 'node:assert/strict'

import {jsonBracketsWithin, jsonDepthWithin} from '../../src/core/format/json-guard.js'

describe('core/format/json-guard jsonDepthWithin', () => {
  const table: Array<[string, number, boolean]> = [
    ['{}', 1, true],
    ['{"a":{"value":"x"}}', 2, true],
    ['{"a":{"value":{}}}', 2, false],
    ['{"entries":[["A",1],["B",2]],"values":"x"}', 3, true],
    ['{"entries":[[["A"]]]}', 3, false],
    ['"[[[[[[[["', 0, true], // brackets inside a string do not count
    ['["\\"[[[["]', 1, true], // nor after an escaped quote
    ['[[[[', 3, false], // unclosed, too deep
    ['', 0, true],
  ]
  for (const [json, depth, expected] of table) {
    it(`${JSON.stringify(json)} within depth ${depth}: ${expected}`, () => {
      assert.equal(jsonDepthWithin(Buffer.from(json), depth), expected)
    })
  }

  const counted: Array<[string, number, number, boolean]> = [
    ['{"A":{"value":"x"},"B":{"value":"y"}}', 2, 3, true],
    ['{"A":{"value":"x"},"B":{"value":"y"},"C":{"value":"z"}}', 2, 3, false],
    ['{"entries":[[],[],[]],"values":"{}{}{}"}', 3, 5, true], // braces inside a string are not counted
    ['{"entries":[[],[],[],[]],"values":""}', 3, 5, false],
  ]
  for (const [json, depth, containers, expected] of counted) {
    it(`${JSON.stringify(json)} within depth ${depth} and ${containers} containers: ${expected}`, () => {
      assert.equal(jsonDepthWithin(Buffer.from(json), depth, containers), expected)
    })
  }

  it('refuses 40 MiB of "[" at once', () => {
    assert.equal(jsonDepthWithin(Buffer.alloc(40 * 1024 * 1024, 0x5b), 3), false)
  })
})

describe('core/format/json-guard jsonBracketsWithin', () => {
  const table: Array<[string, number, boolean]> = [
    ['', 0, true],
    ['{}', 1, true],
    ['{}', 0, false],
    ['{"entries":[["A",1],["B",2]],"values":"x"}', 4, true],
    ['{"entries":[["A",1],["B",2]],"values":"x"}', 3, false],
    ['{"entries":[[["A"]]]}', 4, true], // no depth bound: the reader checks the structure
    ['"[[[["', 3, false], // brackets inside a string count too: it errs on refusing
    ['"{{{{"', 4, true],
    ['[]]]]]', 1, true], // closing brackets cost nothing to parse
  ]
  for (const [json, containers, expected] of table) {
    it(`${JSON.stringify(json)} within ${containers} containers: ${expected}`, () => {
      assert.equal(jsonBracketsWithin(json, containers), expected)
    })
  }

  it('refuses 40 MiB of "[" or of "{" at once', () => {
    assert.equal(jsonBracketsWithin('['.repeat(40 * 1024 * 1024), 100_005), false)
    assert.equal(jsonBracketsWithin('{'.repeat(40 * 1024 * 1024), 100_005), false)
  })
})
