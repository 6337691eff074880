/**
 * `${KEY}` references in configuration values, as Beats writes them. Pure: no I/O, no environment,
 * no keystore. The caller supplies the lookup, which decides the order of sources.
 *
 * Syntax:
 * - `${KEY}` the value of KEY;
 * - `${KEY:default}` the default when KEY is unset or empty (the default may hold references);
 * - `${KEY:?message}` KEY is required: when it is unset or empty, `message` is the problem;
 * - `${A_${B}}` nested: the name is resolved first;
 * - `$$` is one literal `$` (so `$${KEY}` is the text `${KEY}`); any other lone `$` is itself.
 *
 * Resolved values are strings, exactly as the lookup returned them: never split, trimmed or coerced.
 * A default ends at the first `}`: it cannot contain one.
 */

/** Literal text. */
export interface TextPart {
  kind: 'text'
  text: string
}

/** One `${...}`. */
export interface Reference {
  kind: 'reference'
  /** the key name; may itself hold references */
  name: Part[]
  /** `${KEY:default}` */
  fallback?: Part[]
  /** `${KEY:?message}`: the message as written, possibly empty */
  required?: string
  /** the reference as written, for messages: never a resolved value */
  source: string
}

export type Part = Reference | TextPart

export interface ParsedTemplate {
  parts: Part[]
  /** syntax problems, which echo none of the text (it may be a secret written inline); when there
   *  are any, `parts` is incomplete */
  errors: string[]
}

/** What a lookup found for a name. */
export interface LookupResult {
  value: string
  /** the value is a secret (came from the keystore): anything built from it must be redacted */
  sensitive?: boolean
  /** the source has the name but cannot give a usable value; the message names no secret */
  problem?: string
  /** which source answered (the caller's label, e.g. "keystore"), for explaining where a value came from */
  source?: string
}

/**
 * Told of every name looked up: `found` when a source had it (with what the lookup returned), else
 * `default` when the reference's default was used, or `missing`.
 */
export type LookupObserver = (name: string, outcome: 'default' | 'found' | 'missing', found?: LookupResult) => void

/** Returns undefined when no source has the name. An empty value counts as unset. */
export type Lookup = (name: string) => LookupResult | undefined

export type ReferenceProblem =
  /** no source has the key (or only an empty value); `key` is set when the name was written literally */
  | {kind: 'unset'; reference: string; key?: string}
  /** `${KEY:?message}` with KEY unset; `message` is the configured one, possibly empty */
  | {kind: 'required'; reference: string; key?: string; message: string}
  /** the name, once resolved, is not a valid key name (it is not shown: it may hold a secret) */
  | {kind: 'bad-name'; reference: string}
  /** the lookup had the key but reported a problem with it */
  | {kind: 'lookup'; reference: string; message: string}
  /** the text is not a valid template */
  | {kind: 'syntax'; message: string}

export interface Resolution {
  /** undefined when there are problems */
  value?: string
  /** some part of the value (or of a name or default that chose it) came from a sensitive source */
  sensitive: boolean
  problems: ReferenceProblem[]
}

/** Keystore key names and environment variable names that can be looked up. */
const REFERENCE_NAME = /^[A-Za-z0-9_.-]{1,255}$/

/** Far deeper than any real config; a bound keeps a hostile value from exhausting the stack. */
export const MAX_REFERENCE_DEPTH = 16

type Stop = '' | '}' | '}:'

interface Cursor {
  text: string
  at: number
  depth: number
  errors: string[]
}

/** Parses `text`; never throws. */
export function parseTemplate(text: string): ParsedTemplate {
  const cursor: Cursor = {at: 0, depth: 0, errors: [], text}
  const parts = parseSequence(cursor, '')
  return {errors: cursor.errors, parts}
}

/** Reads parts until one of the `stop` characters (not consumed) or the end of the text. */
function parseSequence(cursor: Cursor, stop: Stop): Part[] {
  const parts: Part[] = []
  let text = ''
  const flush = () => {
    if (text) parts.push({kind: 'text', text})
    text = ''
  }

  const {text: source} = cursor
  while (cursor.at < source.length) {
    const char = source[cursor.at]
    if (stop.includes(char)) break
    if (char === '$' && source[cursor.at + 1] === '$') {
      text += '$'
      cursor.at += 2
    } else if (char === '$' && source[cursor.at + 1] === '{') {
      flush()
      const reference = parseReference(cursor)
      if (!reference) return parts
      parts.push(reference)
    } else {
      text += char
      cursor.at++
    }
  }

  flush()
  return parts
}

