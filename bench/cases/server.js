/**
 * Server cases (issue 3's `apm-server run`): start-up with 100 `${KEY}` references, intake throughput,
 * CPU and p99 latency against a reference server that does the same required work with no framework
 * (and the raw node:http floor, which writes nothing), and memory with 1,000 agents connected. Loopback
 * only, bounded durations. When the server is not there (or does not start), every case is reported
 * as not measured, with the reason.
 */
import {mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'

import autocannon from 'autocannon'

import {buildKeystore, cliEnv, keyName} from '../lib/fixtures.js'
import {otlpTracesBody, protobufDecodeMicros} from '../lib/otlp.js'
import {cli, cliRoot, describe, NODE, NODE_BASELINE, ROOT, runSync, timeAsync} from '../lib/proc.js'
import {holdAgents, intakeBody, post, rssMiB, startServer} from '../lib/servers.js'
import {redisGroup} from './redis.js'

const REFERENCES = 100
const EVENTS_PER_REQUEST = 100
const CONNECTIONS = 10
/** untimed load before each intake measurement, so that every server's JIT has settled */
const WARMUP_SECONDS = 2
const AGENTS = 1000
const AGENTS_TEXT = AGENTS.toLocaleString('en-US')
const RAW_SERVER = path.join(ROOT, 'bench', 'raw-intake-server.js')
const REFERENCE_SERVER = path.join(ROOT, 'bench', 'reference-intake-server.js')
const STAGES_SERVER = path.join(ROOT, 'bench', 'intake-stages-server.js')
/** The decomposition's stages (bench/intake-stages-server.js), each adding one cost to the one before. */
const STAGES = [
  ['split', "raw + intake's line splitting"],
  ['scan', '+ validation (byte scan of each event, metadata parsed)'],
  ['ingest', "intake's ingest(): whole-body read and decode, split, validate; output discarded"],
  ['output', '+ file output'],
  ['server', '+ HTTP server: routing, Bearer auth, response (request log off)'],
  ['log', '+ per-request log line at info'],
]

/** Every server case as not measured, with the reason (the server is missing or does not start). */
export function serverNotMeasured(reason) {
  return [
    {id: 'server-start', reason, targets: [{target: 'server start with 100 references vs `keystore list`', targetText: '≤ 1.5x'}], title: 'server start → listening'},
    {
      id: 'intake',
      reason,
      targets: [
        {target: 'intake with auth vs the reference server (events/s)', targetText: '≥ 0.95x'},
        {target: 'server CPU per request with auth vs the reference server', targetText: '≤ 1.15x'},
        {target: 'intake auth on vs off (events/s)', targetText: '≥ 0.97x'},
        {target: 'intake A/A: auth off, again vs auth off (events/s)', targetText: 'within 1.05x'},
        {target: 'intake A/A: server CPU per request, auth off, again vs auth off', targetText: 'within 1.05x'},
      ],
      title: 'intake: events/s and p99 latency',
    },
    {id: 'memory', reason, targets: [], title: `memory with ${AGENTS_TEXT} agents connected`},
    {
      id: 'otlp',
      reason,
      targets: [
        {target: 'OTLP/HTTP protobuf spans/s vs intake v2 events/s, same server', targetText: '≥ 0.8x'},
        {target: 'OTLP/HTTP auth on vs off (spans/s)', targetText: '≥ 0.97x'},
      ],
      title: 'OTLP/HTTP: spans/s against intake v2 events/s',
    },
    {id: 'redis', reason, targets: [{target: 'Redis output vs file output (events/s)', targetText: '≥ 0.7x'}], title: 'Redis output vs file output: events/s and added latency'},
  ]
}

function yamlConfig({auth, output}) {
  const refs = Array.from({length: REFERENCES - 1}, (_unused, i) => `      - "\${${keyName(i + 2)}}"`)
  return [
    '# benchmark: 100 keystore references (the token and 99 services)',
    'apm-server:',
    '  host: "127.0.0.1:0"',
    '  auth:',
    ...(auth ? [`    secret_token: "\${${keyName(1)}}"`] : []),
    '    anonymous:',
    '      allow_service:',
    ...refs,
    'output.file:',
    `  path: "${output}"`,
    '',
  ].join('\n')
}

function runSpec(home, configFile) {
  return cli(['run', '-c', configFile], {cwd: home, env: cliEnv()})
}

/** Builds the server fixtures and checks that `apm-server run` starts; returns `{reason}` when it cannot. */
export async function prepareServer(scratch, log) {
  const manifest = JSON.parse(readFileSync(path.join(cliRoot(), 'oclif.manifest.json'), 'utf8'))
  if (!manifest.commands?.run) return {reason: 'server not available (the built CLI has no `run` command: oclif.manifest.json lists none)'}
  const home = path.join(scratch, 'server')
  log(`  keystore of ${REFERENCES} keys and server configs`)
  buildKeystore(home, REFERENCES)
  const token = runSync(cli(['keystore', 'show', keyName(1)], {cwd: home, env: cliEnv()})).stdout.toString('utf8')
  const configs = {}
  for (const [name, auth] of [['start', true], ['auth', true], ['noauth', false], ['memory', true], ['check', false]]) {
    configs[name] = path.join(home, `${name}.yml`)
    const output = path.join(home, `out-${name}`)
    mkdirSync(output, {recursive: true})
    writeFileSync(configs[name], yamlConfig({auth, output}))
  }

  try {
    const server = await startServer(runSpec(home, configs.start))
    await server.stop()
  } catch (error) {
    return {reason: `server not available (\`apm-server run\` did not start: ${error.message.split('\n')[0].slice(0, 300)})`}
  }

  return {configs, home, token}
}

/**
 * The reference server must write exactly what `apm-server run` writes: the same request to each (fresh
 * output directories), the two files compared byte for byte. Throws when they differ.
 */
async function checkReferenceBytes({configs, home}, body, headers) {
  const ours = path.join(home, 'out-check')
  const theirs = path.join(home, 'out-reference-check')
  for (const dir of [ours, theirs]) {
    rmSync(dir, {force: true, recursive: true})
    mkdirSync(dir, {recursive: true})
  }

  for (const spec of [runSpec(home, configs.check), {args: [REFERENCE_SERVER, theirs], cmd: NODE, env: cliEnv()}]) {
    // eslint-disable-next-line no-await-in-loop -- one server at a time
    const server = await startServer(spec)
    try {
      // eslint-disable-next-line no-await-in-loop
      const answer = await post(new URL('/intake/v2/events', server.url), body, headers)
      if (answer.status !== 202) throw new Error(`reference check: ${describe(spec)} answered ${answer.status} ${answer.body.slice(0, 200)}`)
    } finally {
      // eslint-disable-next-line no-await-in-loop
      await server.stop()
    }
  }

  const expected = readFileSync(path.join(ours, 'apm-server'))
  const written = readFileSync(path.join(theirs, 'apm-server'))
  if (!written.equals(expected)) {
    throw new Error(`bench/reference-intake-server.js wrote ${written.length} bytes where \`apm-server run\` wrote ${expected.length} for the same request, not the same bytes; fix the reference`)
  }
}

/** The server groups, for fixtures from {@link prepareServer}. */
export function serverGroups(fixture, {baseline, scale = 1} = {}) {
  const rounds = (n) => Math.max(3, Math.round(n * scale))
  return [
    startGroup(fixture, rounds(11)),
    intakeGroup(fixture, rounds(7), scale, baseline),
    stagesGroup(fixture, rounds(5), scale),
    memoryGroup(fixture, rounds(3)),
    otlpGroup(fixture, rounds(7), scale),
    redisGroup(fixture, rounds(5), scale, baseline),
  ]
}

function startGroup({configs, home}, runs) {
  return {
    comparisons: [
      {base: 'node', case: 'list100'},
      {base: 'node', case: 'start'},
      {base: 'list100', case: 'start', target: {op: '<=', ratio: 1.5}},
    ],
    id: 'server-start',
    note: 'Times run from spawn to exit, or for the server from spawn to its "listening" log line on stderr (then it is stopped, untimed).',
    runs,
    series: [
      {id: 'node', label: '`node -e 0`', measure: async () => (await timeAsync(NODE_BASELINE)).ms, unit: 'ms'},
      {
        id: 'list100',
        label: `\`keystore list\`, passwordless, ${REFERENCES} keys`,
        measure: async () => (await timeAsync(cli(['keystore', 'list'], {cwd: home, env: cliEnv()}))).ms,
        unit: 'ms',
      },
      {
        id: 'start',
        label: `\`apm-server run\` → "listening", config with ${REFERENCES} \`\${KEY}\` references`,
        measure: async () => (await timeAsync(runSpec(home, configs.start), {until: /"message":\s*"listening"|\blistening\b/})).ms,
        unit: 'ms',
      },
    ],
    title: `server start → listening, ${REFERENCES} references to a passwordless keystore`,
  }
}

/** `baseline`: another built checkout whose `apm-server run` is measured too (bench/run.js --baseline). */
function intakeGroup(fixture, runs, scale, baseline) {
  const {configs, home, token} = fixture
  const duration = scale < 1 ? 2 : 5
  const body = zlib.gzipSync(intakeBody(EVENTS_PER_REQUEST))
  const headers = {'Content-Encoding': 'gzip', 'Content-Type': 'application/x-ndjson'}
  const bearer = {Authorization: `Bearer ${token}`}
  const load = async (server, name, extraHeaders, seconds = duration) => {
    const cpuBefore = cpuMs(server.pid)
    const result = await autocannon({
      body,
      connections: CONNECTIONS,
      duration: seconds,
      headers: {...headers, ...extraHeaders},
      method: 'POST',
      url: new URL('/intake/v2/events', server.url).href,
    })
    if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
      throw new Error(`intake against ${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors, ${result.timeouts} timeouts`)
    }

    return {
      cpuPerRequest: ((cpuMs(server.pid) - cpuBefore) * 1000) / result['2xx'],
      eventsPerSec: (result['2xx'] * EVENTS_PER_REQUEST) / result.duration,
      p99: result.latency.p99,
    }
  }

  // A fresh server process for every measurement, so that no series is stuck with one process's luck: a
  // server process runs in phases of seconds to minutes at very different speeds (the same server, started
  // once per run, gave 357 µs of CPU per request over a whole run and 473 µs over the next; one process
  // under steady load, 340-400 µs for 10 s, then 650 µs). The auth-off server is measured twice per round ("again"):
  // the two are the same thing, so their ratio is what noise alone does to a ratio in this run.
  const series = (id, label, spec, extraHeaders, {unauthorized = false} = {}) => ({
    id,
    label,
    async measure() {
      const server = await startServer(spec)
      try {
        const answer = await post(new URL('/intake/v2/events?verbose', server.url), body, {...headers, ...extraHeaders})
        if (answer.status !== 202 || JSON.parse(answer.body).accepted !== EVENTS_PER_REQUEST) {
          throw new Error(`intake check against ${id}: expected 202 {"accepted":${EVENTS_PER_REQUEST}}, got ${answer.status} ${answer.body.slice(0, 200)}`)
        }

        if (unauthorized && (await post(new URL('/intake/v2/events', server.url), body, headers)).status !== 401) {
          throw new Error(`intake check: ${id} accepted a request without a token`)
        }

        await load(server, id, extraHeaders, WARMUP_SECONDS)
        const {cpuPerRequest, eventsPerSec, p99} = await load(server, id, extraHeaders)
        return {extra: {[`${id}Cpu`]: cpuPerRequest, [`${id}P99`]: p99}, value: eventsPerSec}
      } finally {
        await server.stop()
      }
    },
    unit: 'events/s',
  })
  const baselineSpec = baseline && {args: [path.join(baseline, 'bin', 'run.js'), 'run', '-c', configs.auth], cmd: NODE, cwd: home, env: cliEnv()}
  return {
    async before() {
      await checkReferenceBytes(fixture, body, headers)
    },
    comparisons: [
      ...(baseline
        ? [
            {base: 'baseline', case: 'auth'},
            {base: 'baselineP99', case: 'authP99'},
            {base: 'baselineCpu', case: 'authCpu'},
          ]
        : []),
      {base: 'reference', case: 'auth', target: {op: '>=', ratio: 0.95}},
      {base: 'referenceCpu', case: 'authCpu', target: {op: '<=', ratio: 1.15}},
      {base: 'noauth', case: 'auth', target: {op: '>=', ratio: 0.97}},
      // A/A (issue 17): two identical servers; past 1.05x either way, the server runs in speed phases again.
      {base: 'noauth', case: 'noauthAgain', target: {op: 'within', ratio: 1.05}},
      {base: 'noauthCpu', case: 'noauthAgainCpu', target: {op: 'within', ratio: 1.05}},
      {base: 'reference', case: 'noauth'},
      {base: 'referenceCpu', case: 'noauthCpu'},
      {base: 'referenceP99', case: 'authP99'},
      {base: 'raw', case: 'auth'},
      {base: 'raw', case: 'reference'},
      {base: 'referenceValidating', case: 'auth'},
      {base: 'referenceValidatingCpu', case: 'authCpu'},
      {base: 'reference', case: 'referenceValidating'},
      {base: 'rawCpu', case: 'authCpu'},
      {base: 'rawCpu', case: 'referenceCpu'},
      {base: 'rawP99', case: 'authP99'},
      {base: 'noauthP99', case: 'authP99'},
      {base: 'noauthCpu', case: 'authCpu'},
    ],
    extra: [
      {id: 'rawP99', label: 'p99 latency, raw node:http', unit: 'ms'},
      {id: 'referenceP99', label: 'p99 latency, reference server', unit: 'ms'},
      {id: 'referenceValidatingP99', label: 'p99 latency, reference server + JSON.parse of every line', unit: 'ms'},
      {id: 'authP99', label: 'p99 latency, `apm-server run` with Bearer auth', unit: 'ms'},
      {id: 'noauthP99', label: 'p99 latency, `apm-server run`, auth off', unit: 'ms'},
      {id: 'noauthAgainP99', label: 'p99 latency, `apm-server run`, auth off, again', unit: 'ms'},
      // Server CPU per answered request (/proc utime + stime): what each server itself spends, apart from
      // autocannon, which shares the 2 cores and so also sets the events/s.
      {id: 'rawCpu', label: 'server CPU per request, raw node:http', unit: 'µs'},
      {id: 'referenceCpu', label: 'server CPU per request, reference server', unit: 'µs'},
      {id: 'referenceValidatingCpu', label: 'server CPU per request, reference server + JSON.parse of every line', unit: 'µs'},
      {id: 'authCpu', label: 'server CPU per request, `apm-server run` with Bearer auth', unit: 'µs'},
      {id: 'noauthCpu', label: 'server CPU per request, `apm-server run`, auth off', unit: 'µs'},
      {id: 'noauthAgainCpu', label: 'server CPU per request, `apm-server run`, auth off, again', unit: 'µs'},
      ...(baseline
        ? [
            {id: 'baselineP99', label: `p99 latency, baseline (${baseline}) with Bearer auth`, unit: 'ms'},
            {id: 'baselineCpu', label: `server CPU per request, baseline (${baseline}) with Bearer auth`, unit: 'µs'},
          ]
        : []),
    ],
    id: 'intake',
    note: `Each measurement starts its server afresh, checks one request, warms it up for ${WARMUP_SECONDS} s (untimed), then runs autocannon (in the harness process, same 2 cores) for ${duration} s with ${CONNECTIONS} connections, each POSTing gzip ndjson of 1 metadata + ${EVENTS_PER_REQUEST} events (transactions and spans, ${body.length.toLocaleString('en-US')} bytes gzipped) to /intake/v2/events; events/s = 2xx answers x ${EVENTS_PER_REQUEST} / duration. The raw server only gunzips, counts lines and answers 202: the floor. The reference server does the work every intake must do, with no framework: gunzip, split lines, append every event line behind its metadata (the same bytes as \`apm-server run\`'s file output, checked byte for byte on one request before the rounds) with one writev per request, rotating at the same size, and answer 202; \`apm-server run\` also authenticates, validates every line, bounds what a client may cost and logs every request (stderr, drained), and its targets are set against the reference. "reference + JSON.parse" is the reference checking that every event line is JSON (a line that is not fails the request), no target: how much of the distance to the reference is the checking of every line. "auth off, again" is the auth-off server measured a second time in each round: its ratio to "auth off" is the noise floor of this run (identical servers), to read the auth on/off ratio against. Server CPU per request: the server process's own user + system time (/proc) over the run, divided by its 2xx answers; autocannon shares the 2 cores, so events/s also moves with its load, CPU per request does not.`,
    runs,
    series: [
      series('raw', 'raw node:http, the floor: gunzip, count lines, 202 (bench/raw-intake-server.js)', {args: [RAW_SERVER], cmd: NODE, env: cliEnv()}, {}),
      series('reference', 'reference: the required work, no framework (bench/reference-intake-server.js)', {args: [REFERENCE_SERVER, path.join(home, 'out-reference')], cmd: NODE, env: cliEnv()}, {}),
      series('referenceValidating', 'reference + JSON.parse of every event line (bench/reference-intake-server.js --validate)', {args: [REFERENCE_SERVER, '--validate', path.join(home, 'out-reference-validating')], cmd: NODE, env: cliEnv()}, {}),
      series('auth', '`apm-server run`, Bearer auth', runSpec(home, configs.auth), bearer, {unauthorized: true}),
      series('noauth', '`apm-server run`, auth off', runSpec(home, configs.noauth), {}),
      series('noauthAgain', '`apm-server run`, auth off, again (A/A: the noise floor)', runSpec(home, configs.noauth), {}),
      ...(baseline ? [series('baseline', `baseline \`apm-server run\` (${baseline}), Bearer auth`, baselineSpec, bearer, {unauthorized: true})] : []),
    ],
    title: 'intake: events/s and p99 latency',
    warmup: 0,
  }
}

