import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import vm from 'node:vm'

import {parse as parseYaml} from 'yaml'

import {CliResult, makeTempDir, runCli} from '../helpers/cli.js'

const URL_FLAGS = ['--server-url', 'https://apm.example.com:8200', '--ca-cert', '/etc/apm-server/ca.pem']
const RUM_NOTE =
  'note: RUM (browser) agents must not get the secret token: anyone can read it from the page; let them in with anonymous access (apm-server.auth.anonymous) instead\n'

type Agent = 'dotnet' | 'go' | 'java' | 'nodejs' | 'otel' | 'php' | 'python' | 'ruby'

/** One row per agent per format: the exact block printed for `URL_FLAGS`. */
const TEXT_ROWS: Array<{agent: Agent; format: 'env' | 'file'; block: string[]}> = [
  {
    agent: 'go',
    block: [
      '# Go agent: environment variables',
      "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
      'export ELASTIC_APM_SERVER_URL=https://apm.example.com:8200',
      'export ELASTIC_APM_SERVER_CERT=/etc/apm-server/ca.pem',
      'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
      "# ELASTIC_APM_SERVER_CERT pins the server's own certificate; if /etc/apm-server/ca.pem is a CA that signed it, set ELASTIC_APM_SERVER_CA_CERT_FILE instead",
    ],
    format: 'env',
  },
  {
    agent: 'go',
    block: [
      '# Go agent: environment variables',
      "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
      'export ELASTIC_APM_SERVER_URL=https://apm.example.com:8200',
      'export ELASTIC_APM_SERVER_CERT=/etc/apm-server/ca.pem',
      'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
      '# this agent has no config file: set these in the environment of the service (or in code)',
      "# ELASTIC_APM_SERVER_CERT pins the server's own certificate; if /etc/apm-server/ca.pem is a CA that signed it, set ELASTIC_APM_SERVER_CA_CERT_FILE instead",
    ],
    format: 'file',
  },
  {
    agent: 'java',
    block: [
      '# Java agent: environment variables',
      "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
      'export ELASTIC_APM_SERVER_URLS=https://apm.example.com:8200',
      'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
      '# elasticapm.properties sits next to the agent jar; server_urls takes a comma-separated list (recent agents also accept server_url)',
      '# do not pass the token as -Delastic.apm.secret_token: command lines are visible to every user of the host',
      '# no CA setting: a self-signed or private-CA certificate goes into the JVM trustStore: keytool -importcert -cacerts -alias apm-server -file /etc/apm-server/ca.pem (Java 8: -keystore $JAVA_HOME/jre/lib/security/cacerts instead of -cacerts)',
    ],
    format: 'env',
  },
  {
    agent: 'java',
    block: [
      '# Java agent: elasticapm.properties',
      'secret_token=<APM_SECRET_TOKEN>',
      'server_urls=https://apm.example.com:8200',
      'verify_server_cert=true',
      '# elasticapm.properties sits next to the agent jar; server_urls takes a comma-separated list (recent agents also accept server_url)',
      '# do not pass the token as -Delastic.apm.secret_token: command lines are visible to every user of the host',
      '# no CA setting: a self-signed or private-CA certificate goes into the JVM trustStore: keytool -importcert -cacerts -alias apm-server -file /etc/apm-server/ca.pem (Java 8: -keystore $JAVA_HOME/jre/lib/security/cacerts instead of -cacerts)',
    ],
    format: 'file',
  },
  {
    agent: 'dotnet',
    block: [
      '# .NET agent: environment variables',
      "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
      'export ELASTIC_APM_SERVER_URL=https://apm.example.com:8200',
      'export ELASTIC_APM_SERVER_CERT=/etc/apm-server/ca.pem',
      'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
      '# environment variables work in every setup; appsettings.json (or any IConfiguration source) where the agent is given the configuration, as in ASP.NET Core',
      '# ServerCert needs agent 1.9 or later',
    ],
    format: 'env',
  },
  {
    agent: 'dotnet',
    block: [
      '// .NET agent: appsettings.json',
      '{',
      '  "ElasticApm": {',
      '    "SecretToken": "<APM_SECRET_TOKEN>",',
      '    "ServerUrl": "https://apm.example.com:8200",',
      '    "ServerCert": "/etc/apm-server/ca.pem",',
      '    "VerifyServerCert": true',
      '  }',
      '}',
      '// environment variables work in every setup; appsettings.json (or any IConfiguration source) where the agent is given the configuration, as in ASP.NET Core',
      '// ServerCert needs agent 1.9 or later',
    ],
    format: 'file',
  },
  {
    agent: 'nodejs',
    block: [
      '# Node.js agent: environment variables',
      "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
      'export ELASTIC_APM_SERVER_URL=https://apm.example.com:8200',
      'export ELASTIC_APM_SERVER_CA_CERT_FILE=/etc/apm-server/ca.pem',
      'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
      "# elastic-apm-node.js is read from the working directory (or ELASTIC_APM_CONFIG_FILE); the same options can be passed to require('elastic-apm-node').start({...})",
    ],
    format: 'env',
  },
  {
    agent: 'nodejs',
    block: [
      '// Node.js agent: elastic-apm-node.js',
      'module.exports = {',
      '  secretToken: "<APM_SECRET_TOKEN>",',
      '  serverUrl: "https://apm.example.com:8200",',
      '  serverCaCertFile: "/etc/apm-server/ca.pem",',
      '  verifyServerCert: true,',
      '}',
      "// elastic-apm-node.js is read from the working directory (or ELASTIC_APM_CONFIG_FILE); the same options can be passed to require('elastic-apm-node').start({...})",
    ],
    format: 'file',
  },
  {
    agent: 'php',
    block: [
      '# PHP agent: environment variables',
      "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
      'export ELASTIC_APM_SERVER_URL=https://apm.example.com:8200',
      'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
      '# environment variables must reach the PHP process (for PHP-FPM: env[...] in the pool config, or clear_env = no)',
      '# no CA setting: a self-signed or private-CA certificate goes into the system trust store (copy /etc/apm-server/ca.pem to /usr/local/share/ca-certificates/apm-server.crt, run update-ca-certificates); verify_server_cert=false keeps encryption but not server identity, a last resort',
    ],
    format: 'env',
  },
  {
    agent: 'php',
    block: [
      '; PHP agent: php.ini',
      'elastic_apm.secret_token="<APM_SECRET_TOKEN>"',
      'elastic_apm.server_url="https://apm.example.com:8200"',
      'elastic_apm.verify_server_cert=true',
      '; environment variables must reach the PHP process (for PHP-FPM: env[...] in the pool config, or clear_env = no)',
      '; no CA setting: a self-signed or private-CA certificate goes into the system trust store (copy /etc/apm-server/ca.pem to /usr/local/share/ca-certificates/apm-server.crt, run update-ca-certificates); verify_server_cert=false keeps encryption but not server identity, a last resort',
    ],
    format: 'file',
  },
  {
    agent: 'python',
    block: [
      '# Python agent: environment variables',
      "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
      'export ELASTIC_APM_SERVER_URL=https://apm.example.com:8200',
      'export ELASTIC_APM_SERVER_CERT=/etc/apm-server/ca.pem',
      'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
      "# the ELASTIC_APM dict is Django's settings.py or Flask's app.config; elasticapm.Client() takes the same names in lower case (secret_token, server_url, server_cert, verify_server_cert)",
      "# server_cert pins the server's own certificate (its validity is not checked); if /etc/apm-server/ca.pem is a CA that signed it, use server_ca_cert_file (ELASTIC_APM_SERVER_CA_CERT_FILE) instead",
    ],
    format: 'env',
  },
  {
    agent: 'python',
    block: [
      '# Python agent: settings.py (Django) or app.config (Flask)',
      'ELASTIC_APM = {',
      '    "SECRET_TOKEN": "<APM_SECRET_TOKEN>",',
      '    "SERVER_URL": "https://apm.example.com:8200",',
      '    "SERVER_CERT": "/etc/apm-server/ca.pem",',
      '    "VERIFY_SERVER_CERT": True,',
      '}',
      "# the ELASTIC_APM dict is Django's settings.py or Flask's app.config; elasticapm.Client() takes the same names in lower case (secret_token, server_url, server_cert, verify_server_cert)",
      "# server_cert pins the server's own certificate (its validity is not checked); if /etc/apm-server/ca.pem is a CA that signed it, use server_ca_cert_file (ELASTIC_APM_SERVER_CA_CERT_FILE) instead",
    ],
    format: 'file',
  },
  {
    agent: 'ruby',
    block: [
      '# Ruby agent: environment variables',
      "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
      'export ELASTIC_APM_SERVER_URL=https://apm.example.com:8200',
      'export ELASTIC_APM_SERVER_CA_CERT_FILE=/etc/apm-server/ca.pem',
      'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
      '# config/elastic_apm.yml is evaluated as ERB, so it can read the token from the environment instead of holding it',
      '# agents before 4.0 call this option server_ca_cert (ELASTIC_APM_SERVER_CA_CERT)',
    ],
    format: 'env',
  },
  {
    agent: 'ruby',
    block: [
      '# Ruby agent: config/elastic_apm.yml',
      'secret_token: "<APM_SECRET_TOKEN>"',
      'server_url: "https://apm.example.com:8200"',
      'server_ca_cert_file: "/etc/apm-server/ca.pem"',
      'verify_server_cert: true',
      '# config/elastic_apm.yml is evaluated as ERB, so it can read the token from the environment instead of holding it',
      '# agents before 4.0 call this option server_ca_cert (ELASTIC_APM_SERVER_CA_CERT)',
    ],
    format: 'file',
  },
  {
    agent: 'otel',
    block: [
      '# OpenTelemetry agent: environment variables',
      "export OTEL_EXPORTER_OTLP_HEADERS='Authorization=Bearer%20<APM_SECRET_TOKEN>'",
      'export OTEL_EXPORTER_OTLP_ENDPOINT=https://apm.example.com:8200',
      'export OTEL_EXPORTER_OTLP_CERTIFICATE=/etc/apm-server/ca.pem',
      'export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf',
      "export OTEL_SERVICE_NAME='<SERVICE_NAME>'",
      '# OTEL_EXPORTER_OTLP_HEADERS holds the token percent-encoded, as the OpenTelemetry SDK specification requires ("Bearer <token>" is written Bearer%20<token>)',
      '# the same URL takes OTLP over gRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc',
    ],
    format: 'env',
  },
  {
    agent: 'otel',
    block: [
      '# OpenTelemetry agent: otel-collector.yaml',
      'exporters:',
      '  otlp/apm-server:',
      '    endpoint: "apm.example.com:8200"',
      '    headers:',
      '      Authorization: "Bearer ${env:APM_SECRET_TOKEN}"',
      '    tls:',
      '      ca_file: "/etc/apm-server/ca.pem"',
      '# an OpenTelemetry Collector: add otlp/apm-server to the exporters of its service.pipelines (traces, metrics, logs); it sends OTLP over gRPC',
      '# the Collector takes the token from its own environment: set APM_SECRET_TOKEN there (apm-server keystore show APM_SECRET_TOKEN); the file never holds it',
    ],
    format: 'file',
  },
]

