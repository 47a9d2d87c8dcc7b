/**
 * UTF-8 lengths and writes for the protobuf encoder. Strings up to `SHORT_STRING` long are
 * measured and written here, char by char: ids, method and class names — nearly every string
 * of a request — are short ASCII, and a native call per string cost more than the loop.
 */

/** Longest string measured and written by the loop. */
export const SHORT_STRING = 64;

/** Bytes of `s` in UTF-8 (its length when it is short ASCII). */
export function utf8Length(s: string): number {
  const n = s.length;
  if (n > SHORT_STRING) return Buffer.byteLength(s, "utf8");
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8");
  return n;
}

/** Write `s`, `len` bytes in UTF-8 (from `utf8Length`), into `b` at `at`; the position after it. */
export function writeUtf8(b: Buffer, at: number, s: string, len: number): number {
  if (len === s.length && len <= SHORT_STRING) {
    for (let i = 0; i < len; i++) b[at + i] = s.charCodeAt(i);
    return at + len;
  }
  return at + b.write(s, at, len, "utf8");
}