/**
 * Where the intake time goes: the raw server, then servers that each add one piece of `apm-server run`
 * (bench/intake-stages-server.js, run from the TypeScript sources), then `apm-server run` itself. Each
 * stage's ratio to raw, next to its neighbour's, is that piece's cost. Also the server's CPU time per
 * request (all its threads, from /proc), which load from other processes disturbs less than throughput.
 */
function stagesGroup({configs, home, token}, runs, scale) {
  const duration = scale < 1 ? 2 : 4
  const body = zlib.gzipSync(intakeBody(EVENTS_PER_REQUEST))
  const headers = {'Authorization': `Bearer ${token}`, 'Content-Encoding': 'gzip', 'Content-Type': 'application/x-ndjson'}
  const servers = {}
  const ids = ['raw', ...STAGES.map(([id]) => id), 'ours', 'reference']
  const load = async (id, seconds = duration) => {
    const cpuBefore = cpuMs(servers[id].pid)
    const result = await autocannon({body, connections: CONNECTIONS, duration: seconds, headers, method: 'POST', url: new URL('/intake/v2/events', servers[id].url).href})
    if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
      throw new Error(`intake against ${id}: ${result.non2xx} non-2xx answers, ${result.errors} errors, ${result.timeouts} timeouts`)
    }

    return {cpuPerRequest: ((cpuMs(servers[id].pid) - cpuBefore) * 1000) / result['2xx'], eventsPerSec: (result['2xx'] * EVENTS_PER_REQUEST) / result.duration}
  }

  const series = (id, label) => ({
    id,
    label,
    async measure() {
      const {cpuPerRequest, eventsPerSec} = await load(id)
      return {extra: {[`${id}Cpu`]: cpuPerRequest}, value: eventsPerSec}
    },
    unit: 'events/s',
  })
  return {
    async after() {
      await Promise.all(Object.values(servers).map((server) => server.stop()))
    },
    async before() {
      servers.raw = await startServer({args: [RAW_SERVER], cmd: NODE, env: cliEnv()})
      for (const [id] of STAGES) {
        // eslint-disable-next-line no-await-in-loop -- one start at a time
        servers[id] = await startServer({args: ['--import', 'tsx', STAGES_SERVER, id], cmd: NODE, cwd: ROOT, env: {...cliEnv(), BENCH_INTAKE_TOKEN: token}})
      }

      servers.ours = await startServer(runSpec(home, configs.auth))
      servers.reference = await startServer({args: [REFERENCE_SERVER, path.join(home, 'out-reference-stages')], cmd: NODE, env: cliEnv()})
      // eslint-disable-next-line no-await-in-loop -- warm every server's JIT, untimed, one load at a time
      for (const id of ids) await load(id, 1)
    },
    comparisons: [
      ...ids.slice(1).map((id) => ({base: 'raw', case: id})),
      ...ids.slice(1).map((id) => ({base: 'rawCpu', case: `${id}Cpu`})),
      {base: 'reference', case: 'ours'},
      {base: 'referenceCpu', case: 'oursCpu'},
    ],
    extra: ids.map((id) => ({id: `${id}Cpu`, label: `server CPU time per request: ${id}`, unit: 'µs'})),
    id: 'intake-stages',
    optional: true,
    note: `The intake decomposition. Same load as the intake group (${CONNECTIONS} connections, gzip ndjson of 1 metadata + ${EVENTS_PER_REQUEST} events, Bearer token), ${duration} s per measurement. Stages: ${STAGES.map(([id, label]) => `**${id}**: ${label}`).join('; ')}. Stages run the working tree's TypeScript (node --import tsx); \`ours\` is \`apm-server run\` (the built CLI); \`reference\` is bench/reference-intake-server.js, the required work with no framework. CPU time per request is user + system time of the server process (all threads: zlib's thread pool included) over the 2xx answers.`,
    runs,
    series: [
      series('raw', 'raw node:http (bench/raw-intake-server.js)'),
      ...STAGES.map(([id, label]) => series(id, `${id}: ${label}`)),
      series('ours', '`apm-server run`, Bearer auth'),
      series('reference', 'reference: the required work, no framework (bench/reference-intake-server.js)'),
    ],
    title: 'intake decomposition: what each piece of the server costs',
    warmup: 0,
  }
}

