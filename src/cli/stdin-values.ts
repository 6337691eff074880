/**
 * Values for named keys from stdin, as `add --stdin` takes them: with one key all of stdin minus one
 * trailing newline, with several one line per key; 64 MiB at most, refused past that without buffering
 * the rest. Built on the stdin helpers of ./secrets.ts.
 */
import {MAX_VALUE_BYTES} from '../core/entries.js'
import {KeystoreError} from '../core/errors.js'
import {readStdin, splitLines, stripOneNewline} from './secrets.js'

export async function valuesFromStdin(names: readonly string[]): Promise<Buffer[]> {
  const data = await readStdin(
    MAX_VALUE_BYTES,
    () => new KeystoreError('EUSAGE', `stdin holds more than ${MAX_VALUE_BYTES} bytes (64 MiB), the most a value may be; store a smaller value`),
  )
  if (names.length === 1) return [stripOneNewline(data)]
  const lines = splitLines(data)
  if (lines.length !== names.length) {
    throw new KeystoreError('EUSAGE', `stdin has ${lines.length} line${lines.length === 1 ? '' : 's'} for ${names.length} keys; give one line per key`)
  }

  return lines
}
