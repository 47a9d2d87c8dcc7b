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
 * Generators, iterators and async iterables are refused the same way (streams are not values).
 *
 * Decoding never executes code: JSON.parse plus a walk that only builds data. Own keys named
 * `__proto__` stay plain data (no prototype is ever set from the wire). Size is checked before
 * parsing, depth while walking. Measurements that picked this format are in the README.
 */
import { Msg } from "../agent/message.ts";
import { CodecError, ResourceExhaustedError } from "./errors.ts";
import { DEFAULT_LIMITS, type Limits } from "./limits.ts";

/** A reference tag as it appears on the wire (proxy or pending result). */
export interface WireRefTag {
  $as: "ref" | "fut";
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

const NO_REFS: RefCodec = { encode: () => undefined, decode: (t) => { throw new CodecError(`unexpected reference tag ${String(t.$as)}`); } };

const BINARY_KINDS = {
  Uint8Array, Int8Array, Uint8ClampedArray, Uint16Array, Int16Array, Uint32Array, Int32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
} as const;
type BinaryKind = keyof typeof BINARY_KINDS | "ArrayBuffer" | "DataView" | "Buffer";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const HEADER = 4;

interface EncodeState {
  blobs: Uint8Array[];
  /** Bytes the blob area needs so far (each blob 8-byte aligned, offsets relative to its start). */
  blobBytes: number;
  refs: RefCodec;
  limits: Limits;
  /** Objects being encoded, outermost first (cycle check; as deep as the value, ≤ maxDepth). */
  seen: object[];
}

/** Encode `value` into one frame. Throws CodecError for functions, symbols, cycles, depth. */
export function encodeValue(value: unknown, refs: RefCodec = NO_REFS, limits: Limits = DEFAULT_LIMITS): Uint8Array {
  const st: EncodeState = { blobs: [], blobBytes: 0, refs, limits, seen: [] };
  const tree = enc(value, st, 0);
  const json = encoder.encode(JSON.stringify(tree === undefined ? { $as: "u" } : tree));
  const blobStart = align8(HEADER + json.length);
  const size = st.blobs.length ? blobStart + st.blobBytes : HEADER + json.length;
  if (size > limits.maxMessageBytes) {
    throw new ResourceExhaustedError(`encoded value is ${size} bytes, over the ${limits.maxMessageBytes}-byte message limit`);
  }
  const out = alloc(size);
  // Byte by byte: reading `.buffer` of a fresh small typed array (for a DataView) makes the
  // engine materialise its ArrayBuffer, which costs more than the rest of a small encode.
  writeU32(out, json.length);
  out.set(json, HEADER);
  let at = HEADER + json.length;
  for (const b of st.blobs) {
    // Alignment padding is zeroed: a large frame's memory is not (see `alloc`).
    const start = align8(at);
    out.fill(0, at, start);
    out.set(b, start);
    at = start + b.byteLength;
  }
  return out;
}

/** Frames this large skip zero-filling: every byte of them is written anyway. */
const UNZEROED_BYTES = 64 * 1024;

/**
 * A fresh byte array with its own exactly-sized buffer. Large ones come from
 * `Buffer.allocUnsafeSlow` (never pooled, not zero-filled: the caller writes every byte),
 * seen as a plain Uint8Array; that saves a pass over megabytes of memory per copy.
 */
function alloc(n: number): Uint8Array<ArrayBuffer> {
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

function readU32(b: Uint8Array): number {
  return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
}

function align8(n: number): number {
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
    case "function":
      throw new CodecError(`functions are not values and cannot be sent (${(v as Function).name || "anonymous"})`);
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
      `${stream} cannot be sent as a value: streams are not supported yet. Collect its items into an array ` +
        "first (`[...it]`, `await Array.fromAsync(it)`) and send the array.",
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

function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

interface DecodeState {
  bytes: Uint8Array;
  /** Where the blob area starts in `bytes`. */
  blobStart: number;
  refs: RefCodec;
  limits: Limits;
}

/**
 * Decode one frame. Throws CodecError on anything malformed (never crashes, never hangs),
 * ResourceExhaustedError when the frame is over the size limit.
 */
export function decodeValue(bytes: Uint8Array, refs: RefCodec = NO_REFS, limits: Limits = DEFAULT_LIMITS): unknown {
  if (!(bytes instanceof Uint8Array)) throw new CodecError("a value frame must be bytes");
  if (bytes.byteLength > limits.maxMessageBytes) {
    throw new ResourceExhaustedError(`value of ${bytes.byteLength} bytes is over the ${limits.maxMessageBytes}-byte message limit`);
  }
  if (bytes.byteLength < HEADER) throw new CodecError("truncated value frame");
  const jsonLen = readU32(bytes);
  if (jsonLen > bytes.byteLength - HEADER) throw new CodecError("truncated value frame");
  let tree: unknown;
  try {
    tree = JSON.parse(decoder.decode(bytes.subarray(HEADER, HEADER + jsonLen)));
  } catch (e) {
    throw new CodecError(`malformed value frame: ${(e as Error).message}`);
  }
  const st: DecodeState = { bytes, blobStart: align8(HEADER + jsonLen), refs, limits };
  return dec(tree, st, 0);
}

function dec(v: unknown, st: DecodeState, depth: number): unknown {
  if (v === null || typeof v !== "object") return v;
  if (depth >= st.limits.maxDepth) throw new CodecError(`value nested deeper than ${st.limits.maxDepth} levels`);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (x !== null && typeof x === "object") v[i] = dec(x, st, depth + 1);
    }
    return v;
  }
  const o = v as Record<string, unknown>;
  if (Object.hasOwn(o, "$as")) return decTag(o, st, depth);
  decFields(o, st, depth);
  return o;
}

function decFields(o: Record<string, unknown>, st: DecodeState, depth: number): void {
  for (const k of Object.keys(o)) {
    const x = o[k];
    if (x !== null && typeof x === "object") setOwn(o, k, dec(x, st, depth + 1));
  }
}

function decTag(t: Record<string, unknown>, st: DecodeState, depth: number): unknown {
  switch (t.$as) {
    case "u":
      return undefined;
    case "num": {
      const n = t.v === "-0" ? -0 : t.v === "NaN" ? NaN : t.v === "Infinity" ? Infinity : t.v === "-Infinity" ? -Infinity : undefined;
      if (n === undefined) throw new CodecError("bad number tag");
      return n;
    }
    case "big": {
      if (typeof t.v !== "string" || t.v.length > st.limits.maxBigIntDigits + 1 || !/^-?\d+$/.test(t.v)) {
        throw new CodecError(`bad or oversized BigInt (limit ${st.limits.maxBigIntDigits} digits)`);
      }
      return BigInt(t.v);
    }
    case "date":
      if (t.v !== null && typeof t.v !== "number") throw new CodecError("bad date tag");
      return new Date(t.v === null ? NaN : t.v);
    case "re":
      if (typeof t.s !== "string" || typeof t.f !== "string") throw new CodecError("bad regexp tag");
      try {
        return new RegExp(t.s, t.f);
      } catch {
        throw new CodecError("bad regexp tag");
      }
    case "map": {
      if (!Array.isArray(t.v)) throw new CodecError("bad map tag");
      const m = new Map();
      for (const e of t.v) {
        if (!Array.isArray(e) || e.length !== 2) throw new CodecError("bad map entry");
        m.set(dec(e[0], st, depth + 1), dec(e[1], st, depth + 1));
      }
      return m;
    }
    case "set": {
      if (!Array.isArray(t.v)) throw new CodecError("bad set tag");
      const s = new Set();
      for (const e of t.v) s.add(dec(e, st, depth + 1));
      return s;
    }
    case "bin":
      return decBinary(t, st);
    case "err":
      return decError(t, st, depth);
    case "msg": {
      const f = t.v;
      if (f === null || typeof f !== "object" || Array.isArray(f)) throw new CodecError("bad msg tag");
      const fields = f as Record<string, unknown>;
      decFields(fields, st, depth);
      if (typeof fields.name !== "string" || typeof fields.id !== "string") throw new CodecError("bad msg tag");
      try {
        return new Msg(fields as never);
      } catch (e) {
        throw new CodecError(`bad msg tag: ${(e as Error).message}`);
      }
    }
    case "obj": {
      const inner = t.v;
      if (inner === null || typeof inner !== "object" || Array.isArray(inner)) throw new CodecError("bad obj tag");
      decFields(inner as Record<string, unknown>, st, depth);
      return inner;
    }
    case "ref":
    case "fut":
      return st.refs.decode(t as WireRefTag);
    default:
      throw new CodecError(`unknown value tag ${JSON.stringify(String(t.$as)).slice(0, 40)}`);
  }
}

function decBinary(t: Record<string, unknown>, st: DecodeState): unknown {
  const kind = t.k;
  const len = t.n;
  const off = t.o;
  if (typeof kind !== "string" || !isCount(len) || !isCount(off)) throw new CodecError("bad binary tag");
  const start = st.blobStart + off;
  if (start + len > st.bytes.byteLength) throw new CodecError("truncated value frame (binary)");
  // Copy out: the frame buffer may be reused or huge, and aligned typed arrays need their own buffer.
  // Not `.slice()`: on a Node Buffer (gRPC frames) slice is a view, not a copy.
  const copy = alloc(len);
  copy.set(st.bytes.subarray(start, start + len));
  if (kind === "Uint8Array") return copy;
  if (kind === "ArrayBuffer") return copy.buffer;
  if (kind === "Buffer") return Buffer.from(copy.buffer, 0, len);
  if (kind === "DataView") return new DataView(copy.buffer);
  const C = (BINARY_KINDS as Record<string, { BYTES_PER_ELEMENT: number; new (b: ArrayBuffer): unknown }>)[kind];
  if (!C || !Object.hasOwn(BINARY_KINDS, kind)) throw new CodecError(`unknown binary kind ${kind.slice(0, 40)}`);
  if (len % C.BYTES_PER_ELEMENT !== 0) throw new CodecError("binary length does not fit its element size");
  return new C(copy.buffer);
}

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

function decError(t: Record<string, unknown>, st: DecodeState, depth: number): Error {
  const name = typeof t.name === "string" ? t.name : "Error";
  const message = typeof t.message === "string" ? t.message : "";
  const Ctor = SAFE_ERRORS[name] ?? Error;
  const e = new Ctor(message);
  if (Ctor === Error && name !== "Error") Object.defineProperty(e, "name", { value: name, writable: true, configurable: true, enumerable: false });
  if (typeof t.stack === "string") e.stack = t.stack;
  if (Object.hasOwn(t, "cause")) {
    const c = t.cause;
    Object.defineProperty(e, "cause", { value: c !== null && typeof c === "object" ? dec(c, st, depth + 1) : c, writable: true, configurable: true, enumerable: false });
  }
  if (typeof t.code === "string" || typeof t.code === "number") (e as Error & { code?: unknown }).code = t.code;
  return e;
}

const SAFE_ERRORS: Record<string, ErrorConstructor> = Object.assign(Object.create(null), {
  Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError,
});
