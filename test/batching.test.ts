/**
 * Request batching over gRPC: requests a client issues together travel in one `Batch` RPC and
 * the answers stream back per item, as they are ready. Real servers for the behaviour and the
 * wire contract; a fake channel for the client batcher's fallback and deadline logic.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { EventEmitter } from "node:events";
import { AgentCallError, RpcClient, UnauthenticatedError, type Remote } from "../src/index.ts";
import { DeadlineExceededError } from "../src/core/errors.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { type Request, type Response } from "../src/core/protocol.ts";
import { randomId } from "../src/core/ids.ts";
import { encodeArgs } from "../src/client/ref-encode.ts";
import { decodeValue } from "../src/core/codec-decode.ts";
import { RequestBatcher, type BatchChannel } from "../src/client/transports/grpc-batch.ts";
import { agentServerService, type WireBatchReply } from "../src/wire/grpc-proto.ts";
import { Tally } from "./fixtures/grpc-agents.ts";
import { startServer, type TestServer } from "./helpers/grpc.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server.shutdown();
  await closeAllConnections();
});

describe("batched requests", () => {
  test("creations, sync calls, async calls with their waits, and errors issued together all answer right", async () => {
    const ts: Array<Remote<Tally>> = Array.from({ length: 60 }, (_, i) => Tally.toDist(server.conf, i, `t${i}`));
    expect(await Promise.all(ts.map((t) => t.inc(1)))).toEqual(ts.map((_, i) => i + 1));
    expect(await Promise.all(ts.map((t) => t.later(1)))).toEqual(ts.map((_, i) => i + 1));
    const mixed = await Promise.allSettled(ts.slice(0, 6).map((t, i) => (i % 2 ? t.fail(`no ${i}`) : t.echo({ i }))));
    mixed.forEach((r, i) => {
      if (i % 2) {
        expect(r.status).toBe("rejected");
        const e = (r as PromiseRejectedResult).reason as AgentCallError;
        expect(e).toBeInstanceOf(AgentCallError);
        expect(e.remote.name).toBe("TypeError");
        expect(e.message).toContain(`no ${i}`);
      } else expect(r).toEqual({ status: "fulfilled", value: { i } });
    });
    await Promise.all(ts.map((t) => t.delete()));
  });

  test("a slow item never holds up a fast one sent in the same batch", async () => {
    const t = Tally.toDist(server.conf, 5);
    await t.inc(0);
    const slow = t.later(800);
    // The slow call, its first wait and a sync call leave in one turn of the event loop.
    const slowValue = slow.result();
    const t0 = performance.now();
    expect(await t.inc(1)).toBe(6);
    expect(performance.now() - t0).toBeLessThan(400);
    expect(await slowValue).toBe(6);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(700);
    await t.delete();
  });

  test("the Batch RPC: answers carry their item's index and stream back as they are ready; a bad item is INVALID_ARGUMENT", async () => {
    const t = Tally.toDist(server.conf, 1);
    await t.inc(0);
    const Client = grpc.makeGenericClientConstructor(agentServerService(), "AgentServer");
    const client = new Client(`${server.host}:${server.port}`, grpc.credentials.createInsecure());
    const def = agentServerService().Batch!;
    const task = randomId();
    const items = [
      { call: { oid: t.oid, name: "later", args: encodeArgs([300]), task } },
      { wait: { task, timeoutMs: 3000 } },
      { call: { oid: t.oid, name: "inc", args: encodeArgs([2]) } },
      {},
    ];
    const t0 = performance.now();
    const seen: Array<{ index: number; at: number; reply: Record<string, unknown> }> = [];
    await new Promise<void>((resolve, reject) => {
      const s = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize as (b: Buffer) => WireBatchReply, { items }, new grpc.Metadata(), {});
      s.on("data", (r: WireBatchReply) => {
        for (const a of r.answers ?? []) seen.push({ index: a.index ?? 0, at: performance.now() - t0, reply: a.reply as Record<string, unknown> });
      });
      s.on("error", reject);
      s.on("status", (st: grpc.StatusObject) => (st.code === grpc.status.OK ? resolve() : reject(new Error(st.details))));
    });
    client.close();
    const by = new Map(seen.map((x) => [x.index, x]));
    expect(seen.map((x) => x.index).sort()).toEqual([0, 1, 2, 3]);
    expect(by.get(0)!.reply.task).toBe(task);
    expect(decodeValue(by.get(2)!.reply.value as Uint8Array)).toBe(3);
    expect((by.get(3)!.reply.error as { code: string }).code).toBe("INVALID_ARGUMENT");
    // The quick answers did not wait for the slow one.
    expect(by.get(2)!.at).toBeLessThan(200);
    expect(by.get(1)!.at).toBeGreaterThanOrEqual(250);
    expect(decodeValue(by.get(1)!.reply.value as Uint8Array)).toBe(3);
    await t.delete();
  });

  test("a batch without the server's token is UNAUTHENTICATED for every item, and nothing runs", async () => {
    await using guarded = await startServer({ token: "batch-secret" });
    const conf = { host: guarded.host, port: guarded.port, token: "wrong" };
    const ts = Array.from({ length: 5 }, () => Tally.toDist(conf, 1));
    const out = await Promise.allSettled(ts.map((t) => t.inc(1)));
    for (const r of out) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(UnauthenticatedError);
    const admin = new RpcClient(guarded.host, guarded.port, { token: "batch-secret" });
    expect((await admin.getServerInfo()).size).toBe(0);
    admin.close();
  });
});

/** A fake channel: records what is sent, streams come from `onOpen`. */
function fakeChannel(onOpen: (s: EventEmitter & { cancel(): void }, items: object[]) => void) {
  const solo: Request[] = [];
  let opened = 0;
  const ch: BatchChannel = {
    solo: async (req) => {
      solo.push(req);
      return { t: "ok" };
    },
    open: (msg) => {
      opened++;
      const s = Object.assign(new EventEmitter(), { cancel() {} });
      queueMicrotask(() => onOpen(s, msg.items));
      return s as unknown as grpc.ClientReadableStream<WireBatchReply>;
    },
    statusError: (e) => e,
    where: { host: "fake", port: 1 },
    maxBytes: 32 * 2 ** 20,
  };
  return { ch, solo, opened: () => opened };
}

