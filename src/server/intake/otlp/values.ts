/**
 * OTLP attribute values as apm-data reads them (input/otlp metadata.go, setLabel): the decoded message
 * shapes the converters read, a value as a label (strings cut at the keyword length, booleans as
 * strings, numbers as numbers, an array by the type of its first element, maps and bytes dropped), keys
 * with their dots made underscores, and a value as a string (a log record's body).
 */
import {KEYWORD_LENGTH} from './limits.js'

/** An AnyValue as protobufjs decodes it (and makes it from OTLP/JSON): unset members are null or absent. */
export interface AnyValue {
  stringValue?: null | string
  boolValue?: boolean | null
  intValue?: null | number
  doubleValue?: null | number
  arrayValue?: null | {values?: AnyValue[]}
  kvlistValue?: null | {values?: KeyValue[]}
  bytesValue?: null | Uint8Array
}

export interface KeyValue {
  key?: string
  value?: AnyValue | null
}

export type LabelValue = boolean | number | number[] | string | string[]
export type Labels = Record<string, LabelValue>

/** `text` cut to KEYWORD_LENGTH code points, as apm-data's truncate. */
export function truncate(text: string): string {
  if (text.length <= KEYWORD_LENGTH) return text
  let end = 0
  for (let points = 0; points < KEYWORD_LENGTH && end < text.length; points++) end += text.codePointAt(end)! > 0xff_ff ? 2 : 1
  return text.slice(0, end)
}

export function replaceDots(key: string): string {
  return key.includes('.') ? key.replaceAll('.', '_') : key
}

/** The member set in `value`, as apm-data's pcommon type switch sees it. */
export function kindOf(value: AnyValue | null | undefined): ValueKind {
  if (!value) return 'empty'
  // Own properties only: protobufjs keeps a default ("", 0, false) on the prototype for every member.
  for (const [member, kind] of MEMBERS) if (Object.hasOwn(value, member) && value[member] != null) return kind
  return 'empty'
}

export type ValueKind = 'array' | 'bool' | 'bytes' | 'double' | 'empty' | 'int' | 'kvlist' | 'string'

const MEMBERS: ReadonlyArray<[keyof AnyValue, ValueKind]> = [
  ['stringValue', 'string'],
  ['intValue', 'int'],
  ['boolValue', 'bool'],
  ['doubleValue', 'double'],
  ['arrayValue', 'array'],
  ['kvlistValue', 'kvlist'],
  ['bytesValue', 'bytes'],
]

/** The string member of a value, whole; undefined for any other member. */
export function stringMember(value: AnyValue | null | undefined): string | undefined {
  return kindOf(value) === 'string' ? value!.stringValue! : undefined
}

/** The integer member of a value; undefined for any other member. */
export function intMember(value: AnyValue | null | undefined): number | undefined {
  return kindOf(value) === 'int' ? Number(value!.intValue) : undefined
}

/** A value as apm-data's setLabel keeps it; undefined when it keeps nothing (maps, bytes, empty, empty arrays). */
export function labelValue(value: AnyValue | null | undefined): LabelValue | undefined {
  switch (kindOf(value)) {
    case 'string': {
      return truncate(value!.stringValue!)
    }

    case 'bool': {
      return String(value!.boolValue)
    }

    case 'int': {
      return Number(value!.intValue)
    }

    case 'double': {
      return value!.doubleValue!
    }

    case 'array': {
      return arrayLabel(value!.arrayValue!.values ?? [])
    }

    default: {
      return undefined
    }
  }
}

/** An array label: the elements of the first element's type (strings and booleans as strings, numbers as numbers). */
function arrayLabel(values: AnyValue[]): LabelValue | undefined {
  if (values.length === 0) return undefined
  const kind = kindOf(values[0])
  const same = values.filter((item) => kindOf(item) === kind)
  switch (kind) {
    case 'string': {
      return same.map((item) => truncate(item.stringValue!))
    }

    case 'bool': {
      return same.map((item) => String(item.boolValue))
    }

    case 'int': {
      return same.map((item) => Number(item.intValue))
    }

    case 'double': {
      return same.map((item) => item.doubleValue!)
    }

    default: {
      return undefined
    }
  }
}

/**
 * Sets `key` (dots made underscores) in `labels` when apm-data keeps the value. Labels are plain objects
 * (JSON.stringify takes its fast path on them, not on prototype-less ones), so a key named `__proto__`
 * is defined, never assigned: it stays a label and cannot replace the object's prototype.
 */
export function setLabel(labels: Labels, key: string, value: AnyValue | null | undefined): void {
  const kept = labelValue(value)
  if (kept !== undefined) putLabel(labels, key, kept)
}

/** Sets `key` (dots made underscores) to a value {@link labelValue} kept, as {@link setLabel}. */
export function putLabel(labels: Labels, key: string, kept: LabelValue): void {
  const name = replaceDots(key)
  if (name === '__proto__') Object.defineProperty(labels, name, {configurable: true, enumerable: true, value: kept, writable: true})
  else labels[name] = kept
}

/** The string member of a value, cut; '' for any other member. */
export function stringOf(value: AnyValue | null | undefined): string {
  const text = stringMember(value)
  return text === undefined ? '' : truncate(text)
}

/** A value as pcommon's AsString writes it: a map or an array as JSON, bytes as base64, an empty value as ''. */
export function valueAsString(value: AnyValue | null | undefined): string {
  switch (kindOf(value)) {
    case 'string': {
      return value!.stringValue!
    }

    case 'empty': {
      return ''
    }

    case 'bytes': {
      return Buffer.from(value!.bytesValue!).toString('base64')
    }

    default: {
      return JSON.stringify(plain(value))
    }
  }
}

/** A value as plain JSON data (a map as an object, bytes as base64). Its depth is bounded by the request's (OTLP_MAX_DEPTH). */
function plain(value: AnyValue | null | undefined): unknown {
  switch (kindOf(value)) {
    case 'string': {
      return value!.stringValue
    }

    case 'bool': {
      return value!.boolValue
    }

    case 'int': {
      return Number(value!.intValue)
    }

    case 'double': {
      return value!.doubleValue
    }

    case 'array': {
      return (value!.arrayValue!.values ?? []).map((item) => plain(item))
    }

    case 'kvlist': {
      return Object.fromEntries((value!.kvlistValue!.values ?? []).map((pair) => [pair.key ?? '', plain(pair.value)]))
    }

    case 'bytes': {
      return Buffer.from(value!.bytesValue!).toString('base64')
    }

    default: {
      return null
    }
  }
}
