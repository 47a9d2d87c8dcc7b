/**
 * The messages of `proto/agent_server.proto` as a table, and a protobuf codec for them — what
 * @grpc/proto-loader + protobufjs used to build at run time by parsing the .proto (~70 ms of
 * every client's first connection, measured on the 2-core VM; most of the 60 ms budget).
 * The .proto stays the contract: test/proto-codec.test.ts checks this table against it field
 * by field, and the bytes both ways against proto-loader's own serializers.
 *
 * Objects look like proto-loader's with `keepCase: false, defaults: false, oneofs: false`:
 * camelCase fields, a field is present only when it was on the wire, `bytes` decode to a
 * view of the received buffer (no copy), `uint32` to numbers. Unknown fields are skipped;
 * truncated or malformed input throws. A `bytes` field may be given a `SplitFrame`: its parts
 * are written in place, the same bytes as the joined frame.
 */
import { utf8Length, writeUtf8 } from "./utf8.ts";
import { SplitFrame } from "../core/split-frame.ts";

/** A field: number, camelCase name, type (a scalar or a message name), repeated? */
export type FieldSpec = readonly [no: number, name: string, type: string, repeated?: true];

/** Every message of the service, by name (the `.proto`'s, camelCased). */
export const MESSAGES: Readonly<Record<string, readonly FieldSpec[]>> = {
  Empty: [],
  CreateRequest: [[1, "oid", "string"], [2, "cls", "string"], [3, "args", "bytes"], [4, "state", "bytes"], [5, "trace", "string"]],
  CallRequest: [[1, "oid", "string"], [2, "name", "string"], [3, "args", "bytes"], [4, "task", "string"], [5, "timeoutMs", "uint32"], [6, "snap", "bool"], [7, "trace", "string"], [8, "holdMs", "uint32"], [9, "solo", "bool"]],
  WaitRequest: [[1, "task", "string"], [2, "timeoutMs", "uint32"], [3, "fresh", "bool"], [4, "keep", "bool"], [5, "snap", "bool"], [6, "trace", "string"]],
  ReleaseRequest: [[1, "task", "string"]],
  NextRequest: [[1, "stream", "string"], [2, "max", "uint32"], [3, "timeoutMs", "uint32"], [4, "trace", "string"]],
  SessionRequest: [[1, "items", "BatchItem", true], [2, "firstId", "uint32"]],
  ObjectRequest: [[1, "oid", "string"]],
  SetModelConfigsRequest: [[1, "configs", "bytes"]],
  DownloadRequest: [[1, "path", "string"]],
  CancelRequest: [[1, "task", "string"]],
  BatchRequest: [[1, "items", "BatchItem", true]],
  BatchItem: [
    [1, "call", "CallRequest"],
    [2, "wait", "WaitRequest"],
    [3, "create", "CreateRequest"],
    [4, "delete", "ObjectRequest"],
    [5, "describe", "ObjectRequest"],
    [6, "cancel", "CancelRequest"],
    [7, "release", "ReleaseRequest"],
    [8, "next", "NextRequest"],
  ],
  BatchReply: [[1, "answers", "BatchAnswer", true]],
  BatchAnswer: [[1, "index", "uint32"], [2, "reply", "Reply"]],
  Reply: [[1, "value", "bytes"], [2, "task", "string"], [3, "pending", "Empty"], [4, "ok", "Empty"], [5, "error", "Error"], [6, "snap", "bytes"]],
  Error: [[1, "code", "string"], [2, "message", "string"], [3, "remote", "RemoteError"], [4, "retryAfterMs", "uint32"]],
  RemoteError: [[1, "name", "string"], [2, "message", "string"], [3, "stack", "string"]],
  CallbackAsk: [[1, "n", "uint32"], [2, "call", "CallbackCallRequest"], [3, "drop", "CallbackDropRequest"]],
  CallbackCallRequest: [[1, "id", "string"], [2, "m", "string"], [3, "args", "bytes"]],
  CallbackDropRequest: [[1, "id", "string"], [2, "n", "uint32"]],
  CallbackAnswer: [[1, "link", "string"], [2, "n", "uint32"], [3, "reply", "Reply"]],
};

