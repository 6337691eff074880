/**
 * Which output is enabled, and the `output.redis` section read into {@link RedisOutputConfig}.
 *
 * Exactly one output may be enabled, as Beats requires (libbeat refuses "more than one namespace
 * configured accessing 'output'", and a config whose outputs are all disabled): a section is enabled
 * when it is written and its `enabled` is not false. The file output is the embedded default: it is
 * used when no output section is written at all.
 *
 * `output.redis` takes the options and defaults of Beats' Redis output (libbeat outputs/redis): hosts as
 * `host`, `host:port` or redis:// / rediss:// URLs (a URL's credentials win over username/password),
 * port 6379, key "apm-server" (the deprecated `index` still read), datatype list (RPUSH) or channel
 * (PUBLISH), timeout 5 s (a number is seconds), bulk_max_size 2048, backoff 1 s doubling to 60 s,
 * max_retries 3, loadbalance true, and ssl.* for TLS. Messages name a host by its position, never its
 * text: a URL may hold a password.
 */
import path from 'node:path'

import type {BuildContext, SettingReader} from './build.js'
import type {RedisHost, RedisOutputConfig} from './server-config.js'
import {parseDuration} from './settings.js'

const VERIFICATION_MODES = ['full', 'strict', 'certificate', 'none'] as const
/** The longest timeout or backoff taken: past an hour, a setting is a mistake (a number of ms read as seconds). */
const MAX_DURATION_MS = 3_600_000

/**
 * The Redis output's settings when `output.redis` is the enabled output, else undefined (the file output).
 * Problems (none or two outputs enabled, bad values) are reported through `read`/`context`.
 */
export async function readRedisOutput(read: SettingReader, context: BuildContext, checkReadable: (file: string, name: string) => Promise<void>): Promise<RedisOutputConfig | undefined> {
  const written = (section: string) =>
    [...context.resolved.values()].some(({setting, value}) => setting.name.startsWith(`output.${section}.`) || (setting.name === `output.${section}` && value !== null))
  const file = written('file')
  const redis = written('redis')
  const fileOn = file && read.bool('output.file.enabled', true)
  const redisOn = redis && read.bool('output.redis.enabled', true)
  if (fileOn && redisOn) {
    context.problem(undefined, 'output.file and output.redis are both enabled; exactly one output may be enabled (as in Beats): remove one section or set its enabled: false')
  } else if ((file || redis) && !fileOn && !redisOn) {
    const off = [file ? 'output.file' : undefined, redis ? 'output.redis' : undefined].filter(Boolean).join(' and ')
    context.problem(undefined, `no output is enabled (${off} ${file && redis ? 'have' : 'has'} enabled: false); enable one, or remove the output sections to use the default file output`)
  }

  if (!redisOn) return undefined
  const config = readRedisSettings(read, context)
  for (const [name, file] of tlsFiles(config)) {
    // eslint-disable-next-line no-await-in-loop -- a few files
    await checkReadable(file, name)
  }

  return config
}

function readRedisSettings(read: SettingReader, context: BuildContext): RedisOutputConfig {
  const port = read.int('output.redis.port', 6379)
  const hosts = readHosts(read, port)
  const username = read.string('output.redis.username')
  const password = read.string('output.redis.password')
  if (username !== undefined && username !== '' && !password) read.bad('output.redis.username', 'needs output.redis.password (an ACL user authenticates with both); set the password, e.g. "${REDIS_PASSWORD}" from the keystore')
  const datatype = read.string('output.redis.datatype') ?? 'list'
  if (!['', 'list', 'channel'].includes(datatype)) read.bad('output.redis.datatype', 'must be list (RPUSH) or channel (PUBLISH)')
  const timeoutMs = readDuration(read, 'output.redis.timeout', 5000)
  const backoff = {initMs: readDuration(read, 'output.redis.backoff.init', 1000), maxMs: readDuration(read, 'output.redis.backoff.max', 60_000)}
  if (backoff.maxMs < backoff.initMs) read.bad('output.redis.backoff.max', 'must not be shorter than output.redis.backoff.init')
  return {
    backoff,
    bulkMaxSize: read.int('output.redis.bulk_max_size', 2048),
    datatype: datatype === 'channel' ? 'channel' : 'list',
    db: read.int('output.redis.db', 0),
    hosts,
    key: readKey(read, context),
    loadbalance: read.bool('output.redis.loadbalance', true),
    maxRetries: read.int('output.redis.max_retries', 3),
    ssl: readRedisSsl(read, context),
    timeoutMs,
    ...(username ? {username} : {}),
    ...(password ? {password} : {}),
  }
}

/**
 * Most Redis hosts: each is a connection (a file descriptor, a TLS session, a reconnect loop) opened at
 * the start and at each reload. Beats sets no bound; a deployment lists a handful.
 */
export const MAX_REDIS_HOSTS = 64

function readHosts(read: SettingReader, defaultPort: number): RedisHost[] {
  const texts = read.list('output.redis.hosts', [])
  if (texts.length === 0 && !read.failed('output.redis.hosts')) read.bad('output.redis.hosts', 'needs at least one Redis host (host, host:port or a redis:// or rediss:// URL), e.g. [localhost:6379]')
  if (texts.length > MAX_REDIS_HOSTS) {
    read.bad('output.redis.hosts', `lists ${texts.length} hosts, over the ${MAX_REDIS_HOSTS} the output connects to; list fewer (a load balancer in front of them, say)`)
    return []
  }

  const hosts: RedisHost[] = []
  for (const [index, text] of texts.entries()) {
    const host = parseRedisHost(text, defaultPort)
    if (typeof host === 'string') read.bad('output.redis.hosts', `item ${index + 1} ${host}`)
    else hosts.push(host)
  }

  return hosts
}

