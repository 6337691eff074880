/**
 * The CLI's entry point, bundled into dist/cli.js with @oclif/core by scripts/bundle.js: one file to
 * load instead of hundreds is most of the start-up cost saved (see bench/RESULTS.md). oclif finds the
 * commands through this map (package.json `oclif.commands`, strategy "explicit"); a test checks that it
 * lists every file in src/commands. Heavy modules (server, YAML, prompts, argon2) are imported by the
 * commands that need them, when they run.
 */
import AgentConfig from './commands/agent-config.js'
import ExportConfig from './commands/export/config.js'
import KeystoreAdd from './commands/keystore/add.js'
import KeystoreCreate from './commands/keystore/create.js'
import KeystoreHasPasswd from './commands/keystore/has-passwd.js'
import KeystoreList from './commands/keystore/list.js'
import KeystorePasswd from './commands/keystore/passwd.js'
import KeystoreRemove from './commands/keystore/remove.js'
import KeystoreShow from './commands/keystore/show.js'
import KeystoreUpgrade from './commands/keystore/upgrade.js'
import Run from './commands/run.js'
import TestConfig from './commands/test/config.js'

export {execute} from '@oclif/core'

export const COMMANDS = {
  'agent-config': AgentConfig,
  'export:config': ExportConfig,
  'keystore:add': KeystoreAdd,
  'keystore:create': KeystoreCreate,
  'keystore:has-passwd': KeystoreHasPasswd,
  'keystore:list': KeystoreList,
  'keystore:passwd': KeystorePasswd,
  'keystore:remove': KeystoreRemove,
  'keystore:show': KeystoreShow,
  'keystore:upgrade': KeystoreUpgrade,
  run: Run,
  'test:config': TestConfig,
}
