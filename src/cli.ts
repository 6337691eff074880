/**
 * The CLI's entry point: the command map and `execute`, bundled with @oclif/core into dist/cli.cjs by
 * scripts/bundle.js and loaded through a V8 code cache by dist/cli.js (src/cli/bundle-entry.ts). One
 * file to load, compiled ahead, is most of the start-up cost saved (see bench/RESULTS.md). oclif finds
 * the commands through this map (package.json `oclif.commands`, strategy "explicit"); a test checks that
 * it lists every file in src/commands. Heavy modules (server, YAML, prompts, argon2) are imported by
 * the commands that need them, when they run.
 */
import {executeCli, type ExecuteOptions} from './cli/execute.js'
import AgentConfig from './commands/agent-config.js'
import ExportConfig from './commands/export/config.js'
import KeystoreAdd from './commands/keystore/add.js'
import KeystoreAudit from './commands/keystore/audit.js'
import KeystoreCreate from './commands/keystore/create.js'
import KeystoreHasPasswd from './commands/keystore/has-passwd.js'
import KeystoreImport from './commands/keystore/import.js'
import KeystoreList from './commands/keystore/list.js'
import KeystorePasswd from './commands/keystore/passwd.js'
import KeystoreRecipient from './commands/keystore/recipient.js'
import KeystoreRemove from './commands/keystore/remove.js'
import KeystoreRun from './commands/keystore/run.js'
import KeystoreSeal from './commands/keystore/seal.js'
import KeystoreShow from './commands/keystore/show.js'
import KeystoreSync from './commands/keystore/sync.js'
import KeystoreUpgrade from './commands/keystore/upgrade.js'
import Run from './commands/run.js'
import TestConfig from './commands/test/config.js'
import TestOutput from './commands/test/output.js'

export const COMMANDS = {
  'agent-config': AgentConfig,
  'export:config': ExportConfig,
  'keystore:add': KeystoreAdd,
  'keystore:audit': KeystoreAudit,
  'keystore:create': KeystoreCreate,
  'keystore:has-passwd': KeystoreHasPasswd,
  'keystore:import': KeystoreImport,
  'keystore:list': KeystoreList,
  'keystore:passwd': KeystorePasswd,
  'keystore:recipient': KeystoreRecipient,
  'keystore:remove': KeystoreRemove,
  'keystore:run': KeystoreRun,
  'keystore:seal': KeystoreSeal,
  'keystore:show': KeystoreShow,
  'keystore:sync': KeystoreSync,
  'keystore:upgrade': KeystoreUpgrade,
  run: Run,
  'test:config': TestConfig,
  'test:output': TestOutput,
}

const COMMAND_IDS: ReadonlySet<string> = new Set(Object.keys(COMMANDS))

/** Runs the CLI (bin/run.js): oclif's `execute`, see src/cli/execute.ts. */
export function execute(options: ExecuteOptions): Promise<unknown> {
  return executeCli(COMMAND_IDS, options)
}
