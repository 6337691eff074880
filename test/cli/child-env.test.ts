/**
 * src/cli/child-env.ts: which keystore entries `keystore run` withholds unless named, because the variable
 * changes how the command loads code or whom it trusts (break-final 2: SSLKEYLOGFILE sent a command's TLS
 * session keys, and so the token in its requests, to a file of the entry's choosing).
 */
import assert from 'node:assert/strict'

import {changesHowProgramsLoad} from '../../src/cli/child-env.js'

describe('cli/child-env changesHowProgramsLoad', () => {
  it('withholds TLS key logs and trust, glibc tunables, tool rc files and package-manager settings', () => {
    const withheld = ['SSLKEYLOGFILE', 'AWS_CA_BUNDLE', 'GLIBC_TUNABLES', 'CURL_HOME', 'WGETRC', 'GNUPGHOME', 'GOTOOLCHAIN', 'GOINSECURE', 'GOSUMDB', 'RUSTC_WRAPPER', 'PIP_INDEX_URL', 'pip_cert', 'GEM_HOME']
    assert.deepEqual(withheld.filter((name) => !changesHowProgramsLoad(name)), [])
  })

  it('passes the secrets a script needs, names that only start like a family among them', () => {
    const secrets = ['APM_SECRET_TOKEN', 'REDIS_PASSWORD', 'ES_PASSWORD', 'ELASTIC_APM_SECRET_TOKEN', 'PIPELINE_TOKEN', 'GEMINI_KEY']
    assert.deepEqual(secrets.filter((name) => changesHowProgramsLoad(name)), [])
  })
})
