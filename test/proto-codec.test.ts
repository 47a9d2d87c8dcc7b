/**
 * The hand-built service (src/wire/proto-codec.ts, no .proto parsing at run time) against the
 * contract, proto/agent_server.proto, read by @grpc/proto-loader as before issue 20: the same
 * messages, fields, numbers, types and RPCs, and the same bytes both ways.
 */
import { describe, expect, test } from "bun:test";
import * as protoLoader from "@grpc/proto-loader";
import fc from "fast-check";
import { MESSAGES, RPCS, decodeMessage, encodeMessage } from "../src/wire/proto-codec.ts";
import { agentServerService } from "../src/wire/grpc-proto.ts";

const PROTO = new URL("../proto/agent_server.proto", import.meta.url).pathname;
const OPTS = { keepCase: false, defaults: false, oneofs: false, longs: String, enums: String } as const;
const loaded = protoLoader.loadSync(PROTO, OPTS);
const theirs = loaded["actorscope.AgentServer"] as unknown as Record<string, protoLoader.MethodDefinition<object, object>>;
const ours = agentServerService();

/** proto-loader's descriptor of message `name` (a DescriptorProto as JSON). */
function descriptor(name: string): { field?: Array<{ name: string; number: number; type: string; typeName?: string; label: string; jsonName?: string }> } {
  const t = loaded[`actorscope.${name}`] as { type: unknown };
  return t.type as never;
}

const camel = (s: string) => s.replace(/_(\w)/g, (_, c: string) => c.toUpperCase());
const TYPES: Record<string, string> = { TYPE_STRING: "string", TYPE_BYTES: "bytes", TYPE_BOOL: "bool", TYPE_UINT32: "uint32" };

describe("the service table matches proto/agent_server.proto", () => {
  test("the same RPCs, paths, message types and streaming", () => {
    expect(RPCS.map((r) => r[0]).sort()).toEqual(Object.keys(theirs).sort());
    for (const [name, req, res, reqStream, resStream] of RPCS) {
      const t = theirs[name]!;
      expect(ours[name]!.path).toBe(t.path);
      expect([ours[name]!.requestStream, ours[name]!.responseStream]).toEqual([t.requestStream, t.responseStream]);
      expect([reqStream, resStream]).toEqual([t.requestStream, t.responseStream]);
      expect((t.requestType as unknown as { type: { name: string } }).type.name).toBe(req);
      expect((t.responseType as unknown as { type: { name: string } }).type.name).toBe(res);
    }
  });

  test("the same messages, with the same fields (number, camelCase name, type, repeated)", () => {
    const protoMessages = Object.keys(loaded).filter((k) => k.startsWith("actorscope.") && k !== "actorscope.AgentServer").map((k) => k.slice(11));
    expect(Object.keys(MESSAGES).sort()).toEqual(protoMessages.sort());
    for (const [name, fields] of Object.entries(MESSAGES)) {
      const want = (descriptor(name).field ?? []).map((f) => [f.number, camel(f.name), TYPES[f.type] ?? f.typeName!.replace(/^.*\./, ""), f.label === "LABEL_REPEATED" || undefined]);
      expect(fields.map((f) => [f[0], f[1], f[2], f[3]])).toEqual(want as never);
    }
  });
});

// Messages as protocol.ts requests and responses look (fields present or absent).
const str = fc.string({ maxLength: 40 });
const bytes = fc.uint8Array({ maxLength: 64 });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const call = fc.record({ oid: str, name: str, args: bytes, task: str, timeoutMs: u32, snap: fc.boolean() }, { requiredKeys: ["oid", "name", "args"] });
const wait = fc.record({ task: str, timeoutMs: u32, fresh: fc.boolean(), keep: fc.boolean(), snap: fc.boolean() }, { requiredKeys: ["task"] });
const create = fc.record({ oid: str, cls: str, args: bytes, state: bytes }, { requiredKeys: ["oid", "cls", "args"] });
const item = fc.oneof(fc.record({ call }), fc.record({ wait }), fc.record({ create }), fc.record({ delete: fc.record({ oid: str }) }), fc.record({ next: fc.record({ stream: str, max: u32, timeoutMs: u32 }) }));
const reply = fc.oneof(
  fc.record({ value: bytes, snap: bytes }, { requiredKeys: ["value"] }),
  fc.record({ task: str }),
  fc.constant({ ok: {} }),
  fc.constant({ pending: {} }),
  fc.record({ error: fc.record({ code: str, message: str, remote: fc.record({ name: str, message: str, stack: str }, { requiredKeys: ["name", "message"] }), retryAfterMs: u32 }, { requiredKeys: ["code", "message"] }) }),
);
const CASES: Array<[string, fc.Arbitrary<object>]> = [
  ["Call", call],
  ["Wait", wait],
  ["Create", create],
  ["Batch", fc.record({ items: fc.array(item, { minLength: 1, maxLength: 5 }) })],
  ["Session", fc.record({ items: fc.array(item, { minLength: 1, maxLength: 5 }), firstId: u32 })],
];

/** Plain data: Buffers as Uint8Arrays, so the two decoders compare equal. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

describe("the same bytes both ways as proto-loader's serializers", () => {
  for (const [rpc, arb] of CASES) {
    test(`${rpc} requests`, () => {
      fc.assert(
        fc.property(arb, (m) => {
          const a = ours[rpc]!.requestSerialize(m);
          const b = theirs[rpc]!.requestSerialize(m);
          expect(plain(theirs[rpc]!.requestDeserialize(a))).toEqual(plain(m));
          expect(plain(ours[rpc]!.requestDeserialize(b))).toEqual(plain(m));
        }),
        { numRuns: 200 },
      );
    });
  }

  test("replies and batch replies", () => {
    fc.assert(
      fc.property(reply, fc.array(fc.record({ index: u32, reply }), { minLength: 1, maxLength: 4 }), (r, answers) => {
        for (const [rpc, m] of [["Call", r], ["Batch", { answers }]] as const) {
          const a = ours[rpc]!.responseSerialize(m);
          const b = theirs[rpc]!.responseSerialize(m);
          expect(plain(theirs[rpc]!.responseDeserialize(a))).toEqual(plain(m));
          expect(plain(ours[rpc]!.responseDeserialize(b))).toEqual(plain(m));
        }
      }),
      { numRuns: 200 },
    );
  });

  test("a large value decodes as a view of the received buffer (no copy)", () => {
    const value = new Uint8Array(1 << 20).fill(7);
    const wire = encodeMessage("Reply", { value });
    const got = decodeMessage("Reply", wire).value as Uint8Array;
    expect(got.byteLength).toBe(value.byteLength);
    expect(got.buffer).toBe(wire.buffer);
  });

  test("truncated and malformed input throws; unknown fields are skipped", () => {
    const wire = encodeMessage("CallRequest", { oid: "o", name: "n", args: new Uint8Array([1, 2, 3]) });
    for (let cut = 1; cut < wire.length; cut++) {
      const part = wire.subarray(0, cut);
      let threw = false;
      try {
        decodeMessage("CallRequest", part);
      } catch {
        threw = true;
      }
      // A cut exactly between fields is a valid shorter message.
      if (!threw) expect(Object.keys(decodeMessage("CallRequest", part)).length).toBeLessThan(3);
    }
    expect(() => decodeMessage("CallRequest", new Uint8Array([0x0f]))).toThrow();
    const withUnknown = Buffer.concat([Buffer.from([0x78, 0x05, 0x82, 0x01, 0x02, 0x61, 0x62]), wire]);
    expect(decodeMessage("CallRequest", withUnknown).oid).toBe("o");
  });
});
