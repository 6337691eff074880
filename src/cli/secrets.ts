/**
 * Where secrets come from: environment, a file named by the environment, piped stdin, or a masked
 * prompt on a terminal, in that order. Never argv. Prompts write to stderr so stdout stays clean
 * for `show` and `--json`; without a terminal nothing prompts: we fail fast with the flag that helps.
 */
import {KeystoreError} from '../core/errors.js'
import {passwordFromEnvironment} from '../core/password-env.js'

export function interactive(): boolean {
  return Boolean(process.stdin.isTTY)
}

type Prompts = typeof import('@inquirer/prompts')

async function prompts(): Promise<Prompts> {
  return import('@inquirer/prompts')
}

/** Ctrl-C at a prompt becomes ECANCELED (exit 130); nothing has been changed at that point. */
async function asking<T>(ask: () => Promise<T>): Promise<T> {
  try {
    return await ask()
  } catch (error) {
    if ((error as Error)?.name === 'ExitPromptError' || (error as Error)?.name === 'AbortPromptError') {
      throw new KeystoreError('ECANCELED', 'canceled; nothing was changed')
    }

    throw error
  }
}

const PROMPT_CONTEXT = {output: process.stderr}

export async function promptSecret(message: string): Promise<Buffer> {
  const {password} = await prompts()
  const answer = await asking(() => password({mask: '*', message, toggleMask: false}, PROMPT_CONTEXT))
  return Buffer.from(answer, 'utf8')
}

export async function confirm(message: string): Promise<boolean> {
  const {confirm: ask} = await prompts()
  return asking(() => ask({default: false, message}, PROMPT_CONTEXT))
}

/** Asks twice until both answers match and are not empty. */
export async function promptNewPassword(): Promise<Buffer> {
  for (;;) {
    // eslint-disable-next-line no-await-in-loop -- prompts are sequential
    const first = await promptSecret('New keystore password:')
    if (first.length === 0) {
      process.stderr.write('The password must not be empty; try again.\n')
      continue
    }

    // eslint-disable-next-line no-await-in-loop -- prompts are sequential
    const second = await promptSecret('Repeat the password:')
    if (first.equals(second)) return first
    process.stderr.write('The passwords do not match; try again.\n')
  }
}

/** The password of an existing keystore: environment, password file, then a prompt on a terminal. */
export async function readPassword(): Promise<Buffer> {
  const fromEnvironment = await passwordFromEnvironment(process.env)
  if (fromEnvironment) return fromEnvironment
  if (interactive()) return promptSecret('Keystore password:')
  throw new KeystoreError(
    'ENOPASSWORD',
    'the keystore is password protected and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
  )
}

/** A new password for `create --password`: the same sources as for opening, else asked twice. */
export async function readNewPassword(): Promise<Buffer> {
  const fromEnvironment = await passwordFromEnvironment(process.env)
  if (fromEnvironment) return fromEnvironment
  if (interactive()) return promptNewPassword()
  throw new KeystoreError(
    'ENOPASSWORD',
    '--password needs a password and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD or APM_SERVER_KEYSTORE_PASSWORD_FILE',
  )
}

/**
 * All of stdin as bytes, at most `maxBytes` of them: past that, reading stops (the pipe is closed, so
 * the writer gets EPIPE) and `tooBig` is thrown. `head -c 1G /dev/zero | ... --stdin` is never buffered.
 */
export async function readStdin(maxBytes: number, tooBig: () => KeystoreError): Promise<Buffer> {
  const chunks: Buffer[] = []
  let length = 0
  // Leaving the loop by a throw destroys the stream: nothing more is read.
  for await (const chunk of process.stdin) {
    length += (chunk as Buffer).length
    if (length > maxBytes) throw tooBig()
    chunks.push(chunk as Buffer)
  }

  return Buffer.concat(chunks, length)
}

/** Removes one trailing "\n" or "\r\n", and nothing else. */
export function stripOneNewline(data: Buffer): Buffer {
  if (data.length > 0 && data.at(-1) === 0x0a) {
    return data.subarray(0, data.length > 1 && data.at(-2) === 0x0d ? -2 : -1)
  }

  return data
}

/** Splits stdin into lines ("\n" or "\r\n" endings), for one value per key. */
export function splitLines(data: Buffer): Buffer[] {
  const lines: Buffer[] = []
  let start = 0
  for (let i = data.indexOf(0x0a); i !== -1; i = data.indexOf(0x0a, start)) {
    lines.push(stripOneNewline(data.subarray(start, i + 1)))
    start = i + 1
  }

  if (start < data.length) lines.push(data.subarray(start))
  return lines
}
