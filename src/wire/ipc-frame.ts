/**
 * Binary frames for a child's IPC channel. A request or answer travels as ONE `Uint8Array`
 * instead of an object tree: Bun's structured clone ("advanced" serialization) of a nested
 * object holding a typed array costs about 8 µs more per round trip than one `Uint8Array` of
 * the same content (ping-pong 30 µs vs 22.5 µs on the 2-core bench machine; bench/floors.ts
 * measures both), more than everything else a call does.
 *
 * Layout, little-endian:
 *
 *   0       u8   kind: 1 = request (`q`), 2 = answer (`a`)
 *   1       u8   the field the trailing bytes belong to: 0 none, 1 `args`, 2 `value`, 3 `configs`
 *   2..5    u32  request number, low 32 bits
 *   6..9    u32  request number, high 21 bits (numbers stay below 2^53)
 *   10..13  u32  header length H
 *   14..    H bytes of UTF-8 JSON: the message's other fields (`t`, `oid`, `name`, …, and
 *           `trace` when the caller had a span active: no byte otherwise)
 *   14+H..  the bytes of that field (a call's `args`, an answer's `value`, …)
 *
 * Only frames without a relay target and with at most `MAX_BINARY_PAYLOAD` bytes are binary;
 * the rest (relayed requests, big values, cancels, the handshake) stay object frames, which
 * cost no extra copy of a large payload. Decoding returns undefined for anything malformed;
 * the receiver then treats it like any other frame it cannot use.
 *
 * In an object frame, a split codec frame (a call's `args`, an answer's `value`; see
 * split-frame.ts) travels as an array of its parts, so the structured clone copies each large
 * binary leaf straight from the sender's array into the receiver's (`splitForIpc`), and the
 * receiver decodes the leaves as views of its own copies (`splitFromIpc`).
 *
 * Binary frames sent together travel in one message, a *batch* (`FrameSender`): kind 3,
 * then a u32 count, then each frame as a u32 length and its bytes. An async call and its
 * first wait, or the answers of many pipelined calls, then cost one IPC message, not one
 * each. Object frames are never reordered around queued binary frames.
 */
import type { Request, Response } from "../core/protocol.ts";
import { SplitFrame } from "../core/split-frame.ts";

/** The fields that may hold a split frame: a call's arguments, a value answer's value. */
const SPLIT_FIELDS = ["args", "value"] as const;

/** `r` as an object frame carries it: each split frame as the array of its parts. */
export function splitForIpc<T extends Request | Response>(r: T): T {
  const m = r as unknown as Record<string, unknown>;
  for (const k of SPLIT_FIELDS) {
    const v = m[k];
    if (v instanceof SplitFrame) return { ...r, [k]: v.cloneable() };
  }
  return r;
}

/**
 * Undo `splitForIpc` on a received request or answer (ours to change: a clone): an array of
 * parts becomes a received split frame. Anything else is left for validation to refuse.
 */
export function splitFromIpc(r: unknown): void {
  if (r === null || typeof r !== "object") return;
  const m = r as Record<string, unknown>;
  for (const k of SPLIT_FIELDS) {
    if (!Array.isArray(m[k])) continue;
    const f = SplitFrame.received(m[k]);
    if (f) m[k] = f;
  }
}

/** Largest byte field sent in a binary frame; larger payloads go as object frames (no extra copy). */
export const MAX_BINARY_PAYLOAD = 64 * 1024;

const KIND_REQUEST = 1;
const KIND_ANSWER = 2;
const KIND_BATCH = 3;
/** Most bytes a batch collects before it is sent. */
const MAX_BATCH_BYTES = 1024 * 1024;
const HEAD = 14;
/** Fields that may hold the frame's bytes, by their code in byte 1. */
const BYTE_FIELDS = ["", "args", "value", "configs"] as const;
const FIELD_CODE: Readonly<Record<string, number>> = { args: 1, value: 2, configs: 3 };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const ASCII = /^[\x00-\x7f]*$/;

/** A binary frame as posted on the channel (no `k`: receivers that look for one see none). */
export type BinaryFrame = Uint8Array & { readonly k?: undefined };

/** A decoded binary frame. */
export type DecodedFrame = { k: "q"; i: number; r: Request } | { k: "a"; i: number; r: Response };

/**
 * `r` as a binary frame of kind `k` with request number `i`, or undefined when it must go as
 * an object frame (payload over the limit, or more than one byte field).
 */
export function encodeFrame(k: "q" | "a", i: number, r: Request | Response): BinaryFrame | undefined {
  let field = 0;
  let bytes: Uint8Array | undefined;
  const rest: Record<string, unknown> = {};
  const src = r as unknown as Record<string, unknown>;
  for (const key in src) {
    const v = src[key];
    // A split frame holds a large leaf: an object frame carries it with no copy of ours.
    if (v instanceof SplitFrame) return undefined;
    if (v instanceof Uint8Array) {
      const code = FIELD_CODE[key];
      if (bytes !== undefined || code === undefined || v.byteLength > MAX_BINARY_PAYLOAD) return undefined;
      field = code;
      bytes = v;
    } else if (v !== undefined) rest[key] = v;
  }
  const json = JSON.stringify(rest);
  // The header is ASCII nearly always (ids, method names): then its bytes are its char codes,
  // written in place — cheaper than a TextEncoder call and a second copy.
  const ascii = ASCII.test(json);
  const utf8 = ascii ? undefined : encoder.encode(json);
  const h = utf8 ? utf8.length : json.length;
  const n = bytes?.byteLength ?? 0;
  const out = new Uint8Array(HEAD + h + n);
  out[0] = k === "q" ? KIND_REQUEST : KIND_ANSWER;
  out[1] = field;
  writeU32(out, 2, i >>> 0);
  writeU32(out, 6, Math.floor(i / 0x1_0000_0000));
  writeU32(out, 10, h);
  if (utf8) out.set(utf8, HEAD);
  else for (let j = 0; j < h; j++) out[HEAD + j] = json.charCodeAt(j);
  if (bytes) out.set(bytes, HEAD + h);
  return out;
}

