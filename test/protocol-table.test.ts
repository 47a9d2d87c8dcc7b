/** The protocol is one table: the doc and the proto list exactly the request kinds it declares. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { REQUEST_KINDS, REQUEST_TABLE } from "../src/core/protocol.ts";
import { BATCH_KINDS, RPC_OF } from "../src/wire/grpc-proto.ts";

const doc = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8");
const proto = readFileSync(new URL("../proto/agent_server.proto", import.meta.url), "utf8");
/** RPCs that carry other requests rather than being one kind (Callbacks: the server → caller ones). */
const CARRIERS = ["Batch", "Session", "Callbacks"];

describe("the protocol table", () => {
  test("docs/protocol.md has a row for every request kind, and no other", () => {
    const rows = [...doc.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]!);
    expect(rows.sort()).toEqual(Object.keys(REQUEST_TABLE).sort());
  });

  test("the proto declares exactly the table's gRPC methods, plus the batch carriers", () => {
    const rpcs = [...proto.matchAll(/^\s*rpc (\w+)\(/gm)].map((m) => m[1]!);
    const want = Object.values(REQUEST_TABLE).flatMap((k) => (k.rpc === null ? [] : [k.rpc]));
    expect(rpcs.sort()).toEqual([...want, ...CARRIERS].sort());
  });

  test("every batchable kind has a BatchItem field of its name", () => {
    const item = /message BatchItem \{([\s\S]*?)\n\}/.exec(proto)![1]!;
    const fields = [...item.matchAll(/^\s+\w+ (\w+) = \d+;/gm)].map((m) => m[1]!);
    expect(fields.sort()).toEqual([...BATCH_KINDS].sort());
  });

  test("every kind that carries trace context has `optional string trace` in its proto message, and no other", () => {
    const messageOf = (rpc: string) => new RegExp(`rpc ${rpc}\\((\\w+)\\)`).exec(proto)![1]!;
    for (const [t, k] of Object.entries(REQUEST_TABLE)) {
      if (k.rpc === null) continue;
      const msg = messageOf(k.rpc);
      const body = msg === "Empty" ? "" : new RegExp(`message ${msg} \\{([\\s\\S]*?)\\n\\}`).exec(proto)![1]!;
      expect(`${t}: ${/^\s+optional string trace = \d+;/m.test(body)}`).toBe(`${t}: ${k.trace}`);
    }
  });

  test("the gRPC mapping and the kinds a server accepts come from the table; IPC-only kinds are refused from peers", () => {
    for (const [t, k] of Object.entries(REQUEST_TABLE)) {
      expect(RPC_OF[t as keyof typeof REQUEST_TABLE]).toBe(k.rpc ?? undefined);
      expect(REQUEST_KINDS.has(t)).toBe(k.rpc !== null);
    }
    expect(REQUEST_KINDS.has("listen")).toBe(false);
  });
});
