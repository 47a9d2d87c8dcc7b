/**
 * The value codec: how call arguments, results and errors cross the wire.
 *
 * A value becomes one *frame*: a JSON document describing the value, followed by the raw
 * bytes of every binary leaf (typed arrays, ArrayBuffers, Buffers), which are never
 * base64'd. Values JSON cannot express travel as tagged objects `{ "$as": kind, ... }`:
 * `undefined`, non-finite numbers, BigInt, Date, RegExp, Map, Set, Error (with `cause`),
 * `Msg`, and references (proxies and pending AsyncResults, handed to a `RefCodec`). A user
 * object that itself has a `$as` key is escaped, so no user value is ever mistaken for a tag.
 *
 * Instances of other classes are refused with a CodecError naming the class, unless the
 * class says what its data is with `toJSON()` (then that travels): copying their fields would
 * deliver a plain object without methods, failing `instanceof`, with no word of warning.
 * Generators, iterators and local async iterables are refused the same way: a stream travels
 * only as a `RemoteStream` (what a remote stream method returns), by reference.
 *
 * Decoding never executes code: JSON.parse plus a walk that only builds data. Own keys named
 * `__proto__` stay plain data (no prototype is ever set from the wire). Size is checked before
 * parsing, depth while walking. Measurements that picked this format are in the README.
 *
 * `encodeFrame` gives the same frame in parts when it has large binary leaves (a `SplitFrame`,
 * split-frame.ts): for a message written at once, so each large leaf is copied only into it.
 */
import { Msg } from "../agent/message.ts";
import { CodecError, ResourceExhaustedError } from "./errors.ts";
import { DEFAULT_LIMITS, type Limits } from "./limits.ts";
import { SPLIT_MIN_BYTES, SplitFrame, type Frame } from "./split-frame.ts";

export type { Frame } from "./split-frame.ts";

/** A reference tag as it appears on the wire (proxy, pending result or stream). */
export interface WireRefTag {
  $as: "ref" | "fut" | "stream" | "cb";
  [k: string]: unknown;
}

/** What a `RefCodec` answers for an object it recognises. */
export type RefEncoding = { tag: WireRefTag } | { value: unknown };

/**
 * Turns objects that travel by reference (proxies, AsyncResults, server-held objects) into
 * tags and back. Supplied by the client core and the servicer; the codec knows no transport.
 */
export interface RefCodec {
  /** A tag (or a substitute value) for `v`, or `undefined` if `v` is not a reference type. */
  encode(v: object): RefEncoding | undefined;
  /** Rebuild a live object (proxy, AsyncResult) from its tag. */
  decode(tag: WireRefTag): unknown;
}

/** A codec for values without references (a tag is refused). */
export const NO_REFS: RefCodec = { encode: () => undefined, decode: (t) => { throw new CodecError(`unexpected reference tag ${String(t.$as)}`); } };

/** Typed array classes a binary leaf may be, by name. */
export const BINARY_KINDS = {
  Uint8Array, Int8Array, Uint8ClampedArray, Uint16Array, Int16Array, Uint32Array, Int32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
} as const;
/** Every kind of binary leaf. */
export type BinaryKind = keyof typeof BINARY_KINDS | "ArrayBuffer" | "DataView" | "Buffer";

const encoder = new TextEncoder();
/** Bytes of the frame header (the JSON length). */
export const HEADER = 4;

interface EncodeState {
  blobs: Uint8Array[];
  /** Bytes the blob area needs so far (each blob 8-byte aligned, offsets relative to its start). */
  blobBytes: number;
  /** True once a blob of at least SPLIT_MIN_BYTES is met (the frame may then be split). */
  large: boolean;
  refs: RefCodec;
  limits: Limits;
  /** Objects being encoded, outermost first (cycle check; as deep as the value, ≤ maxDepth). */
  seen: object[];
}

/** A value's JSON and binary leaves, measured and checked against the size limit. */
interface Encoded {
  json: Uint8Array;
  blobs: Uint8Array[];
  blobStart: number;
  size: number;
  large: boolean;
}