/** Decode a binary frame; undefined if it is not one or is malformed. The byte field is a view into `b`. */
export function decodeFrame(b: unknown): DecodedFrame | undefined {
  if (!(b instanceof Uint8Array) || b.byteLength < HEAD) return undefined;
  const kind = b[0];
  if (kind !== KIND_REQUEST && kind !== KIND_ANSWER) return undefined;
  const field = BYTE_FIELDS[b[1]!];
  if (field === undefined) return undefined;
  const hi = readU32(b, 6);
  if (hi >= 0x20_0000) return undefined;
  const i = hi * 0x1_0000_0000 + readU32(b, 2);
  const h = readU32(b, 10);
  if (h > b.byteLength - HEAD) return undefined;
  let r: unknown;
  try {
    r = JSON.parse(decoder.decode(b.subarray(HEAD, HEAD + h)));
  } catch {
    return undefined;
  }
  if (r === null || typeof r !== "object" || Array.isArray(r)) return undefined;
  const o = r as Record<string, unknown>;
  if (field) {
    if (Object.hasOwn(o, field)) return undefined;
    o[field] = b.subarray(HEAD + h);
  } else if (b.byteLength !== HEAD + h) return undefined;
  return kind === KIND_REQUEST ? { k: "q", i, r: o as unknown as Request } : { k: "a", i, r: o as unknown as Response };
}

/** Every frame a received message holds (one, or a batch's); undefined if it is not binary or is malformed. */
export function decodeFrames(b: unknown): DecodedFrame[] | undefined {
  if (!(b instanceof Uint8Array) || b.byteLength < 5) return undefined;
  if (b[0] !== KIND_BATCH) {
    const f = decodeFrame(b);
    return f && [f];
  }
  const count = readU32(b, 1);
  if (count > b.byteLength) return undefined;
  const out: DecodedFrame[] = [];
  let at = 5;
  for (let n = 0; n < count; n++) {
    if (at + 4 > b.byteLength) return undefined;
    const len = readU32(b, at);
    at += 4;
    if (len > b.byteLength - at) return undefined;
    const f = decodeFrame(b.subarray(at, at + len));
    if (!f) return undefined;
    out.push(f);
    at += len;
  }
  return at === b.byteLength ? out : undefined;
}

/**
 * Posts frames on one IPC channel, sending the binary frames queued in one go as one batch.
 * `queue(f, soon)`: `soon` sends within this tick (two microtasks later, so that what the
 * same code path sends right behind still joins — `await x.asyncMethod()` sends its first wait
 * one microtask after the call), otherwise at the end of this turn of the event loop, when
 * every caller woken by the last answers has sent its next request. `post` errors are
 * swallowed: the channel is going down and its exit handler fails what is pending.
 */
export class FrameSender {
  readonly #post: (f: unknown) => void;
  #queue: Uint8Array[] = [];
  #bytes = 0;
  #scheduled: 0 | 1 | 2 = 0;

  constructor(post: (f: unknown) => void) {
    this.#post = post;
  }

  /** Queue a binary frame. */
  queue(f: BinaryFrame, soon: boolean): void {
    if (this.#bytes + f.byteLength > MAX_BATCH_BYTES) this.flush();
    this.#queue.push(f);
    this.#bytes += f.byteLength;
    if (soon) {
      if (this.#scheduled === 1) return;
      this.#scheduled = 1;
      queueMicrotask(() => queueMicrotask(this.#flushScheduled));
    } else if (this.#scheduled === 0) {
      this.#scheduled = 2;
      setImmediate(this.#flushScheduled);
    }
  }

  /** Send an object frame now, after everything queued; throws if the channel refuses it. */
  now(f: unknown): void {
    this.flush();
    this.#post(f);
  }

  /** Send what is queued. */
  flush(): void {
    const q = this.#queue;
    if (q.length === 0) return;
    this.#queue = [];
    const bytes = this.#bytes;
    this.#bytes = 0;
    if (q.length === 1) return this.#safePost(q[0]);
    const out = new Uint8Array(5 + 4 * q.length + bytes);
    out[0] = KIND_BATCH;
    writeU32(out, 1, q.length);
    let at = 5;
    for (const f of q) {
      writeU32(out, at, f.byteLength);
      out.set(f, at + 4);
      at += 4 + f.byteLength;
    }
    this.#safePost(out);
  }

  readonly #flushScheduled = (): void => {
    this.#scheduled = 0;
    this.flush();
  };

  #safePost(f: unknown): void {
    try {
      this.#post(f);
    } catch {
      // The channel is going down; its exit handler rejects what is pending.
    }
  }
}

function writeU32(b: Uint8Array, at: number, n: number): void {
  b[at] = n & 0xff;
  b[at + 1] = (n >>> 8) & 0xff;
  b[at + 2] = (n >>> 16) & 0xff;
  b[at + 3] = n >>> 24;
}

function readU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
