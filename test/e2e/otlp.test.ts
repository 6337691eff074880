/**
 * End to end with the real OpenTelemetry JS SDK (issue 14): in its own process, configured only by the
 * environment `apm-server agent-config --agent otel --show-secret` prints, an SDK exports a root server
 * span with a child client span and an exception event, a log record and a counter over http/json,
 * http/protobuf and gRPC to `apm-server run` over HTTPS (a self-signed CA), whose token comes from a
 * password-protected keystore made with the CLI. With a wrong token nothing lands (401, UNAUTHENTICATED);
 * after `keystore add --force` and SIGHUP the old token works for the grace period only.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {cleanEnv, makeTempDir, ROOT, runCli} from '../helpers/cli.js'
import {killStartedServers, Running, startRun} from '../helpers/run-server.js'

const KEYSTORE_PASSWORD = 'e2e otlp keystore password'
const TOKEN = 'otlp-e2e-Token_0123456789abcdef'
const GRACE_SECONDS = 8

/** The SDK program: the protocol picks the exporter packages; everything else is the SDK's own environment. */
const CLIENT = `
const api = require('@opentelemetry/api')
const {BasicTracerProvider, SimpleSpanProcessor} = require('@opentelemetry/sdk-trace-base')
const {LoggerProvider, SimpleLogRecordProcessor} = require('@opentelemetry/sdk-logs')
const {MeterProvider, PeriodicExportingMetricReader} = require('@opentelemetry/sdk-metrics')
const {defaultResource, detectResources, envDetector} = require('@opentelemetry/resources')
const flavour = {grpc: 'grpc', 'http/protobuf': 'proto', 'http/json': 'http'}[process.env.OTEL_EXPORTER_OTLP_PROTOCOL]
const {OTLPTraceExporter} = require('@opentelemetry/exporter-trace-otlp-' + flavour)
const {OTLPLogExporter} = require('@opentelemetry/exporter-logs-otlp-' + flavour)
const {OTLPMetricExporter} = require('@opentelemetry/exporter-metrics-otlp-' + flavour)
// Every export's result, as the exporter reports it to its processor or reader.
const errors = []
function watched(exporter) {
  const exportItems = exporter.export.bind(exporter)
  exporter.export = (items, done) => exportItems(items, (result) => {
    if (result.code !== 0) errors.push(String(result.error && (result.error.message || result.error.code)))
    done(result)
  })
  return exporter
}
async function main() {
  // The SDK's resource, with OTEL_SERVICE_NAME from the environment (what NodeSDK does).
  const resource = defaultResource().merge(detectResources({detectors: [envDetector]}))
  const tracing = new BasicTracerProvider({resource, spanProcessors: [new SimpleSpanProcessor(watched(new OTLPTraceExporter()))]})
  const tracer = tracing.getTracer('e2e-tracer', '1.0.0')
  const root = tracer.startSpan('GET /checkout', {kind: api.SpanKind.SERVER, attributes: {'http.request.method': 'GET', 'url.path': '/checkout', 'http.response.status_code': 200}})
  const child = tracer.startSpan('SELECT orders', {kind: api.SpanKind.CLIENT, attributes: {'db.system': 'postgresql', 'db.query.text': 'SELECT * FROM orders'}}, api.trace.setSpan(api.context.active(), root))
  child.end()
  root.recordException(new Error('payment declined'))
  root.end()
  const logging = new LoggerProvider({resource, processors: [new SimpleLogRecordProcessor({exporter: watched(new OTLPLogExporter())})]})
  logging.getLogger('e2e-logger').emit({body: 'order placed', severityNumber: 9, severityText: 'INFO'})
  const metrics = new MeterProvider({resource, readers: [new PeriodicExportingMetricReader({exporter: watched(new OTLPMetricExporter()), exportIntervalMillis: 60000})]})
  metrics.getMeter('e2e-meter').createCounter('orders.placed').add(3)
  // A refused export also rejects the flush: the errors are the exporters' own, collected above.
  await Promise.allSettled([tracing.forceFlush(), logging.forceFlush(), metrics.forceFlush()])
  await Promise.allSettled([tracing.shutdown(), logging.shutdown(), metrics.shutdown()])
  process.stdout.write(JSON.stringify({errors}))
}
main()
`