/** One hosts entry, or why it is not one (never quoting it: a URL may hold a password). */
export function parseRedisHost(text: string, defaultPort: number): RedisHost | string {
  const scheme = /^([A-Za-z][\w+.-]*):\/\//.exec(text)?.[1]?.toLowerCase()
  if (scheme !== undefined && scheme !== 'redis' && scheme !== 'rediss') return 'has a scheme other than redis:// or rediss://; write host:port or a redis:// or rediss:// URL'
  let url: URL
  try {
    url = new URL(scheme === undefined ? `redis://${text}` : text)
  } catch {
    return 'is not host, host:port or a redis:// or rediss:// URL; write it like localhost:6379 ([::1]:6379 for IPv6)'
  }

  if (url.hostname === '') return 'names no host; write it like localhost:6379'
  if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
    return 'has a path, query or fragment, which is not used; set the database with output.redis.db'
  }

  const port = url.port === '' ? defaultPort : Number(url.port)
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  const label = `${scheme === undefined ? '' : `${scheme}://`}${url.hostname}:${port}`
  const decode = (part: string) => (part === '' ? undefined : decodeURIComponent(part))
  const username = decode(url.username)
  const password = decode(url.password)
  return {
    host: hostname,
    label,
    port,
    ...(scheme === undefined ? {} : {tls: scheme === 'rediss'}),
    ...(username === undefined ? {} : {username}),
    ...(password === undefined ? {} : {password}),
  }
}

function readKey(read: SettingReader, context: BuildContext): string {
  const key = read.string('output.redis.key')
  const index = read.string('output.redis.index')
  if (index !== undefined) {
    const entry = context.resolved.get('output.redis.index')
    if (key === undefined) context.warn(entry?.setting, `${entry?.setting.where}: output.redis.index is deprecated (as in Beats); write output.redis.key`)
    else read.bad('output.redis.index', 'cannot be used with output.redis.key (as in Beats); keep output.redis.key only')
  }

  const name = key ?? index ?? 'apm-server'
  if (name === '') read.bad('output.redis.key', 'must name the Redis list or channel, e.g. apm-server')
  // Beats reads %{[field]} as a format string over each event's fields; this server writes every event to one key.
  if (name.includes('%{')) read.bad('output.redis.key', 'format strings (%{[field]}) are not supported; write the name of the list or channel')
  return name
}

function readRedisSsl(read: SettingReader, context: BuildContext): RedisOutputConfig['ssl'] {
  const prefix = 'output.redis.ssl.'
  const anySet = [...context.resolved.keys()].some((name) => name.startsWith(prefix) && name !== `${prefix}enabled`)
  const verificationMode = read.string(`${prefix}verification_mode`) ?? 'full'
  if (!(VERIFICATION_MODES as readonly string[]).includes(verificationMode)) read.bad(`${prefix}verification_mode`, `must be one of ${VERIFICATION_MODES.join(', ')}`)
  const certificate = read.path(`${prefix}certificate`)
  const key = read.path(`${prefix}key`)
  if ((certificate === undefined) !== (key === undefined) && !read.failed(`${prefix}certificate`) && !read.failed(`${prefix}key`)) {
    read.bad(certificate === undefined ? `${prefix}certificate` : `${prefix}key`, `a client certificate needs both ${prefix}certificate and ${prefix}key; set both, or neither`)
  }

  const keyPassphrase = read.string(`${prefix}key_passphrase`)
  return {
    certificateAuthorities: read.list(`${prefix}certificate_authorities`, []).map((file) => path.resolve(context.configDir, file)),
    enabled: read.bool(`${prefix}enabled`, anySet),
    verificationMode: verificationMode as RedisOutputConfig['ssl']['verificationMode'],
    ...(certificate === undefined ? {} : {certificate}),
    ...(key === undefined ? {} : {key}),
    ...(keyPassphrase === undefined ? {} : {keyPassphrase}),
  }
}

/** A duration: "5s", "1m30s", "500ms", or a number of seconds (Beats' `timeout: 5`); above 0, at most an hour. */
function readDuration(read: SettingReader, name: string, fallbackMs: number): number {
  const entry = read.raw(name)
  if (!entry) return fallbackMs
  const {value} = entry
  const seconds = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,7}(?:\.\d{1,3})?$/.test(value) ? Number(value) : undefined
  const ms = seconds === undefined ? (typeof value === 'string' ? parseDuration(value) : undefined) : Math.round(seconds * 1000)
  if (ms !== undefined && ms > 0 && ms <= MAX_DURATION_MS) return ms
  read.bad(name, 'must be a duration above 0 and at most 1h, such as 5s, 500ms or 1m (a number is seconds)')
  return fallbackMs
}

/** The TLS files the output will read, by setting, when any host uses TLS. */
function tlsFiles(config: RedisOutputConfig): Array<[string, string]> {
  const {ssl} = config
  if (!config.hosts.some((host) => host.tls ?? ssl.enabled)) return []
  return [
    ...ssl.certificateAuthorities.map((file): [string, string] => ['output.redis.ssl.certificate_authorities', file]),
    ...(ssl.certificate ? [['output.redis.ssl.certificate', ssl.certificate] as [string, string]] : []),
    ...(ssl.key ? [['output.redis.ssl.key', ssl.key] as [string, string]] : []),
  ]
}
