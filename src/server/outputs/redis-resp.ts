/**
 * The Redis output's commands in RESP (Redis's wire format): a batch of event lines encoded once, into
 * one buffer, as `RPUSH key line...` (datatype list) or one `PUBLISH key line` per line (channel), and
 * handed to ioredis ready to write (./redis-link.ts).
 *
 * Why by hand: ioredis encodes a command by copying each argument into a buffer of parts
 * (MixedBuffers), then, in a pipeline, copies the commands into one more buffer, and it wants each
 * argument as one contiguous Buffer, which cost us a copy of every line too. Under the bench load that
 * was a fifth of the server's CPU (three copies of every event, a string write per argument and the
 * garbage of it all; bench/RESULTS.md, Redis section). A RESP bulk string is `$<length>\r\n<bytes>\r\n`
 * (https://redis.io/docs/latest/develop/reference/protocol-spec/), so each line is copied exactly once,
 * from the parts the intake gave (the metadata head and the event's own bytes), into the command.
 * A command a cut connection failed is split in two for its next send (splitCommand).
 */

/** One line of the output: the concatenation of these parts (kept as given until the batch is encoded). */
export type LineParts = readonly Buffer[]

const CRLF_LENGTH = 2
const CR = 13
const LF = 10
const ZERO = 48

/** The bytes of a line. */
export function lineLength(line: LineParts): number {
  let length = 0
  for (const part of line) length += part.length
  return length
}

/** Characters of `n` (a non-negative integer) in decimal. */
function digits(n: number): number {
  let count = 1
  while (n >= 10) {
    n = Math.floor(n / 10)
    count++
  }

  return count
}

/** The bytes of `$<length>\r\n<bytes>\r\n` (or `*<count>\r\n` with bulk false) for a value of `length` bytes. */
function framed(length: number, bulk = true): number {
  return 1 + digits(length) + CRLF_LENGTH + (bulk ? length + CRLF_LENGTH : 0)
}

class Writer {
  offset = 0
  constructor(readonly buffer: Buffer) {}

  /** `<marker><n>\r\n`, the digits written as bytes (a string write per argument costs a native call). */
  header(marker: string, n: number): void {
    const {buffer} = this
    buffer[this.offset++] = marker.charCodeAt(0)
    const end = this.offset + digits(n)
    for (let at = end - 1; at >= this.offset; at--) {
      buffer[at] = ZERO + (n % 10)
      n = Math.floor(n / 10)
    }

    this.offset = end
    this.crlf()
  }

  bulk(parts: LineParts, length: number): void {
    this.header('$', length)
    for (const part of parts) this.offset += part.copy(this.buffer, this.offset)
    this.crlf()
  }

  crlf(): void {
    this.buffer[this.offset++] = CR
    this.buffer[this.offset++] = LF
  }
}

/** `name key line...` as one RESP command (an array of bulk strings). */
export function encodeCommand(name: Buffer, key: Buffer, lines: readonly LineParts[]): Buffer {
  const lengths = lines.map(lineLength)
  let size = framed(lines.length + 2, false) + framed(name.length) + framed(key.length)
  for (const length of lengths) size += framed(length)
  const writer = new Writer(Buffer.allocUnsafe(size))
  writer.header('*', lines.length + 2)
  writer.bulk([name], name.length)
  writer.bulk([key], key.length)
  for (const [index, line] of lines.entries()) writer.bulk(line, lengths[index])
  return writer.buffer
}

/** The offset just past the `\r\n` that ends the header starting at `at` (`*<n>` or `$<n>`), and its number. */
function readHeader(command: Buffer, at: number): {n: number; next: number} {
  let n = 0
  let offset = at + 1
  while (command[offset] !== CR) n = n * 10 + command[offset++] - ZERO
  return {n, next: offset + CRLF_LENGTH}
}

/**
 * A command of ours (encodeCommand) with `name key` and two or more lines, as two commands: the first
 * half of its lines and the rest, each `name key line...`. Undefined for one line. Each line's bytes are
 * copied once more: only a batch sent again pays it.
 */
export function splitCommand(command: Buffer): [Buffer, Buffer] | undefined {
  const {n: count, next} = readHeader(command, 0)
  if (count < 4) return undefined
  /** where each argument starts: name, key, then the lines */
  const starts: number[] = []
  let offset = next
  for (let index = 0; index < count; index++) {
    starts.push(offset)
    const header = readHeader(command, offset)
    offset = header.next + header.n + CRLF_LENGTH
  }

  const lines = count - 2
  const half = Math.floor(lines / 2)
  const nameAndKey = command.subarray(starts[0], starts[2])
  const piece = (n: number, from: number, to: number) => {
    const header = Buffer.alloc(framed(n + 2, false))
    new Writer(header).header('*', n + 2)
    return Buffer.concat([header, nameAndKey, command.subarray(from, to)])
  }

  return [piece(half, starts[2], starts[2 + half]), piece(lines - half, starts[2 + half], command.length)]
}
