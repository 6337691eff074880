/**
 * The fail-closed rules of a configuration: what an `-E` override may not weaken without naming it,
 * and what a reload may not loosen compared with the configuration running. Decisions only, as messages.
 */
import {isScalar} from 'yaml'

import type {ServerConfig} from './server-config.js'
import {LEGACY_TOKEN, Note, Setting, TOKEN} from './settings.js'
import type {SettingList} from './sources.js'

/**
 * An -E may weaken authentication only by naming what it weakens: `-E apm-server.rum.enabled=true`
 * with a token in the file would turn anonymous access on by default, unseen.
 */
export function checkOverridesKeepAuth(settings: SettingList, config: ServerConfig, problem: Note): void {
  const fromFile = (setting: Setting) => !setting.where.startsWith('-') && (setting.node !== null || setting.literal !== undefined)
  const all = [...settings.items, ...settings.replaced]
  const fileToken = all.some((setting) => (setting.name === TOKEN || setting.name === LEGACY_TOKEN) && fromFile(setting))
  const rum = settings.get('apm-server.rum.enabled')
  if (!fileToken || !config.anonymous.enabled || settings.get('apm-server.auth.anonymous.enabled') || !rum?.where.startsWith('-E ')) return
  const literalTrue = (setting: Setting) => isScalar(setting.node) && (setting.node.value === true || setting.node.value === 'true')
  if (settings.replaced.some((setting) => setting.name === 'apm-server.rum.enabled' && fromFile(setting) && literalTrue(setting))) return
  problem(
    rum,
    `${rum.where}: turns on anonymous access (with a secret token, enabling RUM lets anonymous RUM agents in by default); say so with -E apm-server.auth.anonymous.enabled=true, or keep it off with -E apm-server.auth.anonymous.enabled=false`,
  )
}

/**
 * Why a reload from `running` to `next` must be refused: it may tighten authentication, never loosen
 * it. Removing the token, turning anonymous access on (enabling RUM does by default), letting more
 * agents or services in anonymously, raising the anonymous rate limits, and turning TLS off need a
 * restart, which is done on purpose. Applied as they come: a new token (rotation), a longer grace period
 * (it only keeps a token the server already accepted valid, for a bounded time, and never extends a
 * running one), a shorter one (it shortens a running one: ../auth.ts), RUM origins (CORS binds browsers, not attackers), sizes, certificates.
 */
export function reloadRefusals(running: ServerConfig, next: ServerConfig): string[] {
  const refusals: string[] = []
  const refuse = (setting: string, what: string) => refusals.push(`${setting}: a reload cannot ${what}; restart the server to do that on purpose`)
  if (running.ssl.enabled && !next.ssl.enabled) refuse('apm-server.ssl.enabled', 'turn TLS off')
  // Without a token anyone is let in: nothing can be loosened.
  if (running.secretToken === undefined) return refusals
  if (next.secretToken === undefined) {
    refuse(TOKEN, 'remove the secret token (the server would accept data from anyone)')
    return refusals
  }

  if (!next.anonymous.enabled) return refusals
  if (!running.anonymous.enabled) {
    const why = next.rum.enabled && !running.rum.enabled ? ' (enabling RUM turns it on by default: set apm-server.auth.anonymous.enabled: false to keep it off)' : ''
    refuse('apm-server.auth.anonymous.enabled', `turn on anonymous access${why}`)
    return refusals
  }

  if (letsMoreIn(running.anonymous.allowAgent, next.anonymous.allowAgent)) refuse('apm-server.auth.anonymous.allow_agent', 'let more agents in anonymously')
  if (letsMoreIn(running.anonymous.allowService, next.anonymous.allowService)) refuse('apm-server.auth.anonymous.allow_service', 'let more services in anonymously')

  const [before, after] = [running.anonymous.rateLimit, next.anonymous.rateLimit]
  if (after.eventLimit > before.eventLimit) refuse('apm-server.auth.anonymous.rate_limit.event_limit', 'raise the anonymous event rate limit')
  // More limiters means more buckets for a client with many addresses.
  if (after.ipLimit > before.ipLimit) refuse('apm-server.auth.anonymous.rate_limit.ip_limit', 'raise the number of anonymous clients limited apart')
  return refusals
}

/**
 * An allow list (allow_agent, allow_service) lets more in after than before. An empty list lets every
 * name in (anonymousIngestDenied), so emptying a list is the widest change and filling an empty one a
 * narrowing.
 */
function letsMoreIn(before: readonly string[], after: readonly string[]): boolean {
  if (before.length === 0) return false
  // A set: a list may hold a hundred thousand items within the config file's size cap.
  const allowed = new Set(before)
  return after.length === 0 || after.some((item) => !allowed.has(item))
}
