/**
 * Binary IPC frames (src/wire/ipc-frame.ts): requests and answers on a child's IPC
 * channel travel as one Uint8Array each, several per message when sent together. Round trips,
 * batching and ordering of the sender, hostile input (never a throw), and a real child that
 * keeps serving after binary junk.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { Remote } from "../src/index.ts";
import type { ChildServer } from "../src/client/child-server.ts";
import { encodeValue } from "../src/core/codec.ts";
import { type Request, type Response } from "../src/core/protocol.ts";
import { randomId } from "../src/core/ids.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { FrameSender, MAX_BINARY_PAYLOAD, decodeFrame, decodeFrames, encodeFrame } from "../src/wire/ipc-frame.ts";
import { Worker } from "./fixtures/fault-agents.ts";

const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  await Promise.all(stops.map((s) => s()));
});

describe("binary IPC frames", () => {
  test("requests and answers round-trip, the byte field as a view of the frame", () => {
    const args = encodeValue([1, "two", { three: 3 }]);
    const call: Request = { t: "call", oid: randomId(), name: "reply", args, task: randomId(), timeoutMs: 1500 };
    const f = decodeFrame(encodeFrame("q", 7, call));
    expect(f).toEqual({ k: "q", i: 7, r: call });
    const answers: Response[] = [
      { t: "value", value: encodeValue("ok") },
      { t: "task", task: randomId() },
      { t: "pending" },
      { t: "ok" },
      { t: "error", error: { code: "UNKNOWN", message: "boom — ünïcödé ✓", remote: { name: "TypeError", message: "x", stack: "at y" } } },
    ];
    for (const [n, r] of answers.entries()) expect(decodeFrame(encodeFrame("a", 2 ** 40 + n, r))).toEqual({ k: "a", i: 2 ** 40 + n, r });
    const info: Request = { t: "info" };
    expect(decodeFrame(encodeFrame("q", 1, info))).toEqual({ k: "q", i: 1, r: info });
    const cfg: Request = { t: "setModelConfigs", configs: encodeValue([{ config_name: "名前" }]) };
    expect(decodeFrame(encodeFrame("q", 3, cfg))).toEqual({ k: "q", i: 3, r: cfg });
  });

  test("a payload over the limit, or two byte fields, is left to an object frame", () => {
    expect(encodeFrame("q", 1, { t: "call", oid: randomId(), name: "x", args: new Uint8Array(MAX_BINARY_PAYLOAD + 1) })).toBeUndefined();
    expect(encodeFrame("q", 1, { t: "call", oid: randomId(), name: "x", args: new Uint8Array(MAX_BINARY_PAYLOAD) })).toBeInstanceOf(Uint8Array);
    expect(encodeFrame("q", 1, { t: "call", oid: randomId(), name: "x", args: new Uint8Array(1), extra: new Uint8Array(1) } as unknown as Request)).toBeUndefined();
  });

  test("the sender batches frames queued together and never reorders an object frame before them", async () => {
    const posted: unknown[] = [];
    const s = new FrameSender((f) => posted.push(f));
    const a = encodeFrame("q", 1, { t: "alive" })!;
    const b = encodeFrame("q", 2, { t: "info" })!;
    s.queue(a, true);
    s.queue(b, false);
    expect(posted).toEqual([]);
    await Promise.resolve();
    await Promise.resolve();
    await Promise.resolve();
    expect(posted.length).toBe(1);
    expect(decodeFrames(posted[0])!.map((f) => f.i)).toEqual([1, 2]);
    s.queue(a, false);
    s.now({ k: "x", i: 1 });
    expect(posted.length).toBe(3);
    expect(decodeFrames(posted[1])!.map((f) => f.i)).toEqual([1]);
    expect(posted[2]).toEqual({ k: "x", i: 1 });
    await new Promise((r) => setImmediate(r));
    expect(posted.length).toBe(3);
  });

  test("malformed frames decode to undefined, never throw", () => {
    const good = encodeFrame("q", 5, { t: "call", oid: randomId(), name: "x", args: encodeValue([]) })!;
    const bad: unknown[] = [
      null, 42, "text", {}, new Uint8Array(0), new Uint8Array(13), good.subarray(0, 20),
      Uint8Array.of(9, ...good.subarray(1)), Uint8Array.of(1, 7, ...good.subarray(2)),
      Uint8Array.of(3, 255, 255, 255, 255), Uint8Array.of(3, 2, 0, 0, 0, 4, 0, 0, 0),
    ];
    const wrongJson = new Uint8Array(good);
    wrongJson[14] = 0x5b; // "[": an array is not a message
    bad.push(wrongJson);
    for (const b of bad) {
      expect(() => decodeFrames(b)).not.toThrow();
      expect(decodeFrames(b)).toBeUndefined();
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 }), (junk, at, byte) => {
        decodeFrames(junk);
        const m = new Uint8Array(good);
        m[at] = byte;
        decodeFrames(m);
        decodeFrames(Uint8Array.of(3, 1, 0, 0, 0, ...junk));
      }),
      { numRuns: 2000 },
    );
  });

  test("a child keeps serving after binary junk on its IPC channel", async () => {
    const w: Remote<Worker> = new Worker().toDist();
    stops.push(() => w.stop());
    await w.ping();
    const cs = remoteState(w)!.owner as unknown as ChildServer;
    const call = encodeFrame("q", 10_000, { t: "call", oid: w.oid, name: "echo", args: new Uint8Array([255, 255, 255, 255, 1]) })!;
    for (const f of [new Uint8Array(0), new Uint8Array(100).fill(1), Uint8Array.of(3, 255, 255, 255, 255), call, call.subarray(0, 30), Uint8Array.of(1, 9, 0, 0)]) cs.rawSend(f);
    expect(await w.ping()).toBe("pong");
    expect(await w.echo({ still: "fine" })).toEqual({ still: "fine" });
  });
});