/** The RPCs: name, request message, response message, client streaming, server streaming. */
export const RPCS: ReadonlyArray<readonly [name: string, req: string, res: string, reqStream: boolean, resStream: boolean]> = [
  ["Create", "CreateRequest", "Reply", false, false],
  ["Call", "CallRequest", "Reply", false, false],
  ["Wait", "WaitRequest", "Reply", false, false],
  ["Delete", "ObjectRequest", "Reply", false, false],
  ["DeleteAll", "Empty", "Reply", false, false],
  ["Describe", "ObjectRequest", "Reply", false, false],
  ["List", "Empty", "Reply", false, false],
  ["Info", "Empty", "Reply", false, false],
  ["Alive", "Empty", "Reply", false, false],
  ["Stop", "Empty", "Reply", false, false],
  ["Memory", "ObjectRequest", "Reply", false, false],
  ["SetModelConfigs", "SetModelConfigsRequest", "Reply", false, false],
  ["Download", "DownloadRequest", "Reply", false, true],
  ["Cancel", "CancelRequest", "Reply", false, false],
  ["Batch", "BatchRequest", "BatchReply", false, true],
  ["Release", "ReleaseRequest", "Reply", false, false],
  ["Session", "SessionRequest", "BatchReply", true, true],
  ["Callbacks", "CallbackAnswer", "CallbackAsk", true, true],
  ["Next", "NextRequest", "Reply", false, false],
];

const SCALARS = new Set(["string", "bytes", "bool", "uint32"]);

/** A compiled field: its tag, wire type and what it holds. */
interface Field {
  no: number;
  name: string;
  type: string;
  repeated: boolean;
  /** The key bytes' value: (no << 3) | wire type. */
  tag: number;
  msg: Field[] | undefined;
}

const compiled = new Map<string, Field[]>();
function fieldsOf(name: string): Field[] {
  let fs = compiled.get(name);
  if (fs) return fs;
  const spec = MESSAGES[name];
  if (!spec) throw new Error(`unknown message ${name}`);
  fs = [];
  compiled.set(name, fs);
  for (const [no, fname, type, rep] of spec) {
    const scalar = SCALARS.has(type);
    const wire = type === "bool" || type === "uint32" ? 0 : 2;
    fs.push({ no, name: fname, type, repeated: rep === true, tag: (no << 3) | wire, msg: scalar ? undefined : fieldsOf(type) });
  }
  return fs;
}

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** Set by `sizeOf` when a message holds a split frame (read right after, by `serializeMessage`). */
let sawSplit = false;

/**
 * Sizes of the nested messages of the message being encoded, in the order `write` meets them:
 * `measure` fills it, `write` reads it, so each nested message is measured once (a batch of
 * calls was measured once per level of nesting before).
 */
const nested: number[] = [];
let nestedAt = 0;

/** Bytes of `m` as message `fs`, the sizes of its nested messages recorded for `write`. */
function measure(fs: Field[], m: Record<string, unknown>): number {
  nested.length = 0;
  nestedAt = 0;
  return sizeOf(fs, m);
}

/** The size of the nested message `x` (recorded in `nested`, in pre-order). */
function sizeOfNested(fs: Field[], x: Record<string, unknown>): number {
  const i = nested.length;
  nested.push(0);
  return (nested[i] = sizeOf(fs, x));
}

/** Bytes of `m` as message `fs` (the size of its fields, no length prefix). */
function sizeOf(fs: Field[], m: Record<string, unknown>): number {
  let n = 0;
  for (const f of fs) {
    const v = m[f.name];
    if (v === undefined || v === null) continue;
    if (f.repeated) {
      for (const x of v as unknown[]) {
        const s = sizeOfNested(f.msg!, x as Record<string, unknown>);
        n += varintSize(f.tag) + varintSize(s) + s;
      }
      continue;
    }
    n += varintSize(f.tag);
    switch (f.type) {
      case "string": {
        const s = utf8Length(v as string);
        n += varintSize(s) + s;
        break;
      }
      case "bytes": {
        const s = (v as Uint8Array | SplitFrame).byteLength;
        if (v instanceof SplitFrame) sawSplit = true;
        n += varintSize(s) + s;
        break;
      }
      case "bool":
        n += 1;
        break;
      case "uint32":
        n += varintSize((v as number) >>> 0);
        break;
      default: {
        const s = sizeOfNested(f.msg!, v as Record<string, unknown>);
        n += varintSize(s) + s;
      }
    }
  }
  return n;
}