function encodeParts(value: unknown, refs: RefCodec, limits: Limits): Encoded {
  const st: EncodeState = { blobs: [], blobBytes: 0, large: false, refs, limits, seen: [] };
  const tree = enc(value, st, 0);
  const json = encoder.encode(JSON.stringify(tree === undefined ? { $as: "u" } : tree));
  const blobStart = align8(HEADER + json.length);
  const size = st.blobs.length ? blobStart + st.blobBytes : HEADER + json.length;
  if (size > limits.maxMessageBytes) {
    throw new ResourceExhaustedError(`encoded value is ${size} bytes, over the ${limits.maxMessageBytes}-byte message limit`);
  }
  return { json, blobs: st.blobs, blobStart, size, large: st.large };
}

/** Encode `value` into one frame. Throws CodecError for functions, symbols, cycles, depth. */
export function encodeValue(value: unknown, refs: RefCodec = NO_REFS, limits: Limits = DEFAULT_LIMITS): Uint8Array {
  return whole(encodeParts(value, refs, limits));
}

/** The frame as one array. */
function whole(e: Encoded): Uint8Array {
  const out = alloc(e.size);
  writeRange(e, out, 0, e.size);
  return out;
}

/**
 * Encode `value` into a frame that is to be written out at once: a `SplitFrame` whose large
 * leaves (≥ SPLIT_MIN_BYTES) are the value's own bytes when it has any, else one array as
 * `encodeValue` makes it. The bytes are the same either way once joined.
 */
export function encodeFrame(value: unknown, refs: RefCodec = NO_REFS, limits: Limits = DEFAULT_LIMITS): Frame {
  const e = encodeParts(value, refs, limits);
  if (!e.large) return whole(e);
  // Parts: the glue between large leaves (header, JSON, small leaves, padding), copied into
  // small arrays of its own, and each large leaf as it is.
  const parts: Uint8Array[] = [];
  let at = 0;
  let off = e.blobStart;
  for (const b of e.blobs) {
    const start = off;
    off = align8(start + b.byteLength);
    if (b.byteLength < SPLIT_MIN_BYTES) continue;
    if (start > at) parts.push(glue(e, at, start));
    parts.push(b);
    at = start + b.byteLength;
  }
  if (e.size > at) parts.push(glue(e, at, e.size));
  return new SplitFrame(parts);
}

/** The frame's bytes [from, to) in an array of their own (zero-filled, so padding is zero). */
function glue(e: Encoded, from: number, to: number): Uint8Array {
  const out = new Uint8Array(to - from);
  writeRange(e, out, from, to);
  return out;
}

/**
 * Write the frame's bytes [from, to) into `out` (frame offset `from` lands at 0). Only whole
 * leaves fall in a range (a range never cuts a leaf), and padding bytes are written as zeros.
 */
function writeRange(e: Encoded, out: Uint8Array, from: number, to: number): void {
  if (from === 0) {
    // Byte by byte: reading `.buffer` of a fresh small typed array (for a DataView) makes the
    // engine materialise its ArrayBuffer, which costs more than the rest of a small encode.
    writeU32(out, e.json.length);
    out.set(e.json, HEADER);
    // Alignment padding is zeroed: a large frame's memory is not (see `alloc`).
    if (e.blobs.length) out.fill(0, HEADER + e.json.length, e.blobStart);
  }
  let off = e.blobStart;
  for (const b of e.blobs) {
    const start = off;
    off = align8(start + b.byteLength);
    if (start >= to) break;
    if (start < from) continue;
    out.set(b, start - from);
    out.fill(0, start + b.byteLength - from, Math.min(off, to) - from);
  }
}

/** Frames this large skip zero-filling: every byte of them is written anyway. */
const UNZEROED_BYTES = 64 * 1024;

/**
 * A fresh byte array with its own exactly-sized buffer. Large ones come from
 * `Buffer.allocUnsafeSlow` (never pooled, not zero-filled: the caller writes every byte),
 * seen as a plain Uint8Array; that saves a pass over megabytes of memory per copy.
 */
export function alloc(n: number): Uint8Array<ArrayBuffer> {
  if (n < UNZEROED_BYTES) return new Uint8Array(n);
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer as ArrayBuffer, b.byteOffset, n);
}

