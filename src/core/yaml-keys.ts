/**
 * Duplicate and non-scalar keys in a parsed YAML document, found in time linear in its size.
 *
 * The yaml library's own `uniqueKeys` option compares every key of a mapping with every key before it:
 * quadratic, and config files are read on the main thread (40,000 settings took 13 s to parse, 80,000
 * took 53 s, within the 4 MiB config cap). Parse with `uniqueKeys: false` and call {@link findKeyProblem}.
 */
import {isMap, isPair, isScalar, isSeq, Node, Pair, Scalar} from 'yaml'

export type KeyProblem =
  /** `key` is written again in the mapping that has `first` */
  | {kind: 'duplicate'; key: Scalar; first: Scalar}
  /** a mapping key that is not a plain value (a mapping, a list, an alias, nothing): no setting has such a name */
  | {kind: 'not-scalar'; key: Node | null; pair: Pair}

/**
 * The first key problem under `root` (a document's `contents`), in document order within each mapping,
 * or undefined; with `skipNonScalarKeys`, duplicates only. Keys are compared as the strings they become in JavaScript objects (`1` and `"1"` are one
 * key there), which is stricter than YAML, never looser. Aliases are not followed: the node they name is
 * checked where it is written. Iterative, so no nesting depth overflows the stack.
 */
export function findKeyProblem(root: unknown, options: {skipNonScalarKeys?: boolean} = {}): KeyProblem | undefined {
  const pending: unknown[] = [root]
  while (pending.length > 0) {
    const node = pending.pop()
    if (isMap(node)) {
      const seen = new Map<string, Scalar>()
      for (const pair of node.items) {
        const key = pair.key as Node | null
        if (!isScalar(key)) {
          // The server's loader names such a key itself, where it reads the setting.
          if (!options.skipNonScalarKeys) return {key, kind: 'not-scalar', pair}
          pending.push(pair.value)
          continue
        }

        const name = String(key.value)
        const first = seen.get(name)
        if (first) return {first, key, kind: 'duplicate'}
        seen.set(name, key)
        pending.push(pair.value)
      }
    } else if (isSeq(node)) {
      // One at a time: spreading a list of 100,000 items into push() overflows the stack.
      for (const item of node.items) pending.push(item)
    } else if (isPair(node)) {
      // A flow pair in a list (`[a: 1]`) is a one-entry mapping.
      pending.push(node.value)
    }
    // Scalars end here, and so do aliases: what they name is checked where it is written.
  }

  return undefined
}
