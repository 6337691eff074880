/**
 * TLS for the Redis output's hosts, from `output.redis.ssl` as Beats reads it: a host is reached over TLS
 * when its URL says rediss:// or, without a scheme, when `ssl.enabled`; redis:// is always plain. The
 * certificate authorities given (else the system's), an optional client certificate, and Beats'
 * verification modes: `full` and `strict` check the chain and the host name, `certificate` the chain
 * only, `none` nothing (logged as a warning at start). Files are read once, when the output opens.
 */
import {isIP} from 'node:net'
import type {ConnectionOptions} from 'node:tls'

import {readRegularFileSync, RefusedFileError} from '../../core/bounded-read.js'
import {KeystoreError} from '../../core/errors.js'
import type {RedisOutputConfig} from '../config/server-config.js'

/** The TLS options of each host, by position; undefined for a plain one. */
export type TlsByHost = Array<ConnectionOptions | undefined>

/** A PEM bundle of CAs, a certificate or a key is far below this; /dev/zero must not be read without end. */
const MAX_PEM_BYTES = 1024 * 1024

/** Reads the TLS files when a host uses TLS; ECONFIG naming the setting and file when one cannot be read. */
export function readTlsOptions(config: RedisOutputConfig): TlsByHost {
  const {ssl} = config
  if (!config.hosts.some((host) => host.tls ?? ssl.enabled)) return config.hosts.map(() => undefined)
  const base: ConnectionOptions = {}
  if (ssl.certificateAuthorities.length > 0) base.ca = ssl.certificateAuthorities.map((file) => readPem(file, 'output.redis.ssl.certificate_authorities'))
  if (ssl.certificate && ssl.key) {
    base.cert = readPem(ssl.certificate, 'output.redis.ssl.certificate')
    base.key = readPem(ssl.key, 'output.redis.ssl.key')
    if (ssl.keyPassphrase !== undefined) base.passphrase = ssl.keyPassphrase
  }

  if (ssl.verificationMode === 'none') base.rejectUnauthorized = false
  if (ssl.verificationMode === 'none' || ssl.verificationMode === 'certificate') base.checkServerIdentity = () => undefined
  return config.hosts.map((host) => {
    if (!(host.tls ?? ssl.enabled)) return undefined
    // SNI takes a name, never an address.
    return isIP(host.host) === 0 ? {...base, servername: host.host} : {...base}
  })
}

function readPem(file: string, setting: string): Buffer {
  try {
    return readRegularFileSync(file, MAX_PEM_BYTES)
  } catch (error) {
    const why = error instanceof RefusedFileError ? `it is ${error.message}` : (error as NodeJS.ErrnoException).code
    throw new KeystoreError('ECONFIG', `cannot read ${setting} ${file}: ${why}; point it at a PEM file of at most 1 MiB`)
  }
}
