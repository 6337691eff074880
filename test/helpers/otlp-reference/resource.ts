/**
 * An OTLP resource and instrumentation scope as the metadata of intake v2 events (apm-data input/otlp
 * metadata.go): the service (name, version, environment, node, language, runtime, framework from the
 * scope), the agent (`<telemetry.sdk.name>/<language>`, or with a distro
 * `<sdk>/<language>/<distro>`), process, system, cloud and user, and every other resource attribute
 * as a global label. Attributes apm-data maps to fields intake v2 metadata has no place for
 * (container.name, host.id, os.*, ...) are kept as labels, so nothing sent is lost (docs/otlp.md).
 */
import {intMember, KeyValue, kindOf, Labels, setLabel, stringOf, truncate} from './values.js'

export interface Resource {
  attributes?: KeyValue[]
}

export interface Scope {
  name?: string
  version?: string
}

/** The intake v2 metadata of one resource, and the names anonymous access is checked against. */
export interface ResourceMetadata {
  metadata: Record<string, unknown>
  agentName: string
  serviceName: string
}

const SERVICE_NAME_INVALID = /[^\w -]/g

/** Resource attributes with a place in intake v2 metadata: the path there, and how the value is read. */
const METADATA_FIELDS: Record<string, {path: string[]; read?: (text: string) => number | string}> = {
  'cloud.account.id': {path: ['cloud', 'account', 'id']},
  'cloud.availability_zone': {path: ['cloud', 'availability_zone']},
  'cloud.platform': {path: ['cloud', 'service', 'name']},
  'cloud.provider': {path: ['cloud', 'provider']},
  'cloud.region': {path: ['cloud', 'region']},
  'container.id': {path: ['system', 'container', 'id']},
  'deployment.environment': {path: ['service', 'environment']},
  'deployment.environment.name': {path: ['service', 'environment']},
  'host.arch': {path: ['system', 'architecture']},
  'host.name': {path: ['system', 'detected_hostname']},
  'k8s.namespace.name': {path: ['system', 'kubernetes', 'namespace']},
  'k8s.node.name': {path: ['system', 'kubernetes', 'node', 'name']},
  'k8s.pod.name': {path: ['system', 'kubernetes', 'pod', 'name']},
  'k8s.pod.uid': {path: ['system', 'kubernetes', 'pod', 'uid']},
  'os.type': {path: ['system', 'platform'], read: (text) => text.toLowerCase()},
  'process.owner': {path: ['user', 'name']},
  'process.runtime.name': {path: ['service', 'runtime', 'name']},
  'process.runtime.version': {path: ['service', 'runtime', 'version']},
  'service.instance.id': {path: ['service', 'node', 'configured_name']},
  'service.name': {path: ['service', 'name'], read: (text) => text.replaceAll(SERVICE_NAME_INVALID, '_')},
  'service.version': {path: ['service', 'version']},
  'telemetry.sdk.language': {path: ['service', 'language', 'name']},
  'telemetry.sdk.version': {path: ['service', 'agent', 'version']},
}

/** Read for the agent name, or ignored (apm-data drops the export timestamp after using it). */
const SPECIAL = new Set(['telemetry.distro.name', 'telemetry.distro.version', 'telemetry.sdk.elastic_export_timestamp', 'telemetry.sdk.name'])

type Tree = Record<string, unknown>

function setPath(tree: Tree, path: readonly string[], value: unknown): void {
  let node = tree
  for (const part of path.slice(0, -1)) node = (node[part] ??= {}) as Tree
  node[path.at(-1)!] = value
}

function getPath(tree: Tree, path: readonly string[]): unknown {
  let node: unknown = tree
  for (const part of path) node = (node as Tree | undefined)?.[part]
  return node
}

/** The metadata of one resource; scopes add their framework with {@link withScope}. */
export function resourceMetadata(resource: Resource | null | undefined): ResourceMetadata {
  const metadata: Tree = {}
  const labels: Labels = {}
  const special = new Map<string, string>()
  for (const {key = '', value} of resource?.attributes ?? []) {
    // Own keys only: an attribute named `constructor` or `__proto__` is a label, not Object.prototype's member.
    const field = Object.hasOwn(METADATA_FIELDS, key) ? METADATA_FIELDS[key] : undefined
    if (field && kindOf(value) === 'string') setPath(metadata, field.path, field.read ? field.read(stringOf(value)) : stringOf(value))
    else if (key === 'process.pid' && kindOf(value) === 'int') setPath(metadata, ['process', 'pid'], intMember(value))
    else if (SPECIAL.has(key)) special.set(key, stringOf(value))
    else setLabel(labels, key, value)
  }

  const serviceName = (getPath(metadata, ['service', 'name']) as string | undefined) || 'unknown'
  const language = (getPath(metadata, ['service', 'language', 'name']) as string | undefined) || ''
  const {agentName, agentVersion} = agentOf(special, language, (getPath(metadata, ['service', 'agent', 'version']) as string | undefined) || 'unknown')
  setPath(metadata, ['service', 'name'], serviceName)
  setPath(metadata, ['service', 'agent'], {name: agentName, version: agentVersion})
  setPath(metadata, ['service', 'language', 'name'], language || 'unknown')
  if (Object.keys(labels).length > 0) metadata.labels = labels
  return {agentName, metadata, serviceName}
}

/** apm-data's agent name: the SDK name (or "otlp"), then the language, then a distro when one is named. */
function agentOf(special: Map<string, string>, language: string, sdkVersion: string): {agentName: string; agentVersion: string} {
  const sdk = special.get('telemetry.sdk.name') || 'otlp'
  const distro = special.get('telemetry.distro.name')
  if (distro) return {agentName: truncate(`${sdk}/${language || 'unknown'}/${distro}`), agentVersion: special.get('telemetry.distro.version') || 'unknown'}
  return {agentName: language ? truncate(`${sdk}/${language}`) : sdk, agentVersion: sdkVersion}
}

/** The metadata with the scope as the service's framework (when it has a name), as `{"metadata":...,` bytes. */
export function metadataHead({metadata}: ResourceMetadata, scope: Scope | null | undefined): Buffer {
  const name = scope?.name ? truncate(scope.name) : ''
  const withFramework = name === '' ? metadata : {...metadata, service: {...(metadata.service as Tree), framework: {name, ...(scope?.version ? {version: truncate(scope.version)} : {})}}}
  return Buffer.from(`{"metadata":${JSON.stringify(withFramework)},`)
}

