/**
 * The JSON scanner of the intake's fast path: it checks, without parsing into objects, that an event
 * line is exactly `{"<type>": {...}}` in valid JSON within the line bounds of ../limits.ts, so that
 * the line's own bytes can be stored behind the metadata. It only ever says yes to what JSON.parse
 * accepts; anything else goes the slow way (./events.ts), which is the authority on errors.
 */
import {isUtf8} from 'node:buffer'

import {MAX_LINE_CONTAINERS, MAX_LINE_DEPTH} from '../limits.js'
import {EVENT_TYPES} from './model.js'

const SPACE = 0x20
const TAB = 0x09
const QUOTE = 0x22
const BACKSLASH = 0x5c
const COLON = 0x3a
const COMMA = 0x2c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
/** The event types' keys as bytes, quotes included: compared in place, no string made per line. */
const EVENT_TYPE_KEYS = [...EVENT_TYPES].map((type) => Buffer.from(`"${type}"`, 'latin1'))

/**
 * For a line that is exactly one JSON object with one member, an event type whose value is an object
 * (`{"span": {...}}`, blanks around tokens allowed), in valid UTF-8 and without carriage returns: the
 * bytes after its opening brace, up to its closing brace, so the output line is the metadata head and
 * these bytes. Undefined for anything else, which is then parsed and judged the slow way: this only ever
 * accepts what `JSON.parse` accepts and the slow path would store (within the same line bounds), never
 * reports an error itself.
 */
export function eventMembers(line: Buffer): Buffer | undefined {
  const end = line.length
  let i = skipBlanks(line, 0, end)
  if (line[i] !== OPEN_BRACE) return undefined
  const keyStart = skipBlanks(line, i + 1, end)
  if (line[keyStart] !== QUOTE) return undefined
  const keyEnd = line.indexOf(QUOTE, keyStart + 1)
  // A key with escapes never matches.
  if (keyEnd === -1 || !isEventTypeKey(line, keyStart, keyEnd + 1)) return undefined
  i = skipBlanks(line, keyEnd + 1, end)
  if (line[i] !== COLON) return undefined
  i = skipBlanks(line, i + 1, end)
  if (line[i] !== OPEN_BRACE) return undefined
  // The line's own braces are its first level and its first container.
  i = scanJsonValue(line, i, end, MAX_LINE_DEPTH - 1, MAX_LINE_CONTAINERS - 1)
  if (i === -1) return undefined
  i = skipBlanks(line, i, end)
  if (line[i] !== CLOSE_BRACE || skipBlanks(line, i + 1, end) !== end) return undefined
  // Invalid UTF-8 is stored as U+FFFD by the slow path, which decodes.
  if (!isUtf8(line)) return undefined
  return line.subarray(keyStart, i + 1)
}

/** Whether line[start, end) is one of EVENT_TYPE_KEYS. */
function isEventTypeKey(line: Buffer, start: number, end: number): boolean {
  for (const key of EVENT_TYPE_KEYS) {
    if (key.length !== end - start) continue
    let at = 1
    while (at < key.length && key[at] === line[start + at]) at++
    if (at === key.length) return true
  }

  return false
}

/** Spaces and tabs: the JSON blanks a line can hold, less the carriage return (a line break to some readers). */
function skipBlanks(bytes: Buffer, i: number, end: number): number {
  while (i < end) {
    const c = bytes[i]
    if (c !== SPACE && c !== TAB) break
    i++
  }

  return i
}

/**
 * Checks that a JSON value (RFC 8259, as JSON.parse reads it) starts at `start`: the index after it, or
 * -1. Hand-written because the JSON libraries at hand parse into objects, which is the cost this fast
 * path exists to avoid (about 2.4x on event lines); the tests hold it to JSON.parse's verdict on every
 * one-byte change of an event line. Containers are tracked on an explicit stack, so deep nesting costs memory, not the call stack.
 * Blanks are spaces and tabs only (see skipBlanks); bytes from 0x80 up are allowed in strings only.
 * A value nested deeper than `maxDepth` levels, or holding more than `maxContainers` arrays and objects
 * (itself included), is refused as the slow path's bounds refuse it (limits.ts), counted the same way.
 */
