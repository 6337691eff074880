/**
 * The bounds an OTLP request is held to, over HTTP and gRPC alike, before and while it is decoded: its
 * size on the wire and decoded, the nesting depth and the count of values of its message, and what
 * its decoded form is reckoned to hold in memory (reserved in the server's memory budget,
 * ../../limits.ts, before it is decoded).
 */

/**
 * Largest OTLP/HTTP body, as sent and once decompressed. Elastic's APM Server reads OTLP/HTTP bodies
 * without a bound; the OpenTelemetry SDKs send batches of at most 512 spans (hundreds of KiB), and the
 * Collector's own OTLP/HTTP receiver stops at 20 MiB. 8 MiB takes every SDK batch and a Collector's
 * batches of some thousands of spans; a bigger body is answered 413.
 */
export const OTLP_HTTP_MAX_BYTES = 8 * 1024 * 1024
/**
 * Largest gRPC message, compressed or not: grpc-go's default receive limit, which Elastic's APM Server
 * keeps, so a client that works with it works here. A bigger one is RESOURCE_EXHAUSTED.
 */
export const OTLP_GRPC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
/**
 * Deepest nesting of messages (protobuf) counted from the request message. An export request is six
 * levels down to an attribute, and each level of an attribute's kvlist or array value adds two; apm-data
 * keeps no value nested in a map and only the first level of an array, so 64 refuses nothing it uses.
 */
export const OTLP_MAX_DEPTH = 64
/** JSON nests an object and an array for each message level. */
export const OTLP_MAX_JSON_DEPTH = 2 * OTLP_MAX_DEPTH + 2
/**
 * Most values (messages, strings, numbers, bytes; a packed array counts one per byte it may hold) in one
 * request. Decoded, each costs tens of bytes of heap, against 2 to 10 bytes on the wire: a body of a
 * million empty attributes would cost some 60 MB. An SDK's batch of 512 spans holds some 20,000.
 */
export const OTLP_MAX_VALUES = 1_000_000
/** Heap one decoded value is reckoned to hold (a protobufjs message object or a JSON value and its slot). */
export const BYTES_PER_DECODED_VALUE = 64
/** Longest string kept from a client value (Elastic's keyword length: apm-data cuts every keyword there). */
export const KEYWORD_LENGTH = 1024
