/**
 * The OTLP descriptor the server loads (src/server/intake/otlp/schema.ts) is what the vendored
 * definitions in proto/ give (scripts/otlp-schema.js), so neither can drift from the other.
 */
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {ROOT} from '../helpers/cli.js'

describe('OTLP schema', () => {
  it('src/server/intake/otlp/schema.ts is what scripts/otlp-schema.js makes of proto/', async () => {
    const {schemaSource} = (await import(path.join(ROOT, 'scripts', 'otlp-schema.js'))) as {schemaSource: () => string}
    assert.equal(readFileSync(path.join(ROOT, 'src', 'server', 'intake', 'otlp', 'schema.ts'), 'utf8'), schemaSource())
  })
})
