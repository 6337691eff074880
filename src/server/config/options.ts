/**
 * What a command hands the configuration loader: its parsed flags as {@link LoadOptions}, and, for the
 * server, a keystore password source that never prompts.
 */
import {KeystoreError} from '../../core/errors.js'
import {PASSWORD_ENV, PASSWORD_FILE_ENV, passwordFromEnvironment} from '../../core/password-env.js'
import type {LoadOptions} from './server-config.js'

/** What `loadServerConfig` needs from a command's parsed flags (the global ones and -E). */
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

/** A server never prompts: the keystore password comes from the environment or a file it names. */
export async function serverPassword(): Promise<Buffer> {
  const password = await passwordFromEnvironment(process.env)
  if (password) return password
  throw new KeystoreError('ENOPASSWORD', `the keystore is password protected and a server never prompts; set ${PASSWORD_ENV} or ${PASSWORD_FILE_ENV}`)
}