type Event = Record<string, Record<string, unknown>>

describe('e2e: the OpenTelemetry SDK against apm-server run over HTTPS (OTLP/HTTP json and protobuf, gRPC)', function () {
  this.timeout(120_000)
  let tmp: ReturnType<typeof makeTempDir>
  let run: Running
  const env = {APM_SERVER_KEYSTORE_PASSWORD: KEYSTORE_PASSWORD}

  /** The SDK environment agent-config prints (the token from the keystore), as a map. */
  async function sdkEnvironment(protocol: string, serviceName: string): Promise<Record<string, string>> {
    const printed = await runCli(['agent-config', '--agent', 'otel', '--show-secret', '--json', '--server-url', run.url, '--ca-cert', path.join(tmp.dir, 'cert.pem'), '--service-name', serviceName], {cwd: tmp.dir, env})
    assert.equal(printed.code, 0, printed.stderr)
    const document = JSON.parse(printed.stdout) as {agents: Array<{settings: Array<{kind: string; name: string; value: string}>}>}
    const variables = Object.fromEntries(document.agents[0].settings.filter((setting) => setting.kind === 'env').map((setting) => [setting.name, setting.value]))
    return {...variables, OTEL_EXPORTER_OTLP_PROTOCOL: protocol}
  }

  /** Runs the SDK program with `variables`; the export errors it saw. */
  function runSdk(variables: Record<string, string>): string[] {
    const result = spawnSync(process.execPath, [path.join(tmp.dir, 'client.cjs')], {
      cwd: tmp.dir,
      encoding: 'utf8',
      env: {...cleanEnv(), NODE_PATH: path.join(ROOT, 'node_modules'), OTEL_METRIC_EXPORT_INTERVAL: '60000', ...variables},
      timeout: 60_000,
    })
    assert.equal(result.status, 0, result.stderr)
    return (JSON.parse(result.stdout) as {errors: string[]}).errors
  }

  async function events(): Promise<Event[]> {
    const text = await fs.readFile(path.join(tmp.dir, 'out', 'apm-server'), 'utf8').catch(() => '')
    return text === '' ? [] : text.trimEnd().split('\n').map((line) => JSON.parse(line) as Event)
  }

  before(async () => {
    tmp = makeTempDir('apm-e2e-otlp-')
    const cwd = tmp.dir
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=apm-e2e', '-addext', 'subjectAltName=IP:127.0.0.1'],
      {cwd, stdio: 'ignore'},
    )
    assert.equal((await runCli(['keystore', 'create', '--password'], {cwd, env})).code, 0)
    assert.equal((await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin'], {cwd, env, input: TOKEN})).code, 0)
    await fs.writeFile(
      path.join(cwd, 'apm-server.yml'),
      [
        'apm-server:',
        '  host: "127.0.0.1:0"',
        '  auth:',
        '    secret_token: "${APM_SECRET_TOKEN}"',
        `    secret_token_grace_period: ${GRACE_SECONDS}s`,
        '  ssl: {enabled: true, certificate: cert.pem, key: key.pem}',
        `output.file.path: "${path.join(cwd, 'out')}"`,
        '',
      ].join('\n'),
    )
    await fs.writeFile(path.join(cwd, 'client.cjs'), CLIENT)
    run = await startRun(cwd, [], env)
  })

  after(() => {
    killStartedServers()
    tmp?.cleanup()
  })

  for (const protocol of ['http/json', 'http/protobuf', 'grpc']) {
    it(`${protocol}: the spans (a transaction, its span and the exception as an error), the log record and the counter land`, async () => {
      const service = `e2e-${protocol.replace('/', '-')}`
      assert.deepEqual(runSdk(await sdkEnvironment(protocol, service)), [])
      const mine = (await events()).filter((event) => (event.metadata.service as {name: string}).name === service)
      const transaction = mine.find((event) => event.transaction)?.transaction
      const span = mine.find((event) => event.span)?.span
      const error = mine.find((event) => event.error)?.error
      const log = mine.find((event) => event.log)?.log
      const metricset = mine.find((event) => event.metricset && 'orders.placed' in (event.metricset.samples as object))?.metricset
      assert.ok(transaction && span && error && log && metricset, JSON.stringify(mine, null, 1))
      assert.deepEqual([transaction.name, transaction.type, transaction.result, transaction.outcome], ['GET /checkout', 'request', 'HTTP 2xx', 'success'])
      assert.deepEqual([span.name, span.parent_id, span.trace_id, span.type, span.subtype], ['SELECT orders', transaction.id, transaction.trace_id, 'db', 'postgresql'])
      assert.deepEqual([(error.exception as {message: string}).message, error.parent_id, error.transaction_id], ['payment declined', transaction.id, transaction.id])
      assert.deepEqual([log.message, (log.log as {level: string}).level], ['order placed', 'INFO'])
      assert.deepEqual(metricset.samples, {'orders.placed': {type: 'counter', value: 3}})
      const agent = (mine[0].metadata.service as {agent: {name: string}}).agent
      assert.equal(agent.name, 'opentelemetry/nodejs')
    })
  }

  it('with a wrong token nothing lands: the HTTP exporters see 401, the gRPC one UNAUTHENTICATED', async () => {
    const before = (await events()).length
    for (const protocol of ['http/protobuf', 'grpc']) {
      // eslint-disable-next-line no-await-in-loop -- one client at a time
      const variables = {...(await sdkEnvironment(protocol, 'e2e-wrong')), OTEL_EXPORTER_OTLP_HEADERS: 'Authorization=Bearer%20not-the-token'}
      const errors = runSdk(variables)
      assert.ok(errors.length > 0, 'the exporter reports the refusal')
      for (const error of errors) assert.match(error, protocol === 'grpc' ? /UNAUTHENTICATED|16/ : /401|Unauthorized/, errors.join('\n'))
    }

    assert.equal((await events()).length, before)
  })

  it(`after keystore add --force and SIGHUP the old token works for the ${GRACE_SECONDS} s grace period only`, async () => {
    const oldEnvironment = await sdkEnvironment('grpc', 'e2e-old-token')
    const added = await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin', '--force'], {cwd: tmp.dir, env, input: 'otlp-e2e-New_Token_fedcba9876543210'})
    assert.equal(added.code, 0, added.stderr)
    const seen = run.logs().length
    const rotated = Date.now()
    run.child.kill('SIGHUP')
    await run.waitFor('configuration reloaded', seen)
    assert.deepEqual(runSdk(oldEnvironment), [], 'the old token within the grace period')
    assert.ok(Date.now() - rotated < GRACE_SECONDS * 1000, 'the machine was too slow to check within the grace period')
    assert.deepEqual(runSdk(await sdkEnvironment('grpc', 'e2e-new-token')), [], 'the new token')
    await sleep(Math.max(0, GRACE_SECONDS * 1000 - (Date.now() - rotated)) + 500)
    const late = runSdk({...oldEnvironment, OTEL_SERVICE_NAME: 'e2e-old-token-late'})
    assert.ok(late.length > 0 && late.every((error) => /UNAUTHENTICATED|16/.test(error)), late.join('\n'))
    const services = new Set((await events()).map((event) => (event.metadata.service as {name: string}).name))
    assert.deepEqual([services.has('e2e-old-token'), services.has('e2e-new-token'), services.has('e2e-old-token-late')], [true, true, false])
    run.child.kill('SIGTERM')
    assert.equal(await run.exit, 0)
    const log = run.logs().map((line) => JSON.stringify(line)).join('\n')
    assert.equal(log.includes(TOKEN) || log.includes('New_Token') || log.includes('not-the-token'), false, 'no token in the log')
  })
})
