/**
 * Redaction of the resolved configuration: what `export config` prints and what a load returns as
 * `redacted`. A value that came from the keystore is shown as {@link REDACTED}, and so is, whatever its
 * source, a setting whose name says it holds a secret.
 */
import type {Resolved} from './settings.js'
import type {SettingList} from './sources.js'

export const REDACTED = '[redacted]'

/** Settings with these names are redacted in exported config whatever their source. */
const SENSITIVE_NAME = /(secret_token|password|passphrase|api_key)$/i

/** The setting's (or mapping key's) name says it holds a secret. */
export function hasSensitiveName(name: string): boolean {
  return SENSITIVE_NAME.test(name)
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
    node[last] = entry ? entry.shown : null
  }

  return tree
}
