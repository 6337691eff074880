#!/usr/bin/env node
/**
 * The main job in one command (`npm run demo`), in a temp directory that is removed afterwards:
 * a password-protected keystore holding a generated secret token, a self-signed certificate, the server
 * over HTTPS with `secret_token: "${APM_SECRET_TOKEN}"`, a real elastic-apm-node agent with the CA
 * pinned, an OpenTelemetry SDK configured by `agent-config --agent otel` (the same token, OTLP on the
 * same port), the events that landed, a wrong-token agent refused, and a clean stop.
 */
import {execFileSync, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const bin = path.join(root, 'bin', 'run.js')
const agentPath = createRequire(import.meta.url).resolve('elastic-apm-node')
const dir = mkdtempSync(path.join(os.tmpdir(), 'apm-server-demo-'))
// The keystore password reaches every command through the environment, never argv.
const env = {...process.env, APM_SERVER_KEYSTORE_PASSWORD: randomBytes(18).toString('base64url')}
delete env.APM_SERVER_KEYSTORE_PASSWORD_FILE
delete env.APM_SERVER_KEYSTORE_KDF_PARAMS

const step = (title) => console.log(`\n== ${title}`)
const show = (text) => console.log(text.replace(/\n$/, '').replaceAll(/^/gm, '   '))

function cli(args, input) {
  console.log(`$ apm-server ${args.join(' ')}`)
  return execFileSync(process.execPath, [bin, ...args], {cwd: dir, encoding: 'utf8', env, input, stdio: ['pipe', 'pipe', 'pipe']})
}

const AGENT = `
const apm = require(process.env.AGENT_PATH).start({
  serviceName: 'demo-service', serverUrl: process.env.SERVER_URL, secretToken: process.env.TOKEN,
  serverCaCertFile: process.env.CA_FILE, apiRequestTime: '1s', centralConfig: false, cloudProvider: 'none',
  metricsInterval: '0s', breakdownMetrics: false, captureExceptions: false, logLevel: 'off',
})
const keepAlive = setInterval(() => {}, 1000)
const transaction = apm.startTransaction('GET /checkout', 'request')
apm.startSpan('SELECT FROM orders', 'db').end()
apm.captureError(new Error('payment declined'), () => {
  transaction.end()
  apm.flush(() => { apm.destroy(); clearInterval(keepAlive) })
})
`

// The OpenTelemetry JS SDK, configured only by the OTEL_* environment agent-config prints.
const OTEL_SDK = `
const api = require('@opentelemetry/api')
const {BasicTracerProvider, SimpleSpanProcessor} = require('@opentelemetry/sdk-trace-base')
const {defaultResource, detectResources, envDetector} = require('@opentelemetry/resources')
const {OTLPTraceExporter} = require('@opentelemetry/exporter-trace-otlp-proto')
const resource = defaultResource().merge(detectResources({detectors: [envDetector]}))
const provider = new BasicTracerProvider({resource, spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter())]})
const span = provider.getTracer('demo').startSpan('POST /orders', {kind: api.SpanKind.SERVER, attributes: {'http.request.method': 'POST', 'http.response.status_code': 201}})
span.end()
provider.forceFlush().then(() => provider.shutdown())
`

function runOtelSdk(variables) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(dir, 'otel.cjs')], {cwd: dir, env: {...process.env, NODE_PATH: path.join(root, 'node_modules'), ...variables}, stdio: 'ignore'})
    child.on('exit', resolve)
  })
}

function runAgent(url, token) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(dir, 'agent.cjs')], {
      cwd: dir,
      env: {...process.env, AGENT_PATH: agentPath, CA_FILE: path.join(dir, 'cert.pem'), SERVER_URL: url, TOKEN: token},
      stdio: 'ignore',
    })
    child.on('exit', resolve)
  })
}

function startServer() {
  console.log('$ apm-server run')
  const server = spawn(process.execPath, [bin, 'run'], {cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe']})
  const logs = []
  const lines = readline.createInterface({input: server.stderr})
  const listening = new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      let record
      try {
        record = JSON.parse(line)
      } catch {
        return
      }

      logs.push(record)
      if (record.message === 'listening') resolve(record.url)
    })
    server.on('exit', (code) => reject(new Error(`the server exited with code ${code} before listening`)))
  })
  return {listening, logs, server}
}