/** Little-endian u32 at the start of `b`. */
function writeU32(b: Uint8Array, n: number): void {
  b[0] = n & 0xff;
  b[1] = (n >>> 8) & 0xff;
  b[2] = (n >>> 16) & 0xff;
  b[3] = n >>> 24;
}

/** The little-endian u32 at the start of `b`. */
export function readU32(b: Uint8Array): number {
  return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
}

/** `n` rounded up to a multiple of 8 (binary leaves are 8-byte aligned). */
export function align8(n: number): number {
  return (n + 7) & ~7;
}

function enc(v: unknown, st: EncodeState, depth: number): unknown {
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      if (Number.isFinite(v)) return Object.is(v, -0) ? { $as: "num", v: "-0" } : v;
      return { $as: "num", v: String(v) };
    case "undefined":
      return { $as: "u" };
    case "bigint":
      return { $as: "big", v: v.toString() };
    case "function": {
      // Callback handles and stubs are functions that travel by reference.
      const ref = st.refs.encode(v as object);
      if (ref && "tag" in ref) return ref.tag;
      throw new CodecError(
        `functions are not values and cannot be sent (${(v as Function).name || "anonymous"}): ` +
          "wrap it with callback(fn) to let the server call it back in this process",
      );
    }
    case "symbol":
      throw new CodecError(`symbols cannot be sent (${String(v)})`);
  }
  if (v === null) return null;
  const o = v as object;
  if (depth >= st.limits.maxDepth) throw new CodecError(`value nested deeper than ${st.limits.maxDepth} levels`);
  if (st.seen.includes(o)) throw new CodecError("cyclic values cannot be sent");
  const ref = st.refs.encode(o);
  if (ref) {
    if ("tag" in ref) return ref.tag;
    return enc(ref.value, st, depth);
  }
  st.seen.push(o);
  try {
    return encObject(o, st, depth + 1);
  } finally {
    st.seen.pop();
  }
}

function encObject(o: object, st: EncodeState, depth: number): unknown {
  if (Array.isArray(o)) return encArray(o, st, depth);
  const proto = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === null) return encPlain(o as Record<string, unknown>, st, depth);
  if (o instanceof Msg) return { $as: "msg", v: encPlain(o.toJSON() as unknown as Record<string, unknown>, st, depth) };
  if (o instanceof Date) return { $as: "date", v: Number.isNaN(o.getTime()) ? null : o.getTime() };
  if (o instanceof Map) {
    const entries: unknown[] = [];
    for (const [k, val] of o) entries.push([enc(k, st, depth), enc(val, st, depth)]);
    return { $as: "map", v: entries };
  }
  if (o instanceof Set) {
    const items: unknown[] = [];
    for (const val of o) items.push(enc(val, st, depth));
    return { $as: "set", v: items };
  }
  if (ArrayBuffer.isView(o) || o instanceof ArrayBuffer) return encBinary(o, st);
  if (o instanceof RegExp) return { $as: "re", s: o.source, f: o.flags };
  if (o instanceof Error) return encError(o, st, depth);
  if (o instanceof Promise) throw new CodecError("a Promise cannot be sent; await it first or send an AsyncResult");
  if (o instanceof WeakMap || o instanceof WeakSet || o instanceof SharedArrayBuffer) {
    throw new CodecError(`${o.constructor.name} cannot be sent`);
  }
  const stream = streamKind(o);
  if (stream) {
    throw new CodecError(
      `${stream} cannot be sent as a value: only a RemoteStream (what a remote \`async *\` or @streamFunc method ` +
        "returns) travels, by reference. Return it from a stream method of a @dist class, or collect its items " +
        "into an array first (`[...it]`, `await Array.fromAsync(it)`) and send the array.",
    );
  }
  // A class that says what its data is (`toJSON`, as for JSON.stringify) sends that.
  const toJSON = (o as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === "function") return enc(toJSON.call(o), st, depth);
  const cls = className(proto);
  const what = cls ? `an instance of class ${cls}` : "an object with a custom prototype";
  const x = cls ? cls[0]!.toLowerCase() + cls.slice(1) : "x";
  throw new CodecError(
    `${what} cannot be sent as a value: it would arrive as a plain object, without its methods and failing ` +
      `instanceof. Send plain data instead (e.g. { ...${x} }) or a Msg, give ${cls ?? "its class"} a toJSON() method, ` +
      `or make ${cls ?? "its class"} a @dist class and send ${x}.toDist() (a proxy).`,
  );
}

