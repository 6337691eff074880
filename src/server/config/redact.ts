/**
 * Redaction of the resolved configuration: what `export config` prints and what a load returns as
 * `redacted`. A value that came from the keystore is shown as {@link REDACTED}, and so is, whatever its
 * source, a setting whose name says it holds a secret (and output.redis.username), and the credentials
 * inside a Redis host URL.
 */
import type {Resolved} from './settings.js'
import type {SettingList} from './sources.js'

export const REDACTED = '[redacted]'

/** Settings with these names are redacted in exported config whatever their source. */
const SENSITIVE_NAME = /(secret_token|password|passphrase|api_key)$/i
/** These settings too: a Redis ACL user name is half of the output's credential. */
const SENSITIVE_SETTINGS = new Set(['output.redis.username'])
/** Settings of URLs whose user information (`redis://user:password@host`) is redacted whatever their source. */
const URL_SETTINGS = new Set(['output.redis.hosts'])

/** The setting's (or mapping key's) name says it holds a secret. */
export function hasSensitiveName(name: string): boolean {
  return SENSITIVE_NAME.test(name) || SENSITIVE_SETTINGS.has(name)
}

/** A URL (or host) with its user information, if any, replaced by {@link REDACTED}. */
export function redactUserInfo(text: string): string {
  return text.replace(/^((?:[A-Za-z][\w+.-]*:\/\/)?)[^/]*@/, `$1${REDACTED}@`)
}

function redactUrls(shown: unknown): unknown {
  if (typeof shown === 'string') return redactUserInfo(shown)
  return Array.isArray(shown) ? shown.map((item) => redactUrls(item)) : shown
}

/** The settings as a tree of sections, each value as it may be shown. */
export function redactedTree(settings: SettingList, resolved: Map<string, Resolved>): Record<string, unknown> {
  const tree: Record<string, unknown> = {}
  for (const setting of settings.items) {
    const entry = resolved.get(setting.name)
    const parts = setting.name.split('.')
    let node = tree
    for (const part of parts.slice(0, -1)) {
      if (typeof node[part] !== 'object' || node[part] === null) node[part] = {}
      node = node[part] as Record<string, unknown>
    }

    const last = parts.at(-1) as string
    node[last] = entry ? (URL_SETTINGS.has(setting.name) ? redactUrls(entry.shown) : entry.shown) : null
  }

  return tree
}
