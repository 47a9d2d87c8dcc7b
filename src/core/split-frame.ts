/**
 * A codec frame kept in pieces: its consecutive byte ranges (*parts*), whose concatenation is
 * exactly the frame `encodeValue` would build. Every large binary leaf is a part of its own —
 * the caller's own bytes, not a copy — so a transport writes it straight into its message
 * (the protobuf bytes field, Bun's structured clone) instead of copying it into a frame first
 * and then copying the frame again. On this kind of VM a fresh copy of a large buffer costs
 * ~3.4 ms/MB in page faults, far more than the bytes themselves.
 *
 * A split frame sent by this process reads the caller's arrays when it is written, not when
 * it is made: it must be written (or `join`ed) before anything else could change them —
 * a client sends it within the call, a server within the answer's turn; whatever holds a
 * frame for later (result pools, answer buffers, in-memory clones) joins it first.
 *
 * A split frame *received* over IPC holds parts this process owns (a structured clone made
 * them), so decoding may return views of them rather than copies.
 */

/** Leaves this large or larger travel as parts of their own (smaller ones are copied into the frame). */
export const SPLIT_MIN_BYTES = 64 * 1024;

/** Most parts a received frame may have (a sender makes one per large leaf, plus glue between). */
const MAX_PARTS = 4096;

/** A codec frame as consecutive byte ranges. */
export class SplitFrame {
  /** Total bytes: the frame's size once joined. */
  readonly byteLength: number;

  constructor(
    /** The frame's byte ranges, in order; the first holds the header and the JSON. */
    readonly parts: readonly Uint8Array[],
    /** True when this process owns the parts (received as a clone): decoding may view them. */
    readonly received = false,
  ) {
    let n = 0;
    for (const p of parts) n += p.byteLength;
    this.byteLength = n;
  }

  /** Write the frame's bytes into `out` at `at`; returns the offset after them. */
  writeTo(out: Uint8Array, at: number): number {
    for (const p of this.parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return at;
  }

  /** The frame as one array of its own (a copy: the parts may be read no later). */
  join(): Uint8Array<ArrayBuffer> {
    const b = Buffer.allocUnsafeSlow(this.byteLength);
    const out = new Uint8Array(b.buffer as ArrayBuffer, b.byteOffset, this.byteLength);
    this.writeTo(out, 0);
    return out;
  }

  /**
   * The parts as a structured clone should carry them: a part that is a view into a larger
   * buffer is copied out, since a clone of a view carries its whole underlying buffer.
   */
  cloneable(): Uint8Array[] {
    return this.parts.map((p) => (p.byteOffset === 0 && p.byteLength === p.buffer.byteLength && p.buffer instanceof ArrayBuffer ? p : p.slice()));
  }

  /**
   * A frame received as parts (an array from a structured clone), or undefined if `parts` is
   * not 1 to 4096 byte arrays. Its size is checked where it is decoded, like any frame's.
   */
  static received(parts: unknown): SplitFrame | undefined {
    if (!Array.isArray(parts) || parts.length === 0 || parts.length > MAX_PARTS) return undefined;
    for (const p of parts) if (!(p instanceof Uint8Array)) return undefined;
    return new SplitFrame(parts as Uint8Array[], true);
  }
}

/** A codec frame: one byte array, or a split frame whose large leaves are still the caller's. */
export type Frame = Uint8Array | SplitFrame;

/** `f` as one byte array (joined — a copy — if it is split). */
export function frameBytes(f: Frame): Uint8Array {
  return f instanceof SplitFrame ? f.join() : f;
}

/** `m` with every split frame among its fields joined (a shallow copy), or `m` itself when it has none. */
export function withJoinedFrames<T extends object>(m: T): T {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(m)) if (v instanceof SplitFrame) (out ??= { ...(m as Record<string, unknown>) })[k] = v.join();
  return (out as T | undefined) ?? m;
}
