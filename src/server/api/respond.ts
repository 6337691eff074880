/**
 * How the API answers, as Elastic's APM Server does: a string body of an error becomes `{"error": ...}`,
 * indented JSON for clients that accept JSON, else plain text (compact JSON for objects), encoded as
 * Go's json.Encoder encodes. While the server shuts down every answer closes its connection.
 */
import type {IncomingMessage, ServerResponse} from 'node:http'

import {clip} from '../limits.js'
import type {ApiContext} from './context.js'

/** Go's json.Encoder: HTML-sensitive characters escaped, a newline after the value; indented for JSON clients. */
export function goJson(value: unknown, indent: boolean): string {
  const text = indent ? JSON.stringify(value, null, 2) : JSON.stringify(value)
  return `${text.replaceAll(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`
}

/** Answers once (later calls, and calls for a response already gone, do nothing); an error's summary is kept for the request log. */
export function respond(context: ApiContext, req: IncomingMessage, res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
  // A body not read is not waited for (a client without a token could declare a gigabyte and send
  // nothing, holding the connection for Node's 300 s request timeout): the connection closes after this answer.
  if (context.closing || unreadBody(req)) res.setHeader('Connection', 'close')
  const payload = status >= 400 && typeof body === 'string' ? {error: body} : body
  if (status >= 400) context.failures.set(res, errorSummary(body))
  if (payload === undefined) {
    res.writeHead(status, {'Content-Length': '0'})
    res.end()
    return
  }

  const accept = req.headers.accept ?? ''
  const json = accept.includes('*/*') || accept.includes('application/json')
  const text = json ? goJson(payload, true) : typeof payload === 'string' ? `${payload}\n` : goJson(payload, false)
  res.writeHead(status, {'Content-Length': String(Buffer.byteLength(text)), 'Content-Type': json ? 'application/json' : 'text/plain; charset=utf-8'})
  res.end(text)
}

/** The request declared a body that has not all arrived. */
function unreadBody(req: IncomingMessage): boolean {
  if (req.complete) return false
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
}

/** Longest error summary in a request's log line. */
const SUMMARY_MAX = 1024

/**
 * The error messages of a response, for the log: JSON parser messages quote the event, so they are cut;
 * a message repeated is counted, not repeated; client text in them is already cut, and so is the whole.
 */
function errorSummary(body: unknown): string {
  if (typeof body === 'string') return clip(body, SUMMARY_MAX)
  const errors = (body as {errors?: {message: string}[]} | undefined)?.errors ?? []
  const counts = new Map<string, number>()
  for (const error of errors) {
    const message = error.message.startsWith('data read error') ? 'data read error' : error.message
    counts.set(message, (counts.get(message) ?? 0) + 1)
  }

  const parts = [...counts].map(([message, count]) => (count === 1 ? message : `${message} (${count} times)`))
  return clip(parts.join(', '), SUMMARY_MAX)
}
