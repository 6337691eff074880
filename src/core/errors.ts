/**
 * Every failure the core reports is a {@link KeystoreError} with a stable string `code`.
 * Callers branch on the code; the message is for people: lower-case, names the path or key,
 * never contains a secret, and ends with the fix.
 */
export type ErrorCode =
  | 'ENOKEYSTORE' // no keystore file at the path
  | 'EEXISTS' // keystore file already exists
  | 'EBADKEY' // key name breaks the naming rule
  | 'ENOKEY' // key not in the keystore
  | 'EKEYEXISTS' // key already in the keystore
  | 'EBADVALUE' // empty or oversized value
  | 'EFORMAT' // not a keystore: bad magic, truncated, malformed header or payload
  | 'EVERSION' // a keystore of a format version this build does not know
  | 'ELIMITS' // header asks for KDF cost or sizes beyond the caps, or a keystore would hold more than MAX_KEYS keys
  | 'EDECRYPT' // wrong password or tampered file (one message, no oracle)
  | 'ENOPASSWORD' // keystore is protected and no password source is available
  | 'EPASSWORD' // a password was given where none can be used, or an unusable new one
  | 'EPERMS' // file or owner permissions are too open
  | 'ELOCKED' // another process held the lock for too long
  | 'EUNSUPPORTED' // operation the format cannot do (e.g. a password on beats-v1)
  | 'EIO' // other file-system failure
  | 'EUSAGE' // bad input from the caller (maps to exit code 2)
  | 'ECANCELED' // the user interrupted a prompt (maps to exit code 130)
  | 'ECONFIG' // configuration file problems
  | 'EBADRECIPIENT' // a recipient text that is not one (maps to exit code 2)
  | 'ENOTRECIPIENT' // a sealed bundle not sealed to this host, or a host without a key
  | 'ESIGNER' // a sealed bundle not signed by a sender import --from names, or whose signature does not verify
  | 'ESTALE' // a sealed bundle older than a value it would replace (a replay): import --allow-older
  | 'ECLOCK' // a sealed bundle dated ahead of this host's clock by more than BUNDLE_CLOCK_SKEW_MS
  | 'ESYNC' // files of a sync directory that cannot become keys
  | 'EAUDIT' // an audit trail that was changed, cut or does not match its keystore

export class KeystoreError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: {cause?: unknown}) {
    super(message, options)
    this.name = 'KeystoreError'
    this.code = code
  }
}

/** One message for every failure after the header checks pass, so a file gives no oracle. */
export const DECRYPT_FAILED_MESSAGE = 'wrong password or keystore file tampered with'

export function isKeystoreError(error: unknown, code?: ErrorCode): error is KeystoreError {
  return error instanceof KeystoreError && (code === undefined || error.code === code)
}

/**
 * Thrown by a format's encoder for a keystore its readers would refuse (too many keys, too large an index
 * or file); the message says what would be over which limit, and the keystore names the file and the fix.
 */
export class EncodeLimitError extends KeystoreError {
  constructor(detail: string) {
    super('ELIMITS', detail)
    this.name = 'EncodeLimitError'
  }
}