export function scanJsonValue(bytes: Buffer, start: number, end: number, maxDepth = MAX_LINE_DEPTH, maxContainers = MAX_LINE_CONTAINERS): number {
  // the closing bracket each open container waits for, innermost last
  const open: number[] = []
  let containers = 0
  let i = start
  for (;;) {
    // A value.
    i = skipBlanks(bytes, i, end)
    const c = bytes[i]
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (open.length >= maxDepth || ++containers > maxContainers) return -1
      const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET
      i = skipBlanks(bytes, i + 1, end)
      if (bytes[i] === close) {
        i++
      } else {
        open.push(close)
        if (close === CLOSE_BRACE && (i = scanKey(bytes, i, end)) === -1) return -1
        continue
      }
    } else if (c === QUOTE) {
      if ((i = scanString(bytes, i, end)) === -1) return -1
    } else if ((i = scanLiteral(bytes, i, end)) === -1) {
      return -1
    }

    // What follows a value: closing brackets, then a comma (and a key in an object), or the end.
    for (;;) {
      const depth = open.length
      if (depth === 0) return i
      i = skipBlanks(bytes, i, end)
      const next = bytes[i]
      const close = open[depth - 1]
      if (next === COMMA) {
        if (close === CLOSE_BRACKET) i++
        else if ((i = scanKey(bytes, skipBlanks(bytes, i + 1, end), end)) === -1) return -1
        break
      }

      if (next !== close) return -1
      open.pop()
      i++
    }
  }
}

/** A string and its colon: the index after the colon, or -1. */
function scanKey(bytes: Buffer, i: number, end: number): number {
  if (bytes[i] !== QUOTE || (i = scanString(bytes, i, end)) === -1) return -1
  i = skipBlanks(bytes, i, end)
  return bytes[i] === COLON ? i + 1 : -1
}

/** Per byte: 1 for a hex digit; 2 for what may follow a backslash besides u (" \\ / b f n r t). */
const ESCAPE_TABLE = new Uint8Array(256)
for (const c of '0123456789abcdefABCDEF') ESCAPE_TABLE[c.charCodeAt(0)] |= 1
for (const c of '"\\/bfnrt') ESCAPE_TABLE[c.charCodeAt(0)] |= 2

/** Per byte: 1 where a string goes on plainly (not a quote, a backslash or a control character). */
const STRING_PLAIN = new Uint8Array(256)
for (let c = SPACE; c < 256; c++) STRING_PLAIN[c] = c === QUOTE || c === BACKSLASH ? 0 : 1

/** A string starting at its opening quote: the index after its closing quote, or -1. */
function scanString(bytes: Buffer, i: number, end: number): number {
  i++
  for (;;) {
    while (i < end && STRING_PLAIN[bytes[i]] === 1) i++
    if (i >= end) return -1
    const c = bytes[i]
    if (c === QUOTE) return i + 1
    if (c !== BACKSLASH) return -1
    const escape = bytes[i + 1]
    if (escape === 0x75) {
      // \uXXXX
      if (i + 6 > end || !(ESCAPE_TABLE[bytes[i + 2]] & ESCAPE_TABLE[bytes[i + 3]] & ESCAPE_TABLE[bytes[i + 4]] & ESCAPE_TABLE[bytes[i + 5]] & 1)) return -1
      i += 6
    } else {
      if (i + 2 > end || !(ESCAPE_TABLE[escape] & 2)) return -1
      i += 2
    }
  }
}

/** A number, true, false or null: the index after it, or -1. */
function scanLiteral(bytes: Buffer, i: number, end: number): number {
  switch (bytes[i]) {
    case 0x74: {
      // true
      return i + 4 <= end && bytes[i + 1] === 0x72 && bytes[i + 2] === 0x75 && bytes[i + 3] === 0x65 ? i + 4 : -1
    }

    case 0x66: {
      // false
      return i + 5 <= end && bytes[i + 1] === 0x61 && bytes[i + 2] === 0x6c && bytes[i + 3] === 0x73 && bytes[i + 4] === 0x65 ? i + 5 : -1
    }

    case 0x6e: {
      // null
      return i + 4 <= end && bytes[i + 1] === 0x75 && bytes[i + 2] === 0x6c && bytes[i + 3] === 0x6c ? i + 4 : -1
    }

    default: {
      return scanNumber(bytes, i, end)
    }
  }
}

/** -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? : the index after it, or -1. */
function scanNumber(bytes: Buffer, i: number, end: number): number {
  if (bytes[i] === 0x2d) i++
  if (i < end && bytes[i] === 0x30) i++
  else if ((i = scanDigits(bytes, i, end)) === -1) return -1
  if (i < end && bytes[i] === 0x2e && (i = scanDigits(bytes, i + 1, end)) === -1) return -1
  if (i < end && (bytes[i] === 0x65 || bytes[i] === 0x45)) {
    i++
    if (i < end && (bytes[i] === 0x2b || bytes[i] === 0x2d)) i++
    if ((i = scanDigits(bytes, i, end)) === -1) return -1
  }

  return i
}

/** One or more digits: the index after them, or -1. */
function scanDigits(bytes: Buffer, i: number, end: number): number {
  const first = i
  while (i < end && bytes[i] >= 0x30 && bytes[i] <= 0x39) i++
  return i === first ? -1 : i
}
