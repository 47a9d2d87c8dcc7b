/**
 * Limits that bound what a peer can make us allocate or compute. Each is checked before the
 * work it guards (size before parsing, depth while walking), and each is tested at the limit
 * and one past it.
 */
export interface Limits {
  /**
   * Largest encoded message, in bytes, accepted or sent (each way). Threat: a peer sending a
   * huge frame to exhaust memory. Default 32 MiB, like AgentScope's `_DEFAULT_RPC_OPTIONS`.
   */
  maxMessageBytes: number;
  /**
   * Deepest nesting of arrays/objects/maps in a value. Threat: a 100k-deep payload that
   * overflows the stack of a recursive walker. Default 256.
   */
  maxDepth: number;
  /**
   * Longest decimal BigInt accepted. Threat: quadratic-time parsing of huge numeric strings.
   */
  maxBigIntDigits: number;
  /**
   * Most waits a server holds for tasks it does not know yet (references and first waits
   * that may arrive before their call). Threat: a peer parking waits for task ids that will
   * never exist, to grow the server's memory; past it such waits fail RESOURCE_EXHAUSTED.
   * Default 65 536.
   */
  maxParkedWaits: number;
}

/** The defaults every server and client start from. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxMessageBytes: 32 * 1024 * 1024,
  maxDepth: 256,
  maxBigIntDigits: 4096,
  maxParkedWaits: 65_536,
});