/**
 * OTLP/HTTP protobuf against intake v2 on the same server (issue 14): spans/s of gzip protobuf export
 * requests of 100 spans to /v1/traces, events/s of gzip ndjson of 100 events to /intake/v2/events,
 * carrying the same information; and OTLP with auth on against off.
 */
function otlpGroup({configs, home, token}, runs, scale) {
  const duration = scale < 1 ? 2 : 5
  const bodies = {
    intake: {body: zlib.gzipSync(intakeBody(EVENTS_PER_REQUEST)), path: '/intake/v2/events', type: 'application/x-ndjson'},
    otlp: {body: zlib.gzipSync(otlpTracesBody(EVENTS_PER_REQUEST)), path: '/v1/traces', type: 'application/x-protobuf'},
  }
  const load = async (server, name, kind, headers, seconds) => {
    const {body, path: route, type} = bodies[kind]
    const cpuBefore = cpuMs(server.pid)
    const result = await autocannon({body, connections: CONNECTIONS, duration: seconds, headers: {'Content-Encoding': 'gzip', 'Content-Type': type, ...headers}, method: 'POST', url: new URL(route, server.url).href})
    if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) throw new Error(`${kind} against ${name}: ${result.non2xx} non-2xx answers, ${result.errors} errors, ${result.timeouts} timeouts`)
    return {cpuPerRequest: ((cpuMs(server.pid) - cpuBefore) * 1000) / result['2xx'], perSec: (result['2xx'] * EVENTS_PER_REQUEST) / result.duration}
  }

  const series = (id, label, kind, spec, headers, unit) => ({
    id,
    label,
    async measure() {
      const server = await startServer(spec)
      try {
        const {body, path: route, type} = bodies[kind]
        const answer = await post(new URL(route, server.url), body, {'Content-Encoding': 'gzip', 'Content-Type': type, ...headers})
        if (answer.status !== (kind === 'otlp' ? 200 : 202)) throw new Error(`${kind} check against ${id}: got ${answer.status} ${answer.body.slice(0, 200)}`)
        await load(server, id, kind, headers, WARMUP_SECONDS)
        const {cpuPerRequest, perSec} = await load(server, id, kind, headers, duration)
        // The library's floor, measured beside the server's figure: in this process, the server idle.
        const decode = id === 'otlp' ? {decodeCpu: protobufDecodeMicros(zlib.gunzipSync(body))} : {}
        return {extra: {[`${id}Cpu`]: cpuPerRequest, ...decode}, value: perSec}
      } finally {
        await server.stop()
      }
    },
    unit,
  })
  const bearer = {Authorization: `Bearer ${token}`}
  return {
    comparisons: [
      {base: 'intake', case: 'otlp', target: {op: '>=', ratio: 0.8}},
      {base: 'otlpNoauth', case: 'otlp', target: {op: '>=', ratio: 0.97}},
      {base: 'intakeCpu', case: 'otlpCpu'},
      {base: 'otlpNoauthCpu', case: 'otlpCpu'},
      {base: 'intakeCpu', case: 'decodeCpu'},
    ],
    extra: [
      {id: 'intakeCpu', label: 'server CPU per request of 100 events: intake v2', unit: 'µs'},
      {id: 'otlpCpu', label: 'server CPU per request of 100 spans: OTLP/HTTP protobuf, Bearer auth', unit: 'µs'},
      {id: 'otlpNoauthCpu', label: 'server CPU per request of 100 spans: OTLP/HTTP protobuf, auth off', unit: 'µs'},
      {id: 'decodeCpu', label: 'protobufjs decode alone of the same 100-span request (in the harness, no server)', unit: 'µs'},
    ],
    id: 'otlp',
    note: `Each measurement starts \`apm-server run\` afresh, checks one request, warms it up for ${WARMUP_SECONDS} s (untimed), then runs autocannon for ${duration} s with ${CONNECTIONS} connections. Intake v2: gzip ndjson of 1 metadata + ${EVENTS_PER_REQUEST} events (${bodies.intake.body.length.toLocaleString('en-US')} bytes) to /intake/v2/events. OTLP: a gzip protobuf ExportTraceServiceRequest of ${EVENTS_PER_REQUEST} spans with the same information (${bodies.otlp.body.length.toLocaleString('en-US')} bytes; bench/lib/otlp.js) to /v1/traces. Per second: 2xx answers x ${EVENTS_PER_REQUEST} / duration. The decode floor: protobufjs (the library issue 14 asks for; its reflection decoders are the code pbjs generates) decoding the same request, nothing else, CPU per decode in the harness process after the OTLP server's run: 0.8x of intake v2's events/s leaves an OTLP request about 1.25x the intake's CPU per request, and this row shows how much of that the decode alone takes.`,
    runs,
    series: [
      series('intake', '`apm-server run`, intake v2 events/s, Bearer auth', 'intake', runSpec(home, configs.auth), bearer, 'events/s'),
      series('otlp', '`apm-server run`, OTLP/HTTP protobuf spans/s, Bearer auth', 'otlp', runSpec(home, configs.auth), bearer, 'spans/s'),
      series('otlpNoauth', '`apm-server run`, OTLP/HTTP protobuf spans/s, auth off', 'otlp', runSpec(home, configs.noauth), {}, 'spans/s'),
    ],
    title: 'OTLP/HTTP: spans/s against intake v2 events/s',
    warmup: 0,
  }
}

