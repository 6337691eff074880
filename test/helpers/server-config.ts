/**
 * The ServerConfig the in-process server tests start from: loopback on a free port, the file output in
 * `dir`/out, a secret token, RUM and anonymous access off, no TLS; each test overrides what it is about.
 */
import path from 'node:path'

import type {ServerConfig} from '../../src/server/config/server-config.js'

export function testServerConfig(dir: string, overrides: Partial<ServerConfig> = {}): ServerConfig {
  return {
    anonymous: {allowAgent: ['rum-js', 'js-base'], allowService: [], enabled: false, rateLimit: {eventLimit: 300, ipLimit: 1000}},
    host: '127.0.0.1:0',
    maxEventSize: 307_200,
    output: {filename: 'apm-server', numberOfFiles: 7, path: path.join(dir, 'out'), rotateEveryKb: 10_240},
    paths: {config: dir, data: dir, home: dir, logs: dir},
    rum: {allowOrigins: ['*'], enabled: false},
    secretToken: 'a-token',
    secretTokenGracePeriodMs: 0,
    ssl: {enabled: false},
    ...overrides,
  }
}