function putVarint(b: Buffer, at: number, v: number): number {
  while (v >= 0x80) {
    b[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  b[at++] = v;
  return at;
}

function write(b: Buffer, at: number, fs: Field[], m: Record<string, unknown>): number {
  for (const f of fs) {
    const v = m[f.name];
    if (v === undefined || v === null) continue;
    if (f.repeated) {
      for (const x of v as Array<Record<string, unknown>>) {
        at = putVarint(b, at, f.tag);
        at = putVarint(b, at, nested[nestedAt++]!);
        at = write(b, at, f.msg!, x);
      }
      continue;
    }
    at = putVarint(b, at, f.tag);
    switch (f.type) {
      case "string": {
        const s = v as string;
        const len = utf8Length(s);
        at = writeUtf8(b, putVarint(b, at, len), s, len);
        break;
      }
      case "bytes": {
        const u = v as Uint8Array | SplitFrame;
        at = putVarint(b, at, u.byteLength);
        if (u instanceof SplitFrame) at = u.writeTo(b, at);
        else {
          b.set(u, at);
          at += u.byteLength;
        }
        break;
      }
      case "bool":
        b[at++] = v ? 1 : 0;
        break;
      case "uint32":
        at = putVarint(b, at, (v as number) >>> 0);
        break;
      default: {
        const x = v as Record<string, unknown>;
        at = putVarint(b, at, nested[nestedAt++]!);
        at = write(b, at, f.msg!, x);
      }
    }
  }
  return at;
}

/** Encode `m` as message `name`. */
export function encodeMessage(name: string, m: object): Buffer {
  const fs = fieldsOf(name);
  const obj = m as Record<string, unknown>;
  const b = Buffer.allocUnsafe(measure(fs, obj));
  sawSplit = false;
  writeWhole(b, 0, fs, obj, name);
  return b;
}

/** Write `m`, measured just before (`measure`: its nested sizes are the ones recorded). */
function writeWhole(b: Buffer, at: number, fs: Field[], m: Record<string, unknown>, name: string): void {
  const end = write(b, at, fs, m);
  if (end !== b.length) throw new Error(`protobuf encoder wrote ${end - at} of ${b.length - at} bytes of ${name}`);
}

/**
 * Encode `m` as message `name` for grpc-js. A message holding a split frame becomes a
 * `DeferredMessage`, written straight into the framed buffer grpc-js makes for it; others are
 * encoded at once (`encodeMessage`).
 */
export function serializeMessage(name: string, m: object): Buffer {
  const fs = fieldsOf(name);
  const obj = m as Record<string, unknown>;
  sawSplit = false;
  const size = measure(fs, obj);
  if (!sawSplit) {
    const b = Buffer.allocUnsafe(size);
    writeWhole(b, 0, fs, obj, name);
    return b;
  }
  sawSplit = false;
  return new DeferredMessage(name, fs, obj, size) as unknown as Buffer;
}

/**
 * A protobuf message not yet written, as grpc-js 1.14 uses a serialized message: it reads its
 * `length` (size checks, retry buffers), then `copy(framed, 5)` into the buffer it sends, on
 * the client (compression-filter.js, identity encoding — we never ask for compression) and
 * on the server (server-interceptors.js `serializeMessage`). Writing the message there makes
 * that copy the only one of each large leaf, as for a raw grpc-js echo of a Buffer. Anything
 * else grpc-js might do with it (a compressing channel) would fail loudly, not send wrong
 * bytes: this is not a Buffer. test/split-frame.test.ts holds grpc-js to that use.
 */
export class DeferredMessage {
  readonly length: number;
  constructor(
    readonly name: string,
    readonly fields: Field[],
    readonly message: Record<string, unknown>,
    size: number,
  ) {
    this.length = size;
  }

  get byteLength(): number {
    return this.length;
  }

  /** `Buffer#copy`: write the message into `target` at `targetStart` (a part of it: encoded first). */
  copy(target: Buffer, targetStart = 0, sourceStart = 0, sourceEnd = this.length): number {
    // Measured again: other messages were encoded since (the nested sizes are per encoding).
    measure(this.fields, this.message);
    if (sourceStart === 0 && sourceEnd >= this.length && target.byteLength - targetStart >= this.length) {
      writeWhole(target.subarray(targetStart, targetStart + this.length), 0, this.fields, this.message, this.name);
      return this.length;
    }
    const whole = Buffer.allocUnsafe(this.length);
    writeWhole(whole, 0, this.fields, this.message, this.name);
    const part = whole.subarray(sourceStart, Math.min(sourceEnd, this.length, sourceStart + target.byteLength - targetStart));
    target.set(part, targetStart);
    return part.byteLength;
  }
}

const utf8 = new TextDecoder();

/** Buffer's own UTF-8 slicer (grpc-js hands us Buffers): no view object made per string. */
type Sliceable = Uint8Array & { utf8Slice?(start: number, end: number): string };

/** Reading position over one buffer. */
class Reader {
  at: number;
  constructor(
    readonly b: Uint8Array,
    at: number,
  ) {
    this.at = at;
  }
  /** The UTF-8 string from here to `stop` (malformed bytes become U+FFFD, as TextDecoder does). */
  string(stop: number): string {
    const b = this.b as Sliceable;
    const s = b.utf8Slice ? b.utf8Slice(this.at, stop) : utf8.decode(b.subarray(this.at, stop));
    this.at = stop;
    return s;
  }
  varint(end: number): number {
    let v = 0;
    let shift = 0;
    for (;;) {
      if (this.at >= end) throw new Error("protobuf: truncated varint");
      const x = this.b[this.at++]!;
      // Bits past 32 are dropped (uint32 semantics); a varint is at most 10 bytes.
      if (shift < 32) v |= (x & 0x7f) << shift;
      if (x < 0x80) return v >>> 0;
      shift += 7;
      if (shift >= 70) throw new Error("protobuf: varint too long");
    }
  }
  /** Skip a field of wire type `wire` (an unknown field). */
  skip(wire: number, end: number): void {
    switch (wire) {
      case 0:
        this.varint(end);
        return;
      case 1:
        this.at += 8;
        break;
      case 2: {
        const len = this.varint(end);
        this.at += len;
        break;
      }
      case 5:
        this.at += 4;
        break;
      default:
        throw new Error(`protobuf: invalid wire type ${wire}`);
    }
    if (this.at > end) throw new Error("protobuf: truncated field");
  }
}

function read(r: Reader, end: number, fs: Field[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  while (r.at < end) {
    const key = r.varint(end);
    const no = key >>> 3;
    const wire = key & 7;
    const f = fs.find((x) => x.no === no);
    if (!f || (f.tag & 7) !== wire) {
      if (no === 0) throw new Error("protobuf: field number 0");
      r.skip(wire, end);
      continue;
    }
    if (wire === 0) {
      const v = r.varint(end);
      out[f.name] = f.type === "bool" ? v !== 0 : v;
      continue;
    }
    const len = r.varint(end);
    const stop = r.at + len;
    if (stop > end) throw new Error(`protobuf: truncated ${f.name}`);
    switch (f.type) {
      case "string":
        out[f.name] = r.string(stop);
        break;
      case "bytes":
        out[f.name] = r.b.subarray(r.at, stop);
        r.at = stop;
        break;
      default: {
        const v = read(r, stop, f.msg!);
        if (f.repeated) ((out[f.name] ??= []) as unknown[]).push(v);
        // A message field repeated on the wire merges; last one wins is close enough for ours.
        else out[f.name] = v;
      }
    }
  }
  if (r.at !== end) throw new Error("protobuf: field overruns its message");
  return out;
}

/** Decode message `name` from `b`. */
export function decodeMessage(name: string, b: Uint8Array): Record<string, unknown> {
  return read(new Reader(b, 0), b.byteLength, fieldsOf(name));
}
