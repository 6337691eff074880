/**
 * JSON text written piece by piece, the same bytes JSON.stringify writes for the same object: the OTLP
 * conversion assembles its busiest event lines (transactions and spans) as text, which takes less than
 * half the time of building objects and serialising them, and keeps JSON.stringify for the rare, small
 * parts (labels, links) whose key order it decides.
 */

/** A string as a JSON string (JSON.stringify escapes it). */
export const quote = JSON.stringify as (text: string) => string

/** A number as JSON writes it: `null` for NaN and the infinities. */
export function number(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null'
}

/** A flat object of strings and numbers, keys in the order given, undefined members left out (as JSON.stringify leaves them). */
export function flatObject(members: ReadonlyArray<readonly [string, number | string | undefined]>): string {
  let text = ''
  for (const [key, value] of members) {
    if (value === undefined) continue
    text += `${text === '' ? '{' : ','}"${key}":${typeof value === 'number' ? number(value) : quote(value)}`
  }

  return text === '' ? '{}' : `${text}}`
}

/** Members (`"key":value` texts) as an object. */
export function objectOf(members: readonly string[]): string {
  return `{${members.join(',')}}`
}
