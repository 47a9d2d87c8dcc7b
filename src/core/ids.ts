/**
 * Ids on the wire. Task ids are random 128-bit values in lowercase hex, chosen by clients, so
 * they are unique across servers and restarts. Object ids are chosen by clients too: generated
 * ones look like task ids; users may choose readable ones.
 */

/**
 * Random bytes drawn in blocks: one `getRandomValues` per 256 ids instead of one each (an
 * async call makes a task id, and a million calls made this a visible cost).
 */
const RANDOM = Buffer.allocUnsafe(4096);
let randomAt = RANDOM.length;

/** Random 32-hex id (object ids, task ids). */
export function randomId(): string {
  if (randomAt + 16 > RANDOM.length) {
    crypto.getRandomValues(RANDOM);
    randomAt = 0;
  }
  const s = RANDOM.toString("hex", randomAt, randomAt + 16);
  randomAt += 16;
  return s;
}

/** True for a 32-hex id: task ids, and the object ids this library generates. */
export function isId(s: unknown): s is string {
  return typeof s === "string" && s.length === 32 && /^[0-9a-f]{32}$/.test(s);
}

/** Longest object id a user may choose. */
export const MAX_OBJECT_ID = 128;

/**
 * True for an object id: 1–128 characters of `[A-Za-z0-9._:-]`. Generated ids are 32 hex;
 * users may choose readable ones (`createAgent(…, "alice")`, as AgentScope allows). The
 * alphabet keeps ids safe in log lines, Redis keys and URLs without escaping.
 */
export function isObjectId(s: unknown): s is string {
  return typeof s === "string" && s.length > 0 && s.length <= MAX_OBJECT_ID && /^[A-Za-z0-9._:-]+$/.test(s);
}
