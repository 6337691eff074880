/**
 * JSON text written piece by piece, the same bytes JSON.stringify writes for the same object: the OTLP
 * conversion assembles its busiest event lines (transactions and spans) as text, which takes about half the
 * time of building objects and serialising them, and keeps JSON.stringify for the rare, small
 * parts (labels, links) whose key order it decides. Members are gathered as `,"key":value` texts, so
 * that an object is `{` + all of them but the first comma + `}`.
 */

/** A string as a JSON string (JSON.stringify escapes it). */
export const quote = JSON.stringify as (text: string) => string

/** A number as JSON writes it: `null` for NaN and the infinities. */
export function number(value: number): string {
  return Number.isFinite(value) ? String(value) : 'null'
}
