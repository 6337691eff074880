#!/usr/bin/env node
/**
 * The reference for `apm-server run`'s intake (issue 17): the work an intake must do, with no framework.
 * Where bench/raw-intake-server.js is the floor (it writes nothing), this server does what is required
 * of every accepted request and nothing more: read the body, gunzip (or inflate) it, split its lines,
 * append every event line behind its metadata, `{"metadata":{...},` + the event's members + newline, the
 * same bytes `apm-server run`'s file output writes, in one writev per request, and answer 202. The file
 * rotates as the file output's does (10 MiB, 7 files; the rotated file fsynced in the background): the
 * file's size changes what the kernel does for every write, so the two must keep the same files.
 * No auth, no validation, no limits, no log line: what `apm-server run` spends beyond this server is
 * its own overhead. `?verbose` answers `{"accepted":N}` (the benchmark's check).
 *
 * With --validate, each event line is also JSON.parse'd (a line that is not JSON fails the request with
 * 400): the least validation an intake needs so that what it writes stays one JSON document a line, in
 * the plainest code. Not the target's reference (issue 17 names the work above); it shows how much of
 * `apm-server run`'s distance to the reference is the checking of every line.
 *
 *   node bench/reference-intake-server.js [--validate] [OUTPUT_DIR]
 *
 * Listens on 127.0.0.1, any free port, and logs "listening http://127.0.0.1:PORT" on stderr. Without
 * OUTPUT_DIR it writes in a temporary directory, removed when it stops (SIGTERM, SIGINT).
 */
import {close, closeSync, fstatSync, fsync, mkdirSync, mkdtempSync, open as openAsync, openSync, renameSync, rmSync, writevSync} from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import zlib from 'node:zlib'

const NEWLINE = 0x0a
const EOL = Buffer.from('\n')
const ROTATE_BYTES = 10 * 1024 * 1024
const FILES = 7
const FILENAME = 'apm-server'

const validate = process.argv.includes('--validate')
const outputArg = process.argv.slice(2).find((arg) => arg !== '--validate')
const directory = outputArg ?? mkdtempSync(path.join(os.tmpdir(), 'reference-intake-'))
mkdirSync(directory, {recursive: true})
const base = path.join(directory, FILENAME)
const open = () => openSync(base, 'a', 0o600)
let fd = open()
let size = fstatSync(fd).size

/** filename -> filename.1 -> ... -> filename.6, the oldest replaced; the old file, then the directory, fsynced in the background. */
function rotate() {
  for (let index = FILES - 2; index >= 0; index--) {
    try {
      renameSync(index === 0 ? base : `${base}.${index}`, `${base}.${index + 1}`)
    } catch {}
  }

  const rotated = fd
  fd = open()
  size = 0
  fsync(rotated, () => {
    closeSync(rotated)
    openAsync(directory, 'r', (error, dir) => {
      if (!error) fsync(dir, () => close(dir, () => {}))
    })
  })
}

function append(parts, bytes) {
  if (size > 0 && size + bytes > ROTATE_BYTES) rotate()
  let written = writevSync(fd, parts)
  // A short write: the rest, copied (rare).
  if (written < bytes) written += writevSync(fd, [Buffer.concat(parts).subarray(written)])
  size += written
}

/** The body's lines into the file: the metadata line first, then one event a line. Returns the events written. */
function ingest(body) {
  const parts = []
  let bytes = 0
  let head
  let start = 0
  while (start < body.length) {
    let end = body.indexOf(NEWLINE, start)
    if (end === -1) end = body.length
    if (end > start) {
      const line = body.subarray(start, end)
      if (head === undefined) {
        head = Buffer.from(`{"metadata":${JSON.stringify(JSON.parse(line.toString('utf8')).metadata)},`)
      } else {
        if (validate) JSON.parse(line.toString('utf8'))
        // `{"span":{...}}` -> head + `"span":{...}}`
        const members = line.subarray(1)
        parts.push(head, members, EOL)
        bytes += head.length + members.length + 1
      }
    }

    start = end + 1
  }

  if (parts.length > 0) append(parts, bytes)
  return parts.length / 3
}

function decode(encoding, body) {
  if (encoding === 'gzip') return zlib.gunzipSync(body)
  if (encoding === 'deflate') return zlib.inflateSync(body)
  return body
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost')
  if (req.method !== 'POST' || url.pathname !== '/intake/v2/events') {
    res.writeHead(404, {'Content-Type': 'application/json'}).end('{"error":"404 page not found"}\n')
    return
  }

  const chunks = []
  req.on('data', (chunk) => chunks.push(chunk))
  req.on('end', () => {
    let accepted
    try {
      accepted = ingest(decode(req.headers['content-encoding'], chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)))
    } catch (error) {
      res.writeHead(400, {'Content-Type': 'application/json'}).end(`${JSON.stringify({error: error.message})}\n`)
      return
    }

    if (url.searchParams.has('verbose')) res.writeHead(202, {'Content-Type': 'application/json'}).end(`{"accepted":${accepted}}\n`)
    else res.writeHead(202).end()
  })
})

server.listen(0, '127.0.0.1', () => {
  process.stderr.write(`listening http://127.0.0.1:${server.address().port}\n`)
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    server.close(() => {
      closeSync(fd)
      if (!outputArg) rmSync(directory, {force: true, recursive: true})
      process.exit(0)
    })
    server.closeAllConnections()
  })
}
