/** Types of the xsalsa20 package (XSalsa20 in WebAssembly), which ships none: the part src/core/crypto.ts uses. */
declare module 'xsalsa20' {
  class XSalsa20 {
    constructor(nonce: Uint8Array, key: Uint8Array)
    /** XORs `input` with the next bytes of the key stream into `output` (which may be `input`). */
    update(input: Uint8Array, output?: Uint8Array): Uint8Array
    /** Zeroes the key, the nonce and the data it copied into WebAssembly memory. */
    final(): void
  }

  export default XSalsa20
}