const ITERATOR_PROTO: object = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()));
const GENERATOR_PROTO: object = Object.getPrototypeOf(function* () {}).prototype;
const ASYNC_GENERATOR_PROTO: object = Object.getPrototypeOf(async function* () {}).prototype;

/** "a Generator", "an async generator"… when `o` is a generator, iterator or async iterable. */
function streamKind(o: object): string | undefined {
  if (Object.prototype.isPrototypeOf.call(ASYNC_GENERATOR_PROTO, o)) return "an async generator (an async function* result)";
  if (Object.prototype.isPrototypeOf.call(GENERATOR_PROTO, o)) return "a generator (a function* result)";
  if (Object.prototype.isPrototypeOf.call(ITERATOR_PROTO, o)) return `an iterator (${Object.prototype.toString.call(o).slice(8, -1)})`;
  if (typeof (o as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function") {
    return `an async iterable (${className(Object.getPrototypeOf(o)) ?? "object"})`;
  }
  return undefined;
}

/** The name of the class whose prototype is `proto`, if it has one. */
function className(proto: object | null): string | undefined {
  if (proto === null) return undefined;
  const ctor = Object.getOwnPropertyDescriptor(proto, "constructor")?.value as unknown;
  if (typeof ctor !== "function" || ctor.prototype !== proto) return undefined;
  const name = (ctor as { name?: unknown }).name;
  return typeof name === "string" && name.length > 0 ? name.slice(0, 100) : undefined;
}

function encArray(a: unknown[], st: EncodeState, depth: number): unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = enc(x, st, depth);
    if (y !== x && !out) out = a.slice(0, i);
    if (out) out.push(y);
  }
  return out ?? a;
}

function encPlain(o: Record<string, unknown>, st: EncodeState, depth: number): unknown {
  const keys = Object.keys(o);
  let out: Record<string, unknown> | undefined;
  const plain = Object.getPrototypeOf(o) === Object.prototype;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const x = o[k];
    const y = enc(x, st, depth);
    if ((y !== x || !plain) && !out) {
      out = {};
      for (let j = 0; j < i; j++) setOwn(out, keys[j]!, o[keys[j]!]);
    }
    if (out) setOwn(out, k, y);
  }
  const result = out ?? (plain ? o : {});
  return Object.hasOwn(result, "$as") ? { $as: "obj", v: result } : result;
}

function encBinary(o: ArrayBufferView | ArrayBuffer, st: EncodeState): unknown {
  let kind: BinaryKind;
  let bytes: Uint8Array;
  if (o instanceof ArrayBuffer) {
    kind = "ArrayBuffer";
    bytes = new Uint8Array(o);
  } else {
    kind = Buffer.isBuffer(o) ? "Buffer" : o instanceof DataView ? "DataView" : (o.constructor.name as BinaryKind);
    if (kind !== "Buffer" && kind !== "DataView" && !(kind in BINARY_KINDS)) kind = "Uint8Array";
    bytes = new Uint8Array(o.buffer, o.byteOffset, o.byteLength);
  }
  const o8 = st.blobBytes;
  st.blobs.push(bytes);
  if (bytes.byteLength >= SPLIT_MIN_BYTES) st.large = true;
  st.blobBytes = align8(o8 + bytes.byteLength);
  if (st.blobBytes > st.limits.maxMessageBytes) {
    throw new ResourceExhaustedError(`encoded value is over the ${st.limits.maxMessageBytes}-byte message limit`);
  }
  return { $as: "bin", k: kind, o: o8, n: bytes.byteLength };
}

function encError(e: Error, st: EncodeState, depth: number): unknown {
  const tag: Record<string, unknown> = { $as: "err", name: e.name, message: e.message };
  if (e.stack) tag.stack = e.stack;
  if ("cause" in e && e.cause !== undefined) tag.cause = enc(e.cause, st, depth);
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string" || typeof code === "number") tag.code = code;
  return tag;
}

/** Set an own property, even one named `__proto__` (never a prototype). */
export function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}
