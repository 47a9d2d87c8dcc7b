/**
 * Large frames (≥ 64 KiB) are built in memory that is not zero-filled first (a saved pass over
 * megabytes): every byte of them must still be written — no stale memory may leave the process
 * in alignment padding — and decoded arrays must still own exactly-sized buffers.
 */
import { describe, expect, test } from "bun:test";
import { encodeValue } from "../src/core/codec.ts";
import { decodeValue } from "../src/core/codec-decode.ts";

/** Byte ranges of a frame not covered by its header, JSON or blobs: the alignment padding. */
function padding(frame: Uint8Array, blobs: number[]): number[] {
  const jsonLen = frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24);
  const out: number[] = [];
  let at = 4 + jsonLen;
  for (const n of blobs) {
    const start = (at + 7) & ~7;
    for (let i = at; i < start; i++) out.push(frame[i]!);
    at = start + n;
  }
  return out;
}

describe("large frames", () => {
  test("alignment padding is zero even when the frame's memory was not zero-filled", () => {
    // Dirty the allocator first, so fresh unzeroed memory is likely to hold non-zero bytes.
    for (let i = 0; i < 20; i++) Buffer.allocUnsafeSlow(200_000).fill(0xab);
    const a = new Uint8Array(70_001).fill(0xff);
    const b = new Uint8Array(3).fill(0xee);
    const c = new Uint8Array(65_537).fill(0xdd);
    const frame = encodeValue([a, "x", b, c]);
    expect(frame.byteLength).toBeGreaterThan(64 * 1024);
    const pad = padding(frame, [a.byteLength, b.byteLength, c.byteLength]);
    expect(pad.length).toBeGreaterThan(0);
    expect(pad.every((x) => x === 0)).toBe(true);
    expect(decodeValue(frame)).toEqual([a, "x", b, c]);
  });

  test("large binary leaves decode as views into their frame (one copy per hop, on the way out); small ones and ArrayBuffers own exact buffers", () => {
    const f = new Float64Array(20_000).map((_, i) => i / 3);
    const u = new Uint8Array(100_000).fill(7);
    const small = new Uint8Array(1000).fill(3);
    const frame = encodeValue([f, u, u.buffer, small]);
    const [df, du, dab, ds] = decodeValue(frame) as [Float64Array, Uint8Array, ArrayBuffer, Uint8Array];
    expect(df).toEqual(f);
    expect(du).toEqual(u);
    // Views: the decoded arrays share the frame's memory, nothing was copied.
    expect(df.buffer).toBe(frame.buffer);
    expect(du.buffer).toBe(frame.buffer);
    expect(Buffer.isBuffer(du)).toBe(false);
    // An ArrayBuffer cannot be a view, and a small leaf must not pin its frame: copies.
    expect(dab.byteLength).toBe(100_000);
    expect(dab).not.toBe(frame.buffer);
    expect(ds).toEqual(small);
    expect(ds.buffer.byteLength).toBe(1000);
  });
});