/** At `${`: reads through the matching `}`. Returns undefined (and records an error) when it is not closed. */
function parseReference(cursor: Cursor): Reference | undefined {
  const start = cursor.at
  if (cursor.depth >= MAX_REFERENCE_DEPTH) {
    cursor.errors.push(`reference at character ${start + 1} is nested more than ${MAX_REFERENCE_DEPTH} deep; simplify it`)
    return undefined
  }

  cursor.at += 2
  cursor.depth++
  const errorsBefore = cursor.errors.length
  const name = parseSequence(cursor, '}:')
  let fallback: Part[] | undefined
  let required: string | undefined
  if (cursor.errors.length === errorsBefore && cursor.text[cursor.at] === ':') {
    cursor.at++
    if (cursor.text[cursor.at] === '?') {
      cursor.at++
      const end = cursor.text.indexOf('}', cursor.at)
      required = cursor.text.slice(cursor.at, end === -1 ? undefined : end)
      cursor.at = end === -1 ? cursor.text.length : end
    } else {
      fallback = parseSequence(cursor, '}')
    }
  }

  cursor.depth--

  if (cursor.errors.length > errorsBefore) return undefined
  if (cursor.text[cursor.at] !== '}') {
    cursor.errors.push(`unclosed reference at character ${start + 1}; add the closing "}" (write "$$" for a literal "$")`)
    return undefined
  }

  cursor.at++
  if (name.length === 0) {
    cursor.errors.push(`reference at character ${start + 1} has no key name; write \${KEY}`)
    return undefined
  }

  const source = cursor.text.slice(start, cursor.at)

  return {kind: 'reference', name, source, ...(fallback === undefined ? {} : {fallback}), ...(required === undefined ? {} : {required})}
}

/** The key name when it is written without nested references. */
function literalName(parts: Part[]): string | undefined {
  return parts.every((part) => part.kind === 'text') ? parts.map((part) => (part as TextPart).text).join('') : undefined
}

/**
 * Resolves parsed parts. Every problem is collected (not only the first); a default is resolved only
 * when it is used.
 */
export function resolveParts(parts: Part[], lookup: Lookup, observe?: LookupObserver): Resolution {
  const problems: ReferenceProblem[] = []
  let sensitive = false
  let value = ''
  for (const part of parts) {
    if (part.kind === 'text') {
      value += part.text
      continue
    }

    const resolved = resolveReference(part, lookup, observe)
    sensitive ||= resolved.sensitive
    problems.push(...resolved.problems)
    if (resolved.value !== undefined) value += resolved.value
  }

  return problems.length > 0 ? {problems, sensitive} : {problems, sensitive, value}
}

function resolveReference(reference: Reference, lookup: Lookup, observe?: LookupObserver): Resolution {
  const name = resolveParts(reference.name, lookup, observe)
  if (name.value === undefined) return name
  const {sensitive} = name
  if (!REFERENCE_NAME.test(name.value)) return {problems: [{kind: 'bad-name', reference: reference.source}], sensitive}
  const found = lookup(name.value)
  const key = literalName(reference.name)
  const usable = found !== undefined && (found.problem !== undefined || found.value !== '')
  observe?.(name.value, usable ? 'found' : reference.fallback ? 'default' : 'missing', usable ? found : undefined)
  if (found?.problem !== undefined) return {problems: [{kind: 'lookup', message: found.problem, reference: reference.source}], sensitive}
  if (found && found.value !== '') return {problems: [], sensitive: sensitive || Boolean(found.sensitive), value: found.value}
  if (reference.fallback) {
    const fallback = resolveParts(reference.fallback, lookup, observe)
    return {...fallback, sensitive: sensitive || fallback.sensitive}
  }

  const problem: ReferenceProblem =
    reference.required === undefined
      ? {kind: 'unset', reference: reference.source, ...(key === undefined ? {} : {key})}
      : {kind: 'required', message: reference.required, reference: reference.source, ...(key === undefined ? {} : {key})}
  return {problems: [problem], sensitive}
}

/** Parses and resolves `text`; syntax errors come back as problems of kind 'syntax'. */
export function resolveTemplate(text: string, lookup: Lookup, observe?: LookupObserver): Resolution {
  const parsed = parseTemplate(text)
  if (parsed.errors.length > 0) return {problems: parsed.errors.map((message) => ({kind: 'syntax', message})), sensitive: false}
  return resolveParts(parsed.parts, lookup, observe)
}
