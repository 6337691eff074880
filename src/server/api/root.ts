/**
 * The server information route (`GET /`), as Elastic's APM Server answers it: the build and version
 * to a client that authenticated with the token (or to anyone when no token is set), an empty 200 to
 * anyone else, so that agents can check the server is there.
 */
import {statSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import type {ApiContext} from './context.js'
import type {Exchange} from './exchange.js'
import {respond} from './respond.js'

/** Reported as the server version, so agents behave as with an 8.x server. */
export const SERVER_VERSION = '8.15.0'

let info: Record<string, unknown> | undefined

/** When this build was made: the mtime of the module (the bundle), as Go's build_date. */
export function buildDate(): string {
  try {
    return statSync(fileURLToPath(import.meta.url)).mtime.toISOString().replace(/\.\d{3}Z$/, 'Z')
  } catch {
    return '1970-01-01T00:00:00Z'
  }
}

export function serverInformation({outcome, req, res}: Exchange, context: ApiContext): void {
  info ??= {build_date: buildDate(), build_sha: 'unknown', publish_ready: true, version: SERVER_VERSION}
  respond(context, req, res, 200, outcome.ok && outcome.method !== 'anonymous' ? info : undefined)
}
