/**
 * Where the secret values of a writing command come from, for one or more keys: a file's bytes
 * (`--file`), stdin (`--stdin`: all of it for one key, one line per key for several), or a masked prompt
 * per key on a terminal. Never argv. Every source is capped at the most a value may be, and an empty
 * value is refused: `keystore add` uses it, and so can any command that takes values.
 */
import {readRegularFile, RefusedFileError} from '../core/bounded-read.js'
import {MAX_VALUE_BYTES} from '../core/entries.js'
import {KeystoreError} from '../core/errors.js'
import {interactive, promptSecret, readStdin, splitLines, stripOneNewline} from './secrets.js'

/** The flags that choose a source; none set means prompting. `generate` makes the value in the command itself. */
export interface ValueSource {
  file?: string
  stdin?: boolean
  generate?: boolean
}

/**
 * Refuses, before anything is opened or asked, a source that cannot give `names` their values: --file
 * and --generate set one key, and prompting needs a terminal.
 */
export function checkValueSource(names: string[], {file, generate, stdin}: ValueSource): void {
  if ((file || generate) && names.length !== 1) throw new KeystoreError('EUSAGE', `--${file ? 'file' : 'generate'} sets one key; name exactly one`)
  if (!stdin && !file && !generate && !interactive()) {
    throw new KeystoreError('EUSAGE', `no value for ${names.join(', ')}: stdin is not a terminal; pipe the value with --stdin, or use --file PATH or --generate`)
  }
}

/** One value per name, in order, from the file, stdin or prompts; an empty value is refused. */
export async function readValues(names: string[], {file, stdin}: ValueSource): Promise<Buffer[]> {
  const values = file ? [await readValueFile(file)] : stdin ? await readStdinValues(names) : await promptValues(names)
  values.forEach((value, i) => {
    if (value.length === 0) throw new KeystoreError('EBADVALUE', `empty value for key ${names[i]}; give a non-empty value`)
  })
  return values
}

async function readValueFile(file: string): Promise<Buffer> {
  // Read with the cap, not stat-then-read: the file may grow, or be swapped for a FIFO, in between.
  return readRegularFile(file, MAX_VALUE_BYTES).catch((error: NodeJS.ErrnoException) => {
    if (error instanceof RefusedFileError) throw new KeystoreError('EUSAGE', `--file ${file} is not a regular file of at most 64 MiB`)
    throw new KeystoreError('EUSAGE', `cannot read --file ${file}: ${error.code}; check the path`)
  })
}

/** Values for `names` from stdin, as `add --stdin` takes them (also `seal --stdin`): capped at 64 MiB. */
export async function readStdinValues(names: readonly string[]): Promise<Buffer[]> {
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

async function promptValues(names: string[]): Promise<Buffer[]> {
  const values: Buffer[] = []
  // eslint-disable-next-line no-await-in-loop -- one prompt at a time
  for (const name of names) values.push(await promptSecret(`Value for ${name}:`))
  return values
}