let running
try {
  step('1. A password-protected keystore (password from APM_SERVER_KEYSTORE_PASSWORD)')
  show(cli(['keystore', 'create', '--password']))

  step('2. A generated secret token, stored in the keystore')
  const token = cli(['keystore', 'add', 'APM_SECRET_TOKEN', '--generate']).trim()
  show(`generated a ${token.length}-character token: ${token.slice(0, 4)}${'*'.repeat(token.length - 4)} (shown once, masked here)`)
  show(cli(['keystore', 'list']))

  step('3. A self-signed certificate for 127.0.0.1')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=apm-server-demo', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], {cwd: dir, stdio: 'ignore'})
  const config = [
    'apm-server:',
    '  host: "127.0.0.1:0"',
    '  auth.secret_token: "${APM_SECRET_TOKEN}"',
    '  ssl:',
    '    enabled: true',
    '    certificate: cert.pem',
    '    key: key.pem',
    'output.file:',
    '  path: out',
    '  filename: events.ndjson',
    '',
  ].join('\n')
  writeFileSync(path.join(dir, 'apm-server.yml'), config)
  show(`apm-server.yml:\n${config}`)
  show(cli(['test', 'config']))

  step('4. The server, over HTTPS, token resolved from the keystore')
  running = startServer()
  const url = await running.listening
  show(`listening on ${url}`)

  step('5. A real elastic-apm-node agent with the token and the CA pinned (serverCaCertFile)')
  writeFileSync(path.join(dir, 'agent.cjs'), AGENT)
  await runAgent(url, token)
  const events = readFileSync(path.join(dir, 'out', 'events.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line))
  for (const event of events) {
    const type = ['transaction', 'span', 'error'].find((name) => name in event) ?? 'other'
    const detail = event.transaction?.name ?? event.span?.name ?? event.error?.exception?.message ?? ''
    show(`landed: ${type.padEnd(11)} ${detail}  (service ${event.metadata?.service?.name ?? '?'})`)
  }

  step('6. An OpenTelemetry SDK, set up by "agent-config --agent otel" (same token, OTLP/HTTP on the same port)')
  const printed = JSON.parse(cli(['agent-config', '--agent', 'otel', '--show-secret', '--json', '--server-url', url, '--ca-cert', path.join(dir, 'cert.pem'), '--service-name', 'demo-otel-service']))
  const variables = Object.fromEntries(printed.agents[0].settings.filter((setting) => setting.kind === 'env').map((setting) => [setting.name, setting.value]))
  show(Object.entries(variables).map(([name, value]) => `${name}=${name === 'OTEL_EXPORTER_OTLP_HEADERS' ? 'Authorization=Bearer%20****' : value}`).join('\n'))
  writeFileSync(path.join(dir, 'otel.cjs'), OTEL_SDK)
  await runOtelSdk(variables)
  const all = readFileSync(path.join(dir, 'out', 'events.ndjson'), 'utf8').trim().split('\n').map((line) => JSON.parse(line))
  const transactions = all.filter((event) => event.transaction)
  for (const event of transactions) show(`landed: transaction ${event.transaction.name.padEnd(16)} (service ${event.metadata.service.name}, agent ${event.metadata.service.agent.name})`)
  const otelLanded = transactions.some((event) => event.metadata.service.agent.name === 'opentelemetry/nodejs')

  step('7. An agent with a wrong token is refused')
  await runAgent(url, 'not-the-token')
  const refused = running.logs.filter((record) => record['http.response.status_code'] === 401).length
  const after = readFileSync(path.join(dir, 'out', 'events.ndjson'), 'utf8').trim().split('\n').length
  show(`the server answered ${refused} request(s) with 401; events in the output file: still ${after}`)

  step('8. A clean stop (SIGTERM: finish requests in flight, flush, exit 0)')
  const exited = new Promise((resolve) => running.server.on('exit', resolve))
  running.server.kill('SIGTERM')
  show(`the server exited with code ${await exited}`)
  running = undefined
  if (refused === 0 || events.length < 3 || !otelLanded || after !== all.length) throw new Error('the demo did not see what it expected')
  console.log('\nDemo complete.')
} catch (error) {
  console.error(`demo failed: ${error.stderr ?? error.message}`)
  for (const record of running?.logs ?? []) console.error(JSON.stringify(record))
  process.exitCode = 1
} finally {
  running?.server.kill('SIGKILL')
  rmSync(dir, {force: true, recursive: true})
}
