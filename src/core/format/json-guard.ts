/**
 * JSON.parse allocates tens of bytes for every "[" or "{" it opens, so a forged payload of a few MiB of
 * nested brackets costs gigabytes before it is refused. Both formats have a fixed, shallow structure:
 * checking the nesting depth first (one pass, no allocation) bounds what JSON.parse can be made to do.
 * A hand-written scan, because what is needed is a refusal before any parser allocates.
 */
const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPENERS = new Set([0x5b, 0x7b])
const CLOSERS = new Set([0x5d, 0x7d])

/**
 * True when no array or object in `json` is nested deeper than `maxDepth` and there are at most
 * `maxContainers` arrays and objects in all (strings are skipped). The count matters as much as the depth:
 * a flat list of ten million `[]` is three levels deep and costs as much as deep nesting.
 */
export function jsonDepthWithin(json: Uint8Array, maxDepth: number, maxContainers = Number.POSITIVE_INFINITY): boolean {
  let depth = 0
  let containers = 0
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json[i]
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
    } else if (c === QUOTE) {
      inString = true
    } else if (OPENERS.has(c)) {
      if (++depth > maxDepth || ++containers > maxContainers) return false
    } else if (CLOSERS.has(c)) {
      depth--
    }
  }

  return true
}
