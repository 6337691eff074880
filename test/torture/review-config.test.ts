/**
 * Regression tests of issue 11's fail-open configuration paths (items 2, 9 and the reload bound of 11)
 * on the real `apm-server run`: the fast scenarios of ./review-config.ts, one test each (`npm run
 * torture` runs them all, with the 30 s reload bound and the rest of the reload table).
 */
import assert from 'node:assert/strict'

import {killStartedServers} from '../helpers/run-server.js'
import {runScenario, SCENARIOS} from './review-config.js'

describe('issue 11: configuration and reload fail closed (fast versions)', function () {
  // A few server starts each, on 2 shared cores.
  this.timeout(120_000)
  afterEach(() => killStartedServers())

  for (const scenario of SCENARIOS.filter((s) => !s.full)) {
    it(scenario.name, async () => {
      assert.deepEqual(await runScenario(scenario), [])
    })
  }
})
