/**
 * Event lines queued for one publish: their bytes as the parts they were given in (kept, not copied),
 * each line followed by its newline, and each line's size, so that a batch can be cut between lines
 * (the file output rotates there). Any output that publishes in batches can hold its queue in one.
 */

const NEWLINE = Buffer.from('\n')

export class LineBatch {
  parts: Buffer[] = []
  lineSizes: number[] = []
  bytes = 0

  /** Adds one line, without its newline: a string, or the concatenation of byte parts. Returns its size in bytes, newline included. */
  add(line: string | readonly Buffer[]): number {
    let bytes = 0
    if (typeof line === 'string') {
      const data = Buffer.from(`${line}\n`, 'utf8')
      this.parts.push(data)
      bytes = data.length
    } else {
      for (const part of line) {
        this.parts.push(part)
        bytes += part.length
      }

      this.parts.push(NEWLINE)
      bytes++
    }

    this.lineSizes.push(bytes)
    this.bytes += bytes
    return bytes
  }

  /** The lines queued. */
  get count(): number {
    return this.lineSizes.length
  }

  /** Hands over what is queued and starts an empty batch. */
  take(): {parts: Buffer[]; lineSizes: number[]; bytes: number} {
    const {bytes, lineSizes, parts} = this
    this.parts = []
    this.lineSizes = []
    this.bytes = 0
    return {bytes, lineSizes, parts}
  }
}
