import assert from 'node:assert/strict'

import {Lookup, parseTemplate, ReferenceProblem, resolveTemplate} from '../../src/core/references.js'

/** KS_* names are "keystore" values (sensitive), the rest are plain. */
const VALUES: Record<string, string> = {
  A: 'alpha',
  A_x: 'nested',
  B: 'x',
  BOOL: 'true',
  EMPTY: '',
  HEX: '0x1F',
  KS_HEX: '0x1F',
  KS_LIST: '1,2',
  KS_SPACED: ' spaced ',
  KS_TOKEN: 's3cr3t',
  'path.data': '/srv/data',
  SPACE: ' ',
  Y: 'y',
}

const lookup: Lookup = (name) => {
  if (name === 'BROKEN') return {problem: 'the keystore value of BROKEN is not UTF-8 text; store the value as text', value: ''}
  return Object.hasOwn(VALUES, name) ? {sensitive: name.startsWith('KS_'), value: VALUES[name]} : undefined
}

describe('core/references', () => {
  describe('resolves', () => {
    const table: Array<[string, string, boolean?]> = [
      ['plain text', 'plain text'],
      ['', ''],
      ['${A}', 'alpha'],
      ['x-${A}-y', 'x-alpha-y'],
      ['${A}${B}', 'alphax'],
      ['${path.data}/out', '/srv/data/out'],
      // defaults: when unset, and when empty
      ['${MISSING:fallback}', 'fallback'],
      ['${EMPTY:fallback}', 'fallback'],
      ['${MISSING:}', ''],
      ['${A:fallback}', 'alpha'],
      ['${MISSING:localhost:8200}', 'localhost:8200'],
      ['${MISSING:${A}}', 'alpha'],
      ['${MISSING:${OTHER:deep}}', 'deep'],
      // a default is not resolved when it is not used
      ['${A:${MISSING}}', 'alpha'],
      ['${A:?never shown}', 'alpha'],
      // escapes
      ['$$', '$'],
      ['$${A}', '${A}'],
      ['$$$${A}', '$${A}'],
      ['$$${A}', '$alpha'],
      ['a$b', 'a$b'],
      ['cost: $5 $', 'cost: $5 $'],
      ['}{', '}{'],
      ['${MISSING:a$$b}', 'a$b'],
      // nesting
      ['${A_${B}}', 'nested'],
      ['${A_${B}:d}', 'nested'],
      ['${A_${Y}:d}', 'd'],
      // no coercion: strings exactly as the lookup gave them
      ['${HEX}', '0x1F'],
      ['${BOOL}', 'true'],
      ['${KS_HEX}', '0x1F', true],
      ['${KS_LIST}', '1,2', true],
      ['${KS_SPACED}', ' spaced ', true],
      ['Bearer ${KS_TOKEN}', 'Bearer s3cr3t', true],
      // a name chosen by a secret is sensitive too
      ['${A_${KS_TOKEN}:d}', 'd', true],
      ['${MISSING:${KS_TOKEN}}', 's3cr3t', true],
    ]
    for (const [text, expected, sensitive = false] of table) {
      it(`${JSON.stringify(text)} -> ${JSON.stringify(expected)}`, () => {
        assert.deepEqual(resolveTemplate(text, lookup), {problems: [], sensitive, value: expected})
      })
    }
  })

  describe('reports every problem at once, naming the reference as written and no value', () => {
    const table: Array<[string, ReferenceProblem[]]> = [
      ['${MISSING}', [{key: 'MISSING', kind: 'unset', reference: '${MISSING}'}]],
      ['${EMPTY}', [{key: 'EMPTY', kind: 'unset', reference: '${EMPTY}'}]],
      ['${M1}:${M2} and ${A} ${M3:?give M3}', [
        {key: 'M1', kind: 'unset', reference: '${M1}'},
        {key: 'M2', kind: 'unset', reference: '${M2}'},
        {key: 'M3', kind: 'required', message: 'give M3', reference: '${M3:?give M3}'},
      ]],
      ['${MISSING:?}', [{key: 'MISSING', kind: 'required', message: '', reference: '${MISSING:?}'}]],
      ['${EMPTY:?must not be empty}', [{key: 'EMPTY', kind: 'required', message: 'must not be empty', reference: '${EMPTY:?must not be empty}'}]],
      // the inner reference is the problem; the outer one is not reported on top
      ['${A_${MISSING}}', [{key: 'MISSING', kind: 'unset', reference: '${MISSING}'}]],
      // built from other references: no key to name (it could hold a secret)
      ['${A_${Y}}', [{kind: 'unset', reference: '${A_${Y}}'}]],
      ['${A_${KS_TOKEN}}', [{kind: 'unset', reference: '${A_${KS_TOKEN}}'}]],
      ['${X${SPACE}}', [{kind: 'bad-name', reference: '${X${SPACE}}'}]],
      ['${MISSING:${M2}}', [{key: 'M2', kind: 'unset', reference: '${M2}'}]],
      ['${BROKEN}', [{kind: 'lookup', message: 'the keystore value of BROKEN is not UTF-8 text; store the value as text', reference: '${BROKEN}'}]],
      // syntax: the text is not echoed, only the position
      ['${A', [{kind: 'syntax', message: 'unclosed reference at character 1; add the closing "}" (write "$$" for a literal "$")'}]],
      ['token ${A:${B}', [{kind: 'syntax', message: 'unclosed reference at character 7; add the closing "}" (write "$$" for a literal "$")'}]],
      ['${A_${B}', [{kind: 'syntax', message: 'unclosed reference at character 1; add the closing "}" (write "$$" for a literal "$")'}]],
      ['${}', [{kind: 'syntax', message: 'reference at character 1 has no key name; write ${KEY}'}]],
      ['ab ${:default}', [{kind: 'syntax', message: 'reference at character 4 has no key name; write ${KEY}'}]],
      [`${'${A_'.repeat(15)}\${Q}${'}'.repeat(15)}`, [{key: 'Q', kind: 'unset', reference: '${Q}'}]],
      [`${'${A_'.repeat(17)}B${'}'.repeat(17)}`, [{kind: 'syntax', message: 'reference at character 65 is nested more than 16 deep; simplify it'}]],
      [`${'${'.repeat(100_000)}`, [{kind: 'syntax', message: 'reference at character 33 is nested more than 16 deep; simplify it'}]],
    ]
    for (const [text, problems] of table) {
      it(text.length > 80 ? `${JSON.stringify(text.slice(0, 40))}... (${text.length} characters)` : JSON.stringify(text), () => {
        const resolution = resolveTemplate(text, lookup)
        assert.deepEqual(resolution.problems, problems)
        assert.equal(resolution.value, undefined)
        assert.ok(!JSON.stringify(resolution).includes('s3cr3t'))
      })
    }
  })

  it('parses nesting into a tree, keeping each reference as written', () => {
    assert.deepEqual(parseTemplate('a ${X_${Y}:d-${Z}} $$'), {
      errors: [],
      parts: [
        {kind: 'text', text: 'a '},
        {
          fallback: [
            {kind: 'text', text: 'd-'},
            {kind: 'reference', name: [{kind: 'text', text: 'Z'}], source: '${Z}'},
          ],
          kind: 'reference',
          name: [
            {kind: 'text', text: 'X_'},
            {kind: 'reference', name: [{kind: 'text', text: 'Y'}], source: '${Y}'},
          ],
          source: '${X_${Y}:d-${Z}}',
        },
        {kind: 'text', text: ' $'},
      ],
    })
  })

  it('asks the lookup only for what it needs, in order', () => {
    const asked: string[] = []
    const recording: Lookup = (name) => {
      asked.push(name)
      return lookup(name)
    }

    resolveTemplate('${A:${NOT_ASKED}} ${MISSING:${B}} ${A_${B}}', recording)
    assert.deepEqual(asked, ['A', 'MISSING', 'B', 'B', 'A_x'])
  })
})
