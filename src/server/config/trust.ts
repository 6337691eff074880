/**
 * Whether the server may trust its config file under strict perms, as Beats decides (strict.perms): the
 * file must be owned by the current user or root and writable by nobody else, and so must every directory
 * and link on its path (core's `checkTrustedConfigFile`, which the keystore commands use too). A config
 * file says where the keystore is, where events are written and whether a token is needed: whoever could
 * write it could run the server without authentication, or have it write the token into a file name they
 * can list.
 */
import type {LoadOptions} from './server-config.js'

export {checkTrustedConfigFile} from '../../core/trusted-path.js'

/** Strict perms for this load: the option, then --strict.perms, then BEAT_STRICT_PERMS, else on. */
export function strictPermsOf(options: LoadOptions): boolean {
  return options.strictPerms ?? options.flags['strict.perms'] ?? options.env.BEAT_STRICT_PERMS?.toLowerCase() !== 'false'
}
