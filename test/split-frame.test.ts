/**
 * Split frames: a value's large binary leaves stay the caller's arrays until the message is
 * written (no frame is built and copied again), the bytes on the wire are exactly the joined
 * frame's, and a received split frame decodes its leaves as views of its own parts.
 */
import { describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { encodeFrame, encodeValue } from "../src/core/codec.ts";
import { decodeValue } from "../src/core/codec-decode.ts";
import { CodecError, ResourceExhaustedError } from "../src/core/errors.ts";
import { SPLIT_MIN_BYTES, SplitFrame, withJoinedFrames } from "../src/core/split-frame.ts";
import { agentServerService } from "../src/wire/grpc-proto.ts";
import { DeferredMessage, decodeMessage, encodeMessage, serializeMessage } from "../src/wire/proto-codec.ts";
import { splitForIpc, splitFromIpc } from "../src/wire/ipc-frame.ts";

const big = (n: number, fill = 7) => new Uint8Array(n).fill(fill);

/** `f` as one array, whatever it is. */
const bytesOf = (f: Uint8Array | SplitFrame) => (f instanceof SplitFrame ? f.join() : f);

/** A received copy of `f`'s parts, as a structured clone delivers them. */
const received = (f: SplitFrame) => SplitFrame.received(structuredClone(f.cloneable()))!;

describe("encoding", () => {
  test("a value without large leaves is one array, the same bytes as encodeValue", () => {
    const v = [1, "x", big(SPLIT_MIN_BYTES - 1), { a: new Float64Array(10) }];
    const f = encodeFrame(v);
    expect(f).toBeInstanceOf(Uint8Array);
    expect(f).toEqual(encodeValue(v));
  });

  test("each large leaf is a part of its own: the caller's bytes, not a copy", () => {
    const a = big(SPLIT_MIN_BYTES, 1);
    const f64 = new Float64Array(20_000).fill(0.5);
    const f = encodeFrame([a, "between", big(10, 2), f64, 3]);
    expect(f).toBeInstanceOf(SplitFrame);
    const parts = (f as SplitFrame).parts;
    // header+JSON, a, padding+small leaf+padding, f64 (its byte length is a multiple of 8: no tail).
    expect(parts.length).toBe(4);
    expect(parts[1]!.buffer).toBe(a.buffer);
    expect(parts[3]!.buffer).toBe(f64.buffer);
    expect(parts[3]!.byteLength).toBe(f64.byteLength);
  });

  test("joined, a split frame is byte for byte the frame encodeValue builds (the wire format is unchanged)", () => {
    const leaf = fc.oneof(
      fc.integer({ min: 0, max: 200 }).map((n) => big(n, n & 255)),
      fc.integer({ min: SPLIT_MIN_BYTES - 3, max: SPLIT_MIN_BYTES + 20 }).map((n) => big(n, n & 255)),
      fc.string({ maxLength: 20 }),
    );
    fc.assert(
      fc.property(fc.array(leaf, { maxLength: 6 }), (v) => {
        const f = encodeFrame(v);
        const joined = bytesOf(f);
        expect(joined).toEqual(encodeValue(v));
        expect(f.byteLength).toBe(joined.byteLength);
        expect(decodeValue(f)).toEqual(v);
      }),
      { numRuns: 60 },
    );
  });

  test("a split frame counts against the message limit like the joined one", () => {
    const limits = { maxMessageBytes: SPLIT_MIN_BYTES + 100, maxDepth: 64, maxBigIntDigits: 100 };
    const e = (() => {
      try {
        encodeFrame([big(SPLIT_MIN_BYTES + 200)], undefined, limits as never);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(ResourceExhaustedError);
  });
});

describe("decoding", () => {
  test("a received split frame's large leaves are views of its parts; an ArrayBuffer leaf is its part's buffer", () => {
    const u = big(100_000, 9);
    const f64 = new Float64Array(10_000).map((_, i) => i);
    const ab = big(70_000, 4).buffer;
    const small = big(100, 5);
    const r = received(encodeFrame([u, f64, ab, small]) as SplitFrame);
    const [du, df, dab, ds] = decodeValue(r) as [Uint8Array, Float64Array, ArrayBuffer, Uint8Array];
    expect(du).toEqual(u);
    expect(df).toEqual(f64);
    expect(new Uint8Array(dab)).toEqual(new Uint8Array(ab));
    expect(ds).toEqual(small);
    // No copy: the decoded leaves are the received parts' memory.
    expect(du.buffer).toBe(r.parts[1]!.buffer);
    expect(df.buffer).toBe(r.parts[2]!.buffer);
    expect(dab as ArrayBufferLike).toBe(r.parts[3]!.buffer);
    // A small leaf is its own copy (it never pins a large buffer).
    expect(ds.buffer.byteLength).toBe(100);
  });

  test("a split frame this process made decodes to copies: the caller's arrays are never shared", () => {
    const u = big(100_000, 3);
    const [du] = decodeValue(encodeFrame([u])) as [Uint8Array];
    expect(du).toEqual(u);
    expect(du.buffer).not.toBe(u.buffer);
  });

  test("malformed received parts are refused with clear errors", () => {
    expect(SplitFrame.received([])).toBeUndefined();
    expect(SplitFrame.received([new Uint8Array(8), "x"])).toBeUndefined();
    expect(SplitFrame.received(new Uint8Array(8))).toBeUndefined();
    const good = encodeFrame([big(SPLIT_MIN_BYTES)]) as SplitFrame;
    const [head, leaf] = good.parts as [Uint8Array, Uint8Array];
    const err = (f: SplitFrame) => {
      try {
        decodeValue(f);
      } catch (e) {
        return e as Error;
      }
      throw new Error("decoded");
    };
    // The JSON must be in the first part.
    expect(err(new SplitFrame([head.subarray(0, 6), head.subarray(6), leaf], true))).toBeInstanceOf(CodecError);
    // A leaf may not straddle two parts.
    const straddle = err(new SplitFrame([head, leaf.subarray(0, 10), leaf.subarray(10)], true));
    expect(straddle).toBeInstanceOf(CodecError);
    expect(straddle.message).toMatch(/straddles/);
    // A missing leaf is a truncated frame.
    expect(err(new SplitFrame([head], true))).toBeInstanceOf(CodecError);
    // Over the limit: refused before the JSON is read.
    const over = (() => {
      try {
        decodeValue(new SplitFrame([head, leaf], true), undefined, { maxMessageBytes: SPLIT_MIN_BYTES, maxDepth: 64, maxBigIntDigits: 100 } as never);
      } catch (e) {
        return e;
      }
    })();
    expect(over).toBeInstanceOf(ResourceExhaustedError);
  });
});

describe("IPC object frames", () => {
  test("a split frame travels as its parts; each whole-buffer leaf is the caller's array, a view into a larger buffer is copied out", () => {
    const whole = big(SPLIT_MIN_BYTES, 1);
    const view = big(3 * SPLIT_MIN_BYTES, 2).subarray(8, 8 + SPLIT_MIN_BYTES);
    const f = encodeFrame([whole, view]) as SplitFrame;
    const r = splitForIpc({ t: "call", oid: "o", name: "m", args: f });
    const parts = r.args as unknown as Uint8Array[];
    // header+JSON, whole, view (both a multiple of 8 bytes long: no padding between).
    expect(parts.length).toBe(3);
    expect(parts[1]).toBe(f.parts[1]!);
    // A clone of a view would carry its whole buffer: a copy of just the view goes instead.
    expect(parts[2]!.buffer.byteLength).toBe(SPLIT_MIN_BYTES);
    const back = structuredClone(r) as Record<string, unknown>;
    splitFromIpc(back);
    expect(back.args).toBeInstanceOf(SplitFrame);
    expect(decodeValue(back.args as SplitFrame)).toEqual([whole, view]);
  });

  test("messages without split frames are left as they are", () => {
    const req = { t: "call" as const, oid: "o", name: "m", args: encodeValue([1]) };
    expect(splitForIpc(req)).toBe(req);
    expect(withJoinedFrames(req)).toBe(req);
    const bad: Record<string, unknown> = { t: "call", args: ["not bytes"] };
    splitFromIpc(bad);
    expect(bad.args).toEqual(["not bytes"]);
  });
});

describe("protobuf", () => {
  test("a message holding a split frame is a deferred message that writes the same bytes as the joined one", () => {
    const f = encodeFrame([big(100_000, 6), "x"]) as SplitFrame;
    const joined = encodeMessage("Reply", { value: f.join() });
    const m = serializeMessage("Reply", { value: f }) as unknown as DeferredMessage;
    expect(m).toBeInstanceOf(DeferredMessage);
    expect(m.length).toBe(joined.length);
    // grpc-js: `copy(framed, 5)` into the buffer it sends.
    const framed = Buffer.alloc(joined.length + 5, 0xee);
    expect(m.copy(framed, 5)).toBe(joined.length);
    expect(Buffer.compare(framed.subarray(5), joined)).toBe(0);
    expect(framed.subarray(0, 5)).toEqual(Buffer.alloc(5, 0xee));
    // Any other copy still gives the right bytes.
    const part = Buffer.alloc(10);
    m.copy(part, 0, 100, 110);
    expect(Buffer.compare(part, joined.subarray(100, 110))).toBe(0);
    const back = decodeMessage("Reply", framed.subarray(5)) as { value: Uint8Array };
    expect(decodeValue(back.value)).toEqual([big(100_000, 6), "x"]);
    // Without split frames the serializer makes a plain Buffer.
    expect(Buffer.isBuffer(serializeMessage("Reply", { value: encodeValue([1]) }))).toBe(true);
  });

  test("grpc-js sends deferred messages both ways (client request, server answer): what it does with a serialized message is length and copy", async () => {
    const svc = agentServerService();
    const server = new grpc.Server({ "grpc.max_receive_message_length": 4 << 20 });
    let arrived: unknown;
    server.addService({ Call: svc.Call! }, {
      Call: (call: grpc.ServerUnaryCall<{ args: Uint8Array }, object>, cb: grpc.sendUnaryData<object>) => {
        arrived = decodeValue(call.request.args);
        cb(null, { value: encodeFrame(arrived) });
      },
    });
    const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    const Client = grpc.makeGenericClientConstructor({ Call: svc.Call! }, "T");
    const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 4 << 20 });
    try {
      const v = [big(300_000, 11), "y", new Float64Array(40_000).fill(1.5)];
      const args = encodeFrame(v);
      expect(args).toBeInstanceOf(SplitFrame);
      const reply = await new Promise<{ value: Uint8Array }>((res, rej) =>
        c.makeUnaryRequest(svc.Call!.path, svc.Call!.requestSerialize, svc.Call!.responseDeserialize as (b: Buffer) => { value: Uint8Array }, { oid: "o", name: "m", args }, (e, r) => (e ? rej(e) : res(r!))),
      );
      expect(arrived).toEqual(v);
      expect(decodeValue(reply.value)).toEqual(v);
    } finally {
      c.close();
      server.forceShutdown();
    }
  });
});
