/**
 * JSON.parse allocates tens of bytes for every "[" or "{" it opens, so a forged payload of a few MiB of
 * nested brackets costs gigabytes before it is refused. Both formats have a fixed, shallow structure:
 * checking the nesting depth first (one pass, no allocation) bounds what JSON.parse can be made to do.
 * A hand-written scan, because what is needed is a refusal before any parser allocates.
 */
const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_BRACKET = 0x5b
const OPEN_BRACE = 0x7b
const CLOSE_BRACKET = 0x5d
const CLOSE_BRACE = 0x7d

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
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > maxDepth || ++containers > maxContainers) return false
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--
    }
  }

  return true
}

/**
 * True when `text` holds at most `maxContainers` "[" and "{" characters, inside strings or not: a bound
 * on the arrays and objects JSON.parse can make of it. Found by the engine's string search, one call per
 * bracket and never more than maxContainers + 1, instead of a loop over every byte, which ran interpreted
 * in a CLI's short life: over the index of a keystore of 1,000 keys (23 KB) that loop took 1 to 4 ms of
 * every `keystore list`, this search about 0.2 ms. It bounds no depth: for a format whose reader checks
 * the parsed structure anyway, since V8's JSON.parse is not recursive (a million nested arrays parse), and
 * the count alone bounds what it allocates. Brackets inside strings count too, so it errs on refusing.
 */
export function jsonBracketsWithin(text: string, maxContainers: number): boolean {
  let count = 0
  for (let at = text.indexOf('['); at !== -1; at = text.indexOf('[', at + 1)) if (++count > maxContainers) return false
  for (let at = text.indexOf('{'); at !== -1; at = text.indexOf('{', at + 1)) if (++count > maxContainers) return false
  return true
}

const COMMA = 0x2c
const COLON = 0x3a

/** {@link jsonValueCount}'s answers when it stopped early. */
export const JSON_TOO_DEEP = -1
export const JSON_TOO_MANY = -2

/**
 * The number of values in `json` (arrays, objects, members' names and scalars), reckoned from its
 * brackets and separators; JSON_TOO_DEEP when an array or object is nested deeper than `maxDepth`,
 * JSON_TOO_MANY when the count passes `maxValues`. What a parser will allocate follows the values, not the bytes: a long string is one
 * value however long.
 */
export function jsonValueCount(json: Uint8Array, maxDepth: number, maxValues: number): number {
  let depth = 0
  // The first value of the text, and of every container, has no separator before it.
  let values = 1
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json[i]
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
    } else if (c === QUOTE) {
      inString = true
    } else if (c === COMMA || c === COLON) {
      if (++values > maxValues) return JSON_TOO_MANY
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > maxDepth) return JSON_TOO_DEEP
      if (++values > maxValues) return JSON_TOO_MANY
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--
    }
  }

  return values
}
