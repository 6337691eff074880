/**
 * What the CLI's own modules import from '@oclif/core', each from its own oclif module: scripts/bundle.js
 * points the bundle's imports of '@oclif/core' here. oclif's index loads every module it has and, at
 * load, checks the Node version with semver (about 4 ms of `keystore list`, its code cache 50 KB
 * larger); src/cli/execute.ts makes the same checks without it. Types still come from '@oclif/core'.
 */
export * as Args from '@oclif/core/args'
export {Command} from '@oclif/core/command'
export {Plugin} from '@oclif/core/config'
export * as Errors from '@oclif/core/errors'
export {execute} from '@oclif/core/execute'
export * as Flags from '@oclif/core/flags'