/** One row per agent for the JSON form: every setting as kind:name, env first, in role order. */
const JSON_ROWS: Array<{agent: Agent; configFile: null | string; settings: string[]}> = [
  {
    agent: 'go',
    configFile: null,
    settings: ['env:ELASTIC_APM_SECRET_TOKEN', 'env:ELASTIC_APM_SERVER_URL', 'env:ELASTIC_APM_SERVER_CERT', 'env:ELASTIC_APM_VERIFY_SERVER_CERT'],
  },
  {
    agent: 'java',
    configFile: 'elasticapm.properties',
    settings: [
      'env:ELASTIC_APM_SECRET_TOKEN', 'env:ELASTIC_APM_SERVER_URLS', 'env:ELASTIC_APM_VERIFY_SERVER_CERT',
      'config:secret_token', 'config:server_urls', 'config:verify_server_cert',
    ],
  },
  {
    agent: 'dotnet',
    configFile: 'appsettings.json',
    settings: [
      'env:ELASTIC_APM_SECRET_TOKEN', 'env:ELASTIC_APM_SERVER_URL', 'env:ELASTIC_APM_SERVER_CERT', 'env:ELASTIC_APM_VERIFY_SERVER_CERT',
      'config:ElasticApm:SecretToken', 'config:ElasticApm:ServerUrl', 'config:ElasticApm:ServerCert', 'config:ElasticApm:VerifyServerCert',
    ],
  },
  {
    agent: 'nodejs',
    configFile: 'elastic-apm-node.js',
    settings: [
      'env:ELASTIC_APM_SECRET_TOKEN', 'env:ELASTIC_APM_SERVER_URL', 'env:ELASTIC_APM_SERVER_CA_CERT_FILE', 'env:ELASTIC_APM_VERIFY_SERVER_CERT',
      'config:secretToken', 'config:serverUrl', 'config:serverCaCertFile', 'config:verifyServerCert',
    ],
  },
  {
    agent: 'php',
    configFile: 'php.ini',
    settings: [
      'env:ELASTIC_APM_SECRET_TOKEN', 'env:ELASTIC_APM_SERVER_URL', 'env:ELASTIC_APM_VERIFY_SERVER_CERT',
      'config:elastic_apm.secret_token', 'config:elastic_apm.server_url', 'config:elastic_apm.verify_server_cert',
    ],
  },
  {
    agent: 'python',
    configFile: 'settings.py (Django) or app.config (Flask)',
    settings: [
      'env:ELASTIC_APM_SECRET_TOKEN', 'env:ELASTIC_APM_SERVER_URL', 'env:ELASTIC_APM_SERVER_CERT', 'env:ELASTIC_APM_VERIFY_SERVER_CERT',
      'config:SECRET_TOKEN', 'config:SERVER_URL', 'config:SERVER_CERT', 'config:VERIFY_SERVER_CERT',
    ],
  },
  {
    agent: 'ruby',
    configFile: 'config/elastic_apm.yml',
    settings: [
      'env:ELASTIC_APM_SECRET_TOKEN', 'env:ELASTIC_APM_SERVER_URL', 'env:ELASTIC_APM_SERVER_CA_CERT_FILE', 'env:ELASTIC_APM_VERIFY_SERVER_CERT',
      'config:secret_token', 'config:server_url', 'config:server_ca_cert_file', 'config:verify_server_cert',
    ],
  },
  {
    agent: 'otel',
    configFile: 'otel-collector.yaml',
    settings: [
      'env:OTEL_EXPORTER_OTLP_HEADERS', 'env:OTEL_EXPORTER_OTLP_ENDPOINT', 'env:OTEL_EXPORTER_OTLP_CERTIFICATE', 'env:OTEL_EXPORTER_OTLP_PROTOCOL', 'env:OTEL_SERVICE_NAME',
      'config:exporters.otlp/apm-server.headers.Authorization', 'config:exporters.otlp/apm-server.endpoint', 'config:exporters.otlp/apm-server.tls.ca_file',
    ],
  },
]

