/**
 * Flags and helpers shared by the commands that load the server configuration (`run`, `test config`,
 * `export config`). The flags are a plain object: spread it into a command's `static flags`.
 */
import {Flags} from '@oclif/core'

import type {LoadOptions} from '../server/config.js'

export const serverFlags = {
  E: Flags.string({
    char: 'E',
    description: 'override a setting, e.g. -E apm-server.host=0.0.0.0:8200 (repeatable; the value is YAML, a mapping is merged into the section; ${KEY} references are resolved)',
    helpValue: 'key=value',
    multiple: true,
    multipleNonGreedy: true,
  }),
}

/** What `loadServerConfig` needs from a command's parsed flags. */
export function loadOptionsFrom(
  flags: LoadOptions['flags'] & {E?: string[]},
  keystore: Pick<LoadOptions, 'password' | 'strictPerms'>,
): LoadOptions {
  const {config, 'path.config': pathConfig, 'path.data': pathData, 'path.home': pathHome, 'strict.perms': strictPerms} = flags
  return {
    env: process.env,
    flags: {config, 'path.config': pathConfig, 'path.data': pathData, 'path.home': pathHome, 'strict.perms': strictPerms},
    overrides: flags.E ?? [],
    password: keystore.password,
    strictPerms: keystore.strictPerms,
  }
}
