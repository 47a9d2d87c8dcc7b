/**
 * Ids on the wire. Task ids are random 128-bit values in lowercase hex, chosen by clients, so
 * they are unique across servers and restarts. Object ids are chosen by clients too: generated
 * ones look like task ids; users may choose readable ones.
 */

/** Random 32-hex id (object ids, task ids). */
export function randomId(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  let s = "";
  for (let i = 0; i < 16; i++) s += HEX[b[i]!];
  return s;
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

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
