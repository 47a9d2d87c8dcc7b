/**
 * The value codec, decoding side (the frame format is described in codec.ts): JSON.parse plus
 * a walk that only builds data. Own keys named `__proto__` stay plain data (no prototype is
 * ever set from the wire); size is checked before parsing, depth while walking; references
 * are handed to the `RefCodec`.
 */
import { Msg } from "../agent/message.ts";
import { BINARY_KINDS, HEADER, NO_REFS, align8, alloc, readU32, setOwn, type BinaryKind, type RefCodec, type WireRefTag } from "./codec.ts";
import { CodecError, ResourceExhaustedError } from "./errors.ts";
import { DEFAULT_LIMITS, type Limits } from "./limits.ts";
import { SplitFrame, type Frame } from "./split-frame.ts";

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Binary leaves this large or larger decode as views into their frame instead of copies. */
export const VIEW_MIN_BYTES = 64 * 1024;

interface DecodeState {
  /** The frame's byte ranges: one array, or a received split frame's parts. */
  parts: readonly Uint8Array[];
  /** Frame offset of each part. */
  starts: readonly number[];
  /** Where the blob area starts in the frame. */
  blobStart: number;
  refs: RefCodec;
  limits: Limits;
}

/**
 * Decode one frame. Throws CodecError on anything malformed (never crashes, never hangs),
 * ResourceExhaustedError when the frame is over the size limit. A split frame this process
 * made is joined first (its leaves are someone's live arrays); a received one is decoded
 * from its parts, each large leaf a view of its part.
 */
export function decodeValue(frame: Frame, refs: RefCodec = NO_REFS, limits: Limits = DEFAULT_LIMITS): unknown {
  if (frame instanceof SplitFrame && !frame.received) frame = frame.join();
  const parts = frame instanceof SplitFrame ? frame.parts : frame instanceof Uint8Array ? [frame] : undefined;
  if (!parts) throw new CodecError("a value frame must be bytes");
  if (frame.byteLength > limits.maxMessageBytes) {
    throw new ResourceExhaustedError(`value of ${frame.byteLength} bytes is over the ${limits.maxMessageBytes}-byte message limit`);
  }
  // The JSON is always in the first part: the first split-off leaf comes after it.
  const head = parts[0]!;
  if (head.byteLength < HEADER) throw new CodecError("truncated value frame");
  const jsonLen = readU32(head);
  if (jsonLen > head.byteLength - HEADER) throw new CodecError("truncated value frame");
  let tree: unknown;
  try {
    tree = JSON.parse(decoder.decode(head.subarray(HEADER, HEADER + jsonLen)));
  } catch (e) {
    throw new CodecError(`malformed value frame: ${(e as Error).message}`);
  }
  const starts: number[] = [];
  let at = 0;
  for (const p of parts) {
    starts.push(at);
    at += p.byteLength;
  }
  const st: DecodeState = { parts, starts, blobStart: align8(HEADER + jsonLen), refs, limits };
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
    case "stream":
    case "cb":
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
  const from = st.blobStart + off;
  // The part holding the leaf: a leaf never straddles two parts.
  let i = st.parts.length - 1;
  while (i > 0 && st.starts[i]! > from) i--;
  const bytes = st.parts[i]!;
  const start = from - st.starts[i]!;
  if (start + len > bytes.byteLength) throw new CodecError(st.parts.length === 1 ? "truncated value frame (binary)" : "binary leaf straddles the parts of a split frame");
  // A large leaf is a view into the frame, not a copy: a binary chunk is then copied once per
  // hop (into the message on the way out: see split-frame.ts), not twice. Frames are never reused (each message is
  // its own buffer), and a large leaf is most of its frame, so the view keeps little else
  // alive. Small leaves are copied, so a small value kept long never pins a big frame.
  if (len >= VIEW_MIN_BYTES) {
    const at = bytes.byteOffset + start;
    const buf = bytes.buffer as ArrayBuffer;
    if (kind === "Uint8Array") return new Uint8Array(buf, at, len);
    if (kind === "Buffer") return Buffer.from(buf, at, len);
    if (kind === "DataView") return new DataView(buf, at, len);
    // A received part that is exactly the leaf's buffer (a structured clone's) is the ArrayBuffer.
    if (kind === "ArrayBuffer" && at === 0 && len === buf.byteLength && buf instanceof ArrayBuffer) return buf;
    const V = (BINARY_KINDS as Record<string, { BYTES_PER_ELEMENT: number; new (b: ArrayBuffer, o: number, n: number): unknown }>)[kind];
    if (V && Object.hasOwn(BINARY_KINDS, kind) && at % V.BYTES_PER_ELEMENT === 0 && len % V.BYTES_PER_ELEMENT === 0) return new V(buf, at, len / V.BYTES_PER_ELEMENT);
  }
  // Copy out: aligned typed arrays need their own buffer, and an ArrayBuffer cannot be a view.
  // Not `.slice()`: on a Node Buffer (gRPC frames) slice is a view, not a copy.
  const copy = alloc(len);
  copy.set(bytes.subarray(start, start + len));
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