/** User + system CPU time of a process (all its threads) so far, in ms. */
function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS
}

/** USER_HZ: 100 on every Linux that Node supports. */
const CLOCK_TICKS = 100

function memoryGroup({configs, home, token}, runs) {
  const hold = async (spec, headers) => {
    const server = await startServer(spec)
    try {
      await sleep(500)
      const idle = rssMiB(server.pid)
      const agents = await holdAgents(server.url, AGENTS, headers)
      await sleep(1500)
      const loaded = rssMiB(server.pid)
      const closed = agents.closedEarly
      agents.close()
      return {closed, idle, loaded}
    } finally {
      await server.stop()
    }
  }

  const series = (id, label, spec, headers) => ({
    id,
    label,
    async measure() {
      const {closed, idle, loaded} = await hold(spec, headers)
      return {extra: {[`${id}Closed`]: closed, [`${id}Idle`]: idle}, value: loaded}
    },
    unit: 'MiB',
  })
  return {
    comparisons: [{base: 'raw', case: 'auth'}],
    derived: [
      {from: (round) => ((round.auth - round.authIdle) * 1024) / AGENTS, id: 'authPer', label: '`apm-server run`: KiB per connected agent', unit: 'KiB'},
      {from: (round) => ((round.raw - round.rawIdle) * 1024) / AGENTS, id: 'rawPer', label: 'raw node:http: KiB per connected agent', unit: 'KiB'},
    ],
    extra: [
      {id: 'authIdle', label: '`apm-server run`: RSS idle, before the agents', unit: 'MiB'},
      {id: 'authClosed', label: '`apm-server run`: requests answered or closed before sampling (expected 0)', unit: 'requests'},
      {id: 'rawIdle', label: 'raw node:http: RSS idle', unit: 'MiB'},
      {id: 'rawClosed', label: 'raw node:http: requests answered or closed before sampling (expected 0)', unit: 'requests'},
    ],
    id: 'memory',
    note: `Each measurement starts a fresh server, reads its RSS (/proc/PID/status) idle, opens ${AGENTS_TEXT} streamed intake requests (chunked gzip; the metadata line sent, the body left open, as an agent between flushes), waits 1.5 s and reads the RSS again.`,
    runs,
    series: [
      series('auth', `\`apm-server run\`, Bearer auth: RSS with ${AGENTS_TEXT} agents connected`, runSpec(home, configs.memory), {Authorization: `Bearer ${token}`}),
      series('raw', `raw node:http: RSS with ${AGENTS_TEXT} agents connected`, {args: [RAW_SERVER], cmd: NODE, env: cliEnv()}, {}),
    ],
    title: `memory with ${AGENTS_TEXT} agents connected`,
    warmup: 0,
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