interface Setting {
  role: string
  name: string
  value: boolean | string
  kind: string
}

interface Document {
  serverUrl: string
  tokenKey: string
  secretShown: boolean
  agents: Array<{agent: string; title: string; configFile: null | string; settings: Setting[]; notes: string[]}>
  notes: string[]
  warnings: string[]
}

/** Splits the text output into one block per agent, keyed by agent name (blocks are in table order). */
function blocksOf(stdout: string): Map<string, string[]> {
  const order = ['go', 'java', 'dotnet', 'nodejs', 'php', 'python', 'ruby', 'otel']
  const blocks = stdout.replace(/\n$/, '').split('\n\n')
  assert.equal(blocks.length, order.length, stdout)
  return new Map(blocks.map((block, i) => [order[i], block.split('\n')]))
}

function ok(result: CliResult): CliResult {
  assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`)
  return result
}

describe('apm-server agent-config', () => {
  let tmp: ReturnType<typeof makeTempDir>
  beforeEach(() => {
    tmp = makeTempDir()
  })
  afterEach(() => tmp.cleanup())

  describe('the table, every agent in every format (no keystore anywhere)', () => {
    // Each format runs once for all agents; the rows below check one agent's block each.
    let outputs: {env: CliResult; file: CliResult; yaml: CliResult; json: CliResult; jsonFlag: CliResult}
    let shared: ReturnType<typeof makeTempDir>
    before(async () => {
      shared = makeTempDir()
      const cwd = shared.dir
      const [env, file, yaml, json, jsonFlag] = await Promise.all([
        runCli(['agent-config', ...URL_FLAGS], {cwd}),
        runCli(['agent-config', ...URL_FLAGS, '--format', 'file'], {cwd}),
        runCli(['agent-config', ...URL_FLAGS, '--format', 'yaml'], {cwd}),
        runCli(['agent-config', ...URL_FLAGS, '--format', 'json'], {cwd}),
        runCli(['agent-config', ...URL_FLAGS, '--json'], {cwd}),
      ])
      outputs = {env: ok(env), file: ok(file), json: ok(json), jsonFlag: ok(jsonFlag), yaml: ok(yaml)}
    })
    after(() => shared.cleanup())

    for (const {agent, block, format} of TEXT_ROWS) {
      it(`${agent}, --format ${format}`, () => {
        assert.deepEqual(blocksOf(outputs[format].stdout).get(agent), block)
      })
    }

    for (const {agent, configFile, settings} of JSON_ROWS) {
      it(`${agent}, --format json`, () => {
        const document = JSON.parse(outputs.json.stdout) as Document
        const entry = document.agents.find((candidate) => candidate.agent === agent)
        assert.ok(entry, `no ${agent} in ${outputs.json.stdout}`)
        assert.equal(entry.configFile, configFile)
        assert.deepEqual(entry.settings.map(({kind, name}) => `${kind}:${name}`), settings)
        if (agent === 'otel') {
          assert.deepEqual(
            entry.settings.map(({value}) => value),
            ['Authorization=Bearer%20<APM_SECRET_TOKEN>', 'https://apm.example.com:8200', '/etc/apm-server/ca.pem', 'http/protobuf', '<SERVICE_NAME>', 'Bearer ${env:APM_SECRET_TOKEN}', 'apm.example.com:8200', '/etc/apm-server/ca.pem'],
          )
          return
        }

        const values = Object.fromEntries(entry.settings.map(({role, value}) => [role, value]))
        assert.deepEqual(values, {
          ...(agent === 'java' || agent === 'php' ? {} : {'ca-cert': '/etc/apm-server/ca.pem'}),
          'secret-token': '<APM_SECRET_TOKEN>',
          'server-url': 'https://apm.example.com:8200',
          'verify-server-cert': true,
        })
      })
    }

    it('prints only the RUM note on stderr for text formats, nothing for json', () => {
      assert.equal(outputs.env.stderr, RUM_NOTE)
      assert.equal(outputs.file.stderr, RUM_NOTE)
      assert.equal(outputs.json.stderr, '')
    })

    it('--format yaml, the earlier name of --format file, prints exactly the same', () => {
      assert.equal(outputs.yaml.stdout, outputs.file.stdout)
      assert.equal(outputs.yaml.stderr, outputs.file.stderr)
    })

    it('--json and --format json print the same document, in agent order, with the RUM note and no secret', () => {
      const document = JSON.parse(outputs.json.stdout) as Document
      assert.deepEqual(JSON.parse(outputs.jsonFlag.stdout), document)
      assert.deepEqual(document.agents.map(({agent}) => agent), ['go', 'java', 'dotnet', 'nodejs', 'php', 'python', 'ruby', 'otel'])
      assert.equal(document.serverUrl, 'https://apm.example.com:8200')
      assert.equal(document.tokenKey, 'APM_SECRET_TOKEN')
      assert.equal(document.secretShown, false)
      assert.deepEqual(document.warnings, [])
      assert.deepEqual(document.notes, [RUM_NOTE.slice('note: '.length, -1)])
    })
  })

  it('--agent prints that agent alone; without --ca-cert there is no CA line, only the hint', async () => {
    const result = ok(await runCli(['agent-config', '--agent', 'nodejs'], {cwd: tmp.dir}))
    assert.equal(
      result.stdout,
      [
        '# Node.js agent: environment variables',
        "export ELASTIC_APM_SECRET_TOKEN='<APM_SECRET_TOKEN>'",
        'export ELASTIC_APM_SERVER_URL=https://localhost:8200',
        'export ELASTIC_APM_VERIFY_SERVER_CERT=true',
        "# elastic-apm-node.js is read from the working directory (or ELASTIC_APM_CONFIG_FILE); the same options can be passed to require('elastic-apm-node').start({...})",
        '# self-signed or private-CA server certificate? rerun with --ca-cert PATH',
        '',
      ].join('\n'),
    )
    assert.equal(result.stderr, RUM_NOTE)
  })

  it('warns on stderr, in one line, when the server url is not https', async () => {
    const result = ok(await runCli(['agent-config', '--agent', 'go', '--server-url', 'http://apm.internal:8200', '--json'], {cwd: tmp.dir}))
    const warning = 'server url http://apm.internal:8200 is not https: agents would send the secret token in clear text; enable TLS on the server (apm-server.ssl.enabled) and use an https:// url'
    assert.equal(result.stderr, `warning: ${warning}\n`)
    assert.deepEqual((JSON.parse(result.stdout) as Document).warnings, [warning])
  })

  describe('the server url from apm-server.yml', () => {
    const rows: Array<{yaml: string; url: string}> = [
      {url: 'https://localhost:8201', yaml: 'apm-server.host: "0.0.0.0:8201"\napm-server.ssl.enabled: true\n'},
      {url: 'https://apm.example.com:8200', yaml: 'apm-server:\n  host: "apm.example.com:8200"\n  ssl:\n    certificate: /etc/apm-server/cert.pem\n    key: /etc/apm-server/key.pem\n'},
      {url: 'http://localhost:8200', yaml: 'apm-server.ssl.enabled: false\napm-server.ssl.certificate: cert.pem\n'},
      {url: 'http://127.0.0.1:8300', yaml: 'apm-server.host: "127.0.0.1:8300"\n'},
    ]
    it('derives host and scheme (https when TLS is on), for each config', async () => {
      const results = await Promise.all(
        rows.map(async ({yaml}, i) => {
          const home = path.join(tmp.dir, `home${i}`)
          mkdirSync(home)
          writeFileSync(path.join(home, 'apm-server.yml'), yaml)
          return runCli(['agent-config', '--agent', 'go', '--format', 'json', '--path.home', home], {cwd: tmp.dir})
        }),
      )
      for (const [i, result] of results.entries()) {
        assert.equal((JSON.parse(ok(result).stdout) as Document).serverUrl, rows[i].url, rows[i].yaml)
        assert.equal(result.stderr.startsWith('warning: server url http://'), rows[i].url.startsWith('http://'), result.stderr)
      }
    })
  })

  describe('bad input exits 2 with one error line', () => {
    const rows: Array<{args: string[]; stderr: string}> = [
      {args: ['--agent', 'cobol'], stderr: 'error: expected --agent=cobol to be one of: go, java, dotnet, nodejs, php, python, ruby, otel; see --help\n'},
      {args: ['--format', 'toml'], stderr: 'error: expected --format=toml to be one of: env, file, yaml, json; see --help\n'},
      {args: ['--server-url', 'apm:8200'], stderr: 'error: server url "apm:8200" is not http or https; give a url such as https://localhost:8200\n'},
      {args: ['--server-url', 'not a url'], stderr: 'error: invalid server url "not a url"; give an absolute url such as https://localhost:8200\n'},
      {args: ['--token-key', 'NO SPACES'], stderr: 'error: invalid key name "NO SPACES": key names are 1 to 255 characters from A-Z a-z 0-9 _ . -\n'},
    ]
    it('for each row', async () => {
      const results = await Promise.all(rows.map(({args}) => runCli(['agent-config', ...args], {cwd: tmp.dir})))
      for (const [i, result] of results.entries()) {
        assert.deepEqual({code: result.code, stderr: result.stderr, stdout: result.stdout}, {code: 2, stderr: rows[i].stderr, stdout: ''}, rows[i].args.join(' '))
      }
    })
  })

  describe('--show-secret, with a password-protected keystore made by the CLI', () => {
    const PASSWORD = {APM_SERVER_KEYSTORE_PASSWORD: 'correct horse'}
    const TOKEN = 'tok-8f2Kq_x'
    beforeEach(async () => {
      ok(await runCli(['keystore', 'create', '--password'], {cwd: tmp.dir, env: PASSWORD}))
      ok(await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', 'OTHER_TOKEN', '--stdin'], {cwd: tmp.dir, env: PASSWORD, input: `${TOKEN}\nother-Token.2\n`}))
    })

    it('prints the token from the keystore, also under --json, and --token-key picks another key', async () => {
      const [text, json, other] = await Promise.all([
        runCli(['agent-config', '--agent', 'go', '--show-secret'], {cwd: tmp.dir, env: PASSWORD}),
        runCli(['agent-config', '--agent', 'ruby', '--show-secret', '--json'], {cwd: tmp.dir, env: PASSWORD}),
        runCli(['agent-config', '--agent', 'php', '--format', 'file', '--show-secret', '--token-key', 'OTHER_TOKEN'], {cwd: tmp.dir, env: PASSWORD}),
      ])
      assert.equal(ok(text).stdout.split('\n')[1], `export ELASTIC_APM_SECRET_TOKEN=${TOKEN}`)
      const document = JSON.parse(ok(json).stdout) as Document
      assert.equal(document.secretShown, true)
      assert.deepEqual(
        document.agents[0].settings.filter(({role}) => role === 'secret-token').map(({value}) => value),
        [TOKEN, TOKEN],
      )
      assert.equal(ok(other).stdout.split('\n')[1], 'elastic_apm.secret_token="other-Token.2"')
    })

    it('without --show-secret never opens the keystore: no password needed, no token printed', async () => {
      const result = ok(await runCli(['agent-config', '--json'], {cwd: tmp.dir}))
      assert.equal(result.stdout.includes(TOKEN), false)
      assert.equal((JSON.parse(result.stdout) as Document).secretShown, false)
      // The same keystore does need the password once --show-secret asks for the token.
      const refused = await runCli(['agent-config', '--show-secret'], {cwd: tmp.dir})
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, /^error: the keystore is password protected and no terminal is attached to ask; set APM_SERVER_KEYSTORE_PASSWORD/)
    })

    it('a missing key is an error naming the key', async () => {
      const result = await runCli(['agent-config', '--show-secret', '--token-key', 'NOPE', '--json'], {cwd: tmp.dir, env: PASSWORD})
      assert.equal(result.code, 1)
      assert.equal(JSON.parse(result.stdout).error.code, 'ENOKEY')
    })
  })

  it('without --show-secret a broken keystore file is not read; with it, it is', async () => {
    mkdirSync(path.join(tmp.dir, 'data'), {mode: 0o700})
    writeFileSync(path.join(tmp.dir, 'data', 'apm-server.keystore'), 'not a keystore at all', {mode: 0o600})
    const [plain, shown] = await Promise.all([
      runCli(['agent-config', '--agent', 'go'], {cwd: tmp.dir}),
      runCli(['agent-config', '--agent', 'go', '--show-secret', '--json'], {cwd: tmp.dir}),
    ])
    ok(plain)
    assert.equal(shown.code, 1)
    assert.equal(JSON.parse(shown.stdout).error.code, 'EFORMAT')
  })

  describe('a token with quotes, backslash, $ and <% survives each form', () => {
    const HOSTILE = `a'b"c\\d$e{f}<%g`
    let env: CliResult
    let file: CliResult
    beforeEach(async () => {
      ok(await runCli(['keystore', 'create'], {cwd: tmp.dir}))
      ok(await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin'], {cwd: tmp.dir, input: HOSTILE}))
      ;[env, file] = await Promise.all([
        runCli(['agent-config', '--show-secret'], {cwd: tmp.dir}),
        runCli(['agent-config', '--show-secret', '--format', 'file'], {cwd: tmp.dir}),
      ])
      ok(env)
      ok(file)
    })

    it('shell: a POSIX sh evaluating the export line gets the exact token', () => {
      const line = blocksOf(env.stdout).get('go')![1]
      const seen = execFileSync('/bin/sh', ['-c', `${line}; printf %s "$ELASTIC_APM_SECRET_TOKEN"`], {encoding: 'utf8'})
      assert.equal(seen, HOSTILE)
    })

    it('otel: the header, read by a shell and percent-decoded as the SDKs decode it, is Authorization: Bearer <token>; the Collector file names the variable, never the token', () => {
      const line = blocksOf(env.stdout).get('otel')![1]
      const seen = execFileSync('/bin/sh', ['-c', `${line}; printf %s "$OTEL_EXPORTER_OTLP_HEADERS"`], {encoding: 'utf8'})
      const [name, value] = seen.split('=')
      assert.deepEqual([name, decodeURIComponent(value)], ['Authorization', `Bearer ${HOSTILE}`])
      assert.match(seen, /^Authorization=Bearer%20[\w%.~*()!'-]+$/, 'nothing a header list or a shell would split on')
      const collector = blocksOf(file.stdout).get('otel')!
      assert.equal(parseYaml(collector.join('\n')).exporters['otlp/apm-server'].headers.Authorization, 'Bearer ${env:APM_SECRET_TOKEN}')
      assert.equal(file.stdout.includes(HOSTILE), false)
    })

    it('config forms: parsed back by YAML (after ERB), JSON and JavaScript; properties escaped; php.ini refuses', () => {
      const blocks = blocksOf(file.stdout)
      const ruby = blocks.get('ruby')!.filter((line) => !line.startsWith('#')).join('\n').replaceAll('<%%', '<%')
      assert.equal(parseYaml(ruby).secret_token, HOSTILE)
      const dotnet = blocks.get('dotnet')!.filter((line) => !line.startsWith('//')).join('\n')
      assert.equal(JSON.parse(dotnet).ElasticApm.SecretToken, HOSTILE)
      const node = blocks.get('nodejs')!.filter((line) => !line.startsWith('//')).join('\n')
      const sandbox = {module: {exports: {} as Record<string, unknown>}}
      vm.runInNewContext(node, sandbox)
      assert.equal(sandbox.module.exports.secretToken, HOSTILE)
      assert.equal(blocks.get('java')![1], `secret_token=a'b"c\\\\d$e{f}<%g`)
      assert.deepEqual(blocks.get('php')!.slice(0, 3), [
        '; PHP agent: php.ini',
        'elastic_apm.server_url="https://localhost:8200"',
        'elastic_apm.verify_server_cert=true',
      ])
      assert.ok(blocks.get('php')!.includes('; elastic_apm.secret_token: the value has characters php.ini cannot hold; set ELASTIC_APM_SECRET_TOKEN in the environment instead'))
    })
  })

  it('refuses a token agents cannot send, without printing it', async () => {
    ok(await runCli(['keystore', 'create'], {cwd: tmp.dir}))
    ok(await runCli(['keystore', 'add', 'APM_SECRET_TOKEN', '--stdin'], {cwd: tmp.dir, input: 'has a space'}))
    const result = await runCli(['agent-config', '--show-secret'], {cwd: tmp.dir})
    assert.equal(result.code, 1)
    assert.equal(result.stdout, '')
    assert.equal(
      result.stderr,
      'error: the value of key APM_SECRET_TOKEN is not a printable ASCII token without spaces, which agents cannot send; store a new one with "apm-server keystore add APM_SECRET_TOKEN --generate --force"\n',
    )
  })
})
