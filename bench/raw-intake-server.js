#!/usr/bin/env node
/**
 * The limit for our stack: a bare node:http server that drains a gzip (or plain) ndjson body, counts
 * its lines and answers 202, with no auth, parsing, validation or output. The benchmark compares
 * `apm-server run` against it. Listens on 127.0.0.1, port from argv[2] (default 0 = any free port), and
 * logs "listening http://127.0.0.1:PORT" on stderr.
 */
import http from 'node:http'
import zlib from 'node:zlib'

const NEWLINE = 0x0a

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost')
  if (req.method !== 'POST' || url.pathname !== '/intake/v2/events') {
    res.writeHead(404, {'Content-Type': 'application/json'}).end('{"error":"404 page not found"}\n')
    return
  }

  const encoding = req.headers['content-encoding']
  const body = encoding === 'gzip' ? req.pipe(zlib.createGunzip()) : encoding === 'deflate' ? req.pipe(zlib.createInflate()) : req
  let lines = 0
  body.on('data', (chunk) => {
    for (let i = chunk.indexOf(NEWLINE); i !== -1; i = chunk.indexOf(NEWLINE, i + 1)) lines++
  })
  body.on('end', () => {
    if (url.searchParams.has('verbose')) res.writeHead(202, {'Content-Type': 'application/json'}).end(`{"accepted":${Math.max(0, lines - 1)}}\n`)
    else res.writeHead(202).end()
  })
  body.on('error', () => {
    if (!res.headersSent) res.writeHead(400, {'Content-Type': 'application/json'}).end('{"error":"bad body"}\n')
  })
})

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stderr.write(`listening http://127.0.0.1:${server.address().port}\n`)
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
  })
}
