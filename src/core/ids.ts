/**
 * Ids on the wire. Task ids are random 128-bit values in lowercase hex, chosen by clients, so
 * they are unique across servers and restarts. Object ids are chosen by clients too: generated
 * ones look like task ids; users may choose readable ones.
 */

/**
 * Random bytes drawn in blocks: one `getRandomValues` per 256 ids instead of one each (an
 * async call makes a task id, and a million calls made this a visible cost). The hex digits are
 * written into a scratch buffer and read back as one Latin-1 string: `toString("hex")` cost
 * over a microsecond an id in a busy client.
 */
const RANDOM = Buffer.allocUnsafe(4096);
let randomAt = RANDOM.length;
const ID = Buffer.allocUnsafe(32) as Buffer & { latin1Slice(start: number, end: number): string };
/** The two ASCII hex digits of each byte value, at 2·b and 2·b + 1. */
const DIGITS = new Uint8Array(512);
for (let b = 0; b < 256; b++) {
  const h = b.toString(16).padStart(2, "0");
  DIGITS[2 * b] = h.charCodeAt(0);
  DIGITS[2 * b + 1] = h.charCodeAt(1);
}

/** Random 32-hex id (object ids, task ids). */
export function randomId(): string {
  if (randomAt + 16 > RANDOM.length) {
    crypto.getRandomValues(RANDOM);
    randomAt = 0;
  }
  for (let i = 0; i < 16; i++) {
    const d = RANDOM[randomAt + i]! << 1;
    ID[2 * i] = DIGITS[d]!;
    ID[2 * i + 1] = DIGITS[d + 1]!;
  }
  randomAt += 16;
  return ID.latin1Slice(0, 32);
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
