/**
 * The environment `keystore run` gives a command: this process's, without the keystore's password
 * variables, plus the chosen entries. An environment variable is a C string of text, so a value must be
 * UTF-8 without NUL bytes, and Linux takes at most 128 KiB for one "NAME=value": anything else is
 * refused before the command starts, naming the key.
 */
import {KeystoreError} from '../core/errors.js'
import {PASSWORD_ENV, PASSWORD_FILE_ENV} from '../core/password-env.js'

/** MAX_ARG_STRLEN on Linux: one "NAME=value" string, with its terminating NUL. */
const MAX_VARIABLE_BYTES = 128 * 1024

export function childEnvironment(parent: NodeJS.ProcessEnv, injected: ReadonlyMap<string, Buffer>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {...parent}
  // The key to every entry, not one of them: the command gets what it was given, nothing more.
  delete env[PASSWORD_ENV]
  delete env[PASSWORD_FILE_ENV]
  const decoder = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})
  for (const [name, value] of injected) {
    if (value.includes(0)) throw new KeystoreError('EBADVALUE', `the value of ${name} holds a NUL byte, which an environment variable cannot; leave it out with --key, or read it with "keystore show"`)
    let text: string
    try {
      text = decoder.decode(value)
    } catch {
      throw new KeystoreError('EBADVALUE', `the value of ${name} is not UTF-8 text, which an environment variable must be; leave it out with --key, or read it with "keystore show"`)
    }

    if (name.length + 2 + value.length > MAX_VARIABLE_BYTES) {
      throw new KeystoreError('ELIMITS', `the value of ${name} is ${value.length} bytes, more than one environment variable may hold (128 KiB); leave it out with --key, or read it with "keystore show"`)
    }

    env[name] = text
  }

  return env
}
