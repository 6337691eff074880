/**
 * Whether the server may trust its config file under strict perms, as Beats decides (strict.perms): the
 * file must be owned by the current user or root and writable by nobody else. A config file says where
 * the keystore is, where events are written and whether a token is needed: whoever could write it could
 * run the server without authentication, or have it write the token into a file name they can list.
 *
 * The same rule, with the path walk of every directory and link on the way, is core's
 * `checkTrustedConfigFile` (src/core/trusted-path.ts on main, from branch fix-local), which the keystore
 * commands use; this module is the server's one call site, to point at core's once both are merged.
 */
import type {Stats} from 'node:fs'

import {KeystoreError} from '../../core/errors.js'
import type {LoadOptions} from './server-config.js'

/** Appended to every strict-perms refusal. */
const STRICT_HINT = '(--strict.perms=false disables this check)'

/** Strict perms for this load: the option, then --strict.perms, then BEAT_STRICT_PERMS, else on. */
export function strictPermsOf(options: LoadOptions): boolean {
  return options.strictPerms ?? options.flags['strict.perms'] ?? options.env.BEAT_STRICT_PERMS?.toLowerCase() !== 'false'
}

/**
 * Refuses (EPERMS, naming the file and the fix) a config file another user could have written: owned by
 * someone other than the current user or root, or writable by group or others. Made for bounded-read's
 * `inspect`, which gives the opened file's stat before anything is read. Without user ids (Windows) nothing
 * is judged.
 */
export function checkTrustedConfigFile(file: string, stat: Stats, _fd: number): void {
  const uid = process.getuid?.()
  if (uid === undefined) return
  if (stat.uid !== uid && stat.uid !== 0) {
    throw new KeystoreError(
      'EPERMS',
      `config file ${file} is owned by uid ${stat.uid}, not by the current user (uid ${uid}) or root, and a config file decides where the keystore is and what is written where; check its contents, then run "chown ${uid} ${file}" ${STRICT_HINT}`,
    )
  }

  // eslint-disable-next-line no-bitwise -- permission bits
  if ((stat.mode & 0o022) !== 0) {
    // eslint-disable-next-line no-bitwise -- permission bits
    const mode = (stat.mode & 0o7777).toString(8).padStart(4, '0')
    throw new KeystoreError('EPERMS', `config file ${file} has mode ${mode}, writable by group or others; run "chmod go-w ${file}" ${STRICT_HINT}`)
  }
}
