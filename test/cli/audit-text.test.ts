/**
 * The audit trail's text for a person: every recorded string goes through one escaper, so no field
 * (today's or a later version's) can put a control character on the terminal.
 */
import assert from 'node:assert/strict'

import {AuditLineResult, describeEntry, printable} from '../../src/cli/audit-text.js'

describe('cli/audit-text', () => {
  it('escapes C0, DEL and C1 controls as JSON does, and leaves other text as it is', () => {
    assert.equal(printable('vm\n2  fake\r\t\u001B[8m\u007F\u009B\u0000'), String.raw`vm\n2  fake\r\t\u001b[8m\u007f\u009b\u0000`)
    assert.equal(printable('héllo wörld ✓'), 'héllo wörld ✓')
    assert.equal(printable(null), '?')
  })

  it('prints every string of an entry through the escaper: one line, no control character', () => {
    const entry: AuditLineResult = {
      command: 'keystore remove\u001B[8m',
      confirmed: false,
      error: 'E\u001B',
      host: 'vm\n5  2026-12-04T16:49:13.100Z  root (uid 0) on vm',
      keys: ['A\u0007'],
      line: 4,
      pid: 1,
      result: 'failed',
      time: '2026\u009B',
      uid: 0,
      user: 'root\r',
    }
    assert.equal(
      describeEntry(entry, true),
      String.raw`4  2026\u009b  root\r (uid 0) on vm\n5  2026-12-04T16:49:13.100Z  root (uid 0) on vm, pid 1: keystore remove\u001b[8m A\u0007: failed (E\u001b)`,
    )
  })
})
