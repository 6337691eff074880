import assert from 'node:assert/strict'

import {assertValidKeyName, isValidKeyName, KEY_NAME_RULE} from '../../src/core/entries.js'

describe('core/entries', () => {
  it('the rule reads as documented', () => {
    assert.equal(KEY_NAME_RULE, 'key names are 1 to 255 characters from A-Z a-z 0-9 _ . -')
  })

  it('accepts the documented alphabet, 1 to 255 characters', () => {
    for (const name of ['A', 'a', '0', '_', '.', '-', 'APM_SECRET_TOKEN', 'output.elasticsearch.password', 'es-pass.2', 'x'.repeat(255)]) {
      assert.equal(isValidKeyName(name), true, name)
      assertValidKeyName(name)
    }
  })

  it('table of bad names: EBADKEY, the name shown escaped, the rule stated', () => {
    const table: Array<[string, string]> = [
      ['', '""'],
      ['bad name', '"bad name"'],
      ['a/b', '"a/b"'],
      ['a=b', '"a=b"'],
      ['${X}', '"${X}"'],
      ['new\nline', '"new\\nline"'],
      ['tab\t', '"tab\\t"'],
      ['nul\0', '"nul\\u0000"'],
      ['é', '"é"'],
      ['x'.repeat(256), `"${'x'.repeat(60)}..."`],
      ['trailing\n', '"trailing\\n"'],
    ]
    for (const [name, shown] of table) {
      assert.equal(isValidKeyName(name), false, JSON.stringify(name))
      assert.throws(() => assertValidKeyName(name), {
        code: 'EBADKEY',
        message: `invalid key name ${shown}: key names are 1 to 255 characters from A-Z a-z 0-9 _ . -`,
        name: 'KeystoreError',
      })
    }
  })
})
