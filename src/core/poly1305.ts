/**
 * Poly1305, the one-time authenticator of NaCl's secretbox, in WebAssembly (./wasm/poly1305.wat). Written
 * here because Node's crypto has no raw Poly1305, JavaScript ones (tweetnacl's, @noble/ciphers') run
 * interpreted over every byte a command seals or opens, a CLI being over before V8 optimises them (adding
 * one key to 1,000: about 94 KB, ~6 ms of the command), and libsodium-wrappers, which has it in
 * WebAssembly, takes 70-80 ms here to load and get ready: more than the whole command.
 * test/core/poly1305.test.ts holds it to tweetnacl's tags on random keys and messages, and to RFC 8439.
 */
import {timingSafeEqual} from 'node:crypto'

import {POLY1305_WASM_BASE64} from './wasm/poly1305-module.js'

interface Poly1305Exports {
  memory: WebAssembly.Memory
  init(): void
  update(length: number): void
  finish(length: number): void
}

/** Where the .wat keeps the key, the tag and the message chunks, and the most one chunk holds. */
const KEY_AT = 0
const TAG_AT = 32
const MESSAGE_AT = 64
const CHUNK_BYTES = 64 * 1024
const TAG_BYTES = 16
const KEY_BYTES = 32

let module: Poly1305Exports | undefined

function instance(): Poly1305Exports {
  module ??= new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(POLY1305_WASM_BASE64, 'base64'))).exports as unknown as Poly1305Exports
  return module
}

/** The tag of m[mAt, mAt + length) under `key` (its first 32 bytes), as tweetnacl's crypto_onetimeauth. */
function tagOf(m: Uint8Array, mAt: number, length: number, key: Uint8Array): Uint8Array {
  const wasm = instance()
  const memory = new Uint8Array(wasm.memory.buffer)
  memory.set(key.subarray(0, KEY_BYTES), KEY_AT)
  wasm.init()
  const end = mAt + length
  let at = mAt
  while (end - at >= TAG_BYTES) {
    const whole = Math.min(CHUNK_BYTES, end - at)
    const chunk = whole - (whole % TAG_BYTES)
    memory.set(m.subarray(at, at + chunk), MESSAGE_AT)
    wasm.update(chunk)
    at += chunk
  }

  memory.set(m.subarray(at, end), MESSAGE_AT)
  wasm.finish(end - at)
  const tag = memory.slice(TAG_AT, TAG_AT + TAG_BYTES)
  // The one-time key is secret until its tag is published: none of it stays behind, in memory or in r.
  memory.fill(0, KEY_AT, MESSAGE_AT + TAG_BYTES)
  wasm.init()
  return tag
}

/** Writes the tag of m[mAt, mAt + length) under `key` to out[outAt, outAt + 16); `out` may be `key` or `m`. */
export function poly1305(out: Uint8Array, outAt: number, m: Uint8Array, mAt: number, length: number, key: Uint8Array): void {
  out.set(tagOf(m, mAt, length, key), outAt)
}

/** True when tag[tagAt, tagAt + 16) is the tag of m[mAt, mAt + length) under `key`; compared in constant time. */
export function poly1305Verify(tag: Uint8Array, tagAt: number, m: Uint8Array, mAt: number, length: number, key: Uint8Array): boolean {
  return timingSafeEqual(tagOf(m, mAt, length, key), tag.subarray(tagAt, tagAt + TAG_BYTES))
}