const wait = (timeoutMs: number): Request => ({ t: "wait", task: randomId(), timeoutMs });

describe("client batcher", () => {
  test("a lone request goes as its own RPC; requests issued together go as one batch", async () => {
    const f = fakeChannel((s, items) => {
      s.emit("data", { answers: items.map((_, index) => ({ index, reply: { ok: {} } })) });
      s.emit("status", { code: grpc.status.OK });
    });
    const b = new RequestBatcher(f.ch);
    expect(await b.add(wait(10))).toEqual({ t: "ok" });
    expect(f.solo.length).toBe(1);
    expect(f.opened()).toBe(0);
    const rs = await Promise.all([b.add(wait(10)), b.add(wait(10)), b.add(wait(10))]);
    expect(rs).toEqual([{ t: "ok" }, { t: "ok" }, { t: "ok" }]);
    expect(f.opened()).toBe(1);
    expect(f.solo.length).toBe(1);
  });

  test("a server without Batch (UNIMPLEMENTED): the requests are sent again one by one, and batching stops", async () => {
    const f = fakeChannel((s) => s.emit("error", Object.assign(new Error("unknown method"), { code: grpc.status.UNIMPLEMENTED })));
    const b = new RequestBatcher(f.ch);
    const rs: Response[] = await Promise.all([b.add(wait(10)), b.add(wait(10))]);
    expect(rs).toEqual([{ t: "ok" }, { t: "ok" }]);
    expect(f.solo.length).toBe(2);
    await Promise.all([b.add(wait(10)), b.add(wait(10))]);
    expect(f.opened()).toBe(1);
    expect(f.solo.length).toBe(4);
  });

  test("each item keeps its own deadline: an overdue wait fails DEADLINE_EXCEEDED while the others still get their answers", async () => {
    const f = fakeChannel((s) => {
      setTimeout(() => s.emit("data", { answers: [{ index: 1, reply: { pending: {} } }] }), 150);
      setTimeout(() => {
        s.emit("data", { answers: [{ index: 2, reply: { ok: {} } }] });
        s.emit("status", { code: grpc.status.OK });
      }, 200);
    });
    const b = new RequestBatcher(f.ch);
    const t0 = performance.now();
    const first = b.add(wait(50), { timeoutMs: 60 });
    const second = b.add(wait(500), { timeoutMs: 600 });
    const third = b.add({ t: "call", oid: randomId(), name: "x", args: new Uint8Array(8) });
    const e = await first.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DeadlineExceededError);
    expect(performance.now() - t0).toBeLessThan(140);
    expect(await second).toEqual({ t: "pending" });
    expect(await third).toEqual({ t: "ok" });
  });

  test("a request with a cancel signal or its own deadline is never batched", () => {
    const b = new RequestBatcher(fakeChannel(() => {}).ch);
    const call: Request = { t: "call", oid: randomId(), name: "x", args: new Uint8Array(8) };
    expect(b.accepts(call)).toBe(true);
    expect(b.accepts(call, { signal: new AbortController().signal })).toBe(false);
    expect(b.accepts(call, { timeoutMs: 100 })).toBe(false);
    expect(b.accepts(wait(10), { timeoutMs: 100 })).toBe(true);
    expect(b.accepts({ t: "info" })).toBe(false);
    expect(b.accepts({ t: "call", oid: randomId(), name: "x", args: new Uint8Array(2 * 2 ** 20) })).toBe(false);
  });
});
