/**
 * Streams over the in-memory transport: the real client core and servicer, no processes.
 * Every test ends with the harness's leak check (no stream, call or request left behind).
 */
import { describe, expect, test } from "bun:test";
import { AgentCallError, CancelledError, DeadlineExceededError, RemoteStream, withOptions } from "../src/index.ts";
import { Streamer } from "./fixtures/stream-agents.ts";
import { memoryServer } from "./helpers/harness.ts";
import { encodeValue } from "../src/core/codec.ts";

const classes = [Streamer];

async function collect<T>(s: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of s) out.push(x);
  return out;
}

describe("streams in memory", () => {
  test("an async generator method returns a RemoteStream at once and yields every item in order", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    const st = s.count(100);
    expect(st).toBeInstanceOf(RemoteStream);
    expect(await collect(st)).toEqual([...Array(100).keys()]);
    expect(await collect(s.count(0))).toEqual([]);
  });

  test("the first item arrives before the generator ends", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    const it = s.gated();
    expect(await it.next()).toEqual({ value: "first", done: false });
    const last = it.next();
    await s.open();
    expect(await last).toEqual({ value: "last", done: false });
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });

  test("break ends the stream: the generator's finally runs on the server with its signal aborted", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    for await (const x of s.endless()) if (x === 5) break;
    for (let i = 0; i < 50 && (await s.finallyRan) === 0; i++) await new Promise((r) => setImmediate(r));
    expect(await s.finallyRan).toBe(1);
    expect(await s.abortedInFinally).toBe(true);
  });

  test("the producer runs ahead by at most its window when the consumer stops reading", async () => {
    await using h = await memoryServer({ classes, streamWindow: 4 });
    await using s = h.toDist(Streamer);
    const it = s.endless();
    expect((await it.next()).value).toBe(0);
    // Let the producer run as far as it may.
    for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r));
    const produced = await s.produced;
    // Server window (4) + what the client holds (one batch of ≤ 32 and one more pull of ≤ 32)... with window 4: ≤ 4 per pull.
    expect(produced).toBeLessThanOrEqual(4 + 32 + 32 + 1);
    expect(h.servicer.capacity.running).toBe(0);
    await it.return();
  });

  test("a producing stream holds one capacity slot; a paused one holds none and blocks nothing", async () => {
    await using h = await memoryServer({ classes, capacity: 1, streamWindow: 4 });
    await using s = h.toDist(Streamer);
    const it = s.gated();
    expect((await it.next()).value).toBe("first");
    // The generator is producing (waiting inside for its gate): it holds the one slot.
    expect(h.servicer.capacity.running).toBe(1);
    const queued = s.sumLater(s.count(3));
    await queued.taskSource!.accepted;
    // Queued behind it: the producer of count(3), then sumLater.
    expect(h.servicer.capacity.queued).toBe(2);
    await s.open();
    expect((await it.next()).value).toBe("last");
    expect(await queued).toBe(3);
    expect((await it.next()).done).toBe(true);
    // Paused by its window: the slot is free for other calls (which here pull a stream too).
    const endless = s.endless();
    expect((await endless.next()).value).toBe(0);
    expect(await s.sumLater(s.count(4))).toBe(6);
    await endless.return();
  });

  test("cancel() before reading and await using stop the producer; a dropped stream id is NOT_FOUND afterwards", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    const st = s.endless();
    await st.cancel();
    expect((await st.next()).done).toBe(true);
    {
      await using u = s.endless();
      expect((await u.next()).value).toBe(0);
    }
    for (let i = 0; i < 50 && (await s.finallyRan) < 1; i++) await new Promise((r) => setImmediate(r));
    expect(await s.finallyRan).toBeGreaterThanOrEqual(1);
    const res = await h.conn.send({ t: "next", stream: st.id, max: 1, timeoutMs: 0 });
    expect(res.t === "error" && res.error.code).toBe("NOT_FOUND");
  });

  test("a call of a stream method without a stream id is refused UNIMPLEMENTED, nothing starts", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    await s.pid();
    const res = await h.conn.send({ t: "call", oid: s.oid, name: "count", args: encodeValue([3]) });
    expect(res.t === "error" && res.error.code).toBe("UNIMPLEMENTED");
    expect(h.servicer.openStreams).toBe(0);
  });

  test("a signal aborted while the call is on its way still stops the stream on the server", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    await s.pid();
    const ctl = h.controller();
    const st = withOptions(s, { signal: ctl.signal }).endless();
    ctl.abort();
    expect(await st.next().catch((x) => x)).toBeInstanceOf(CancelledError);
  });

  test("an exception in the generator arrives after every item before it, as AgentCallError", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    const got: number[] = [];
    const e = await (async () => {
      for await (const x of s.failAfter(40)) got.push(x);
    })().catch((x) => x);
    expect(got).toEqual([...Array(40).keys()]);
    expect(e).toBeInstanceOf(AgentCallError);
    expect(e.remote.name).toBe("RangeError");
    expect(e.remote.message).toBe("boom after 40");
  });

  test("items are codec values; @streamFunc marks a method returning an AsyncIterable", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    const v = await collect(s.values());
    expect(v[0]).toEqual(new Map([["a", 1]]));
    expect(v[1]).toEqual(new Uint8Array([1, 2, 3]));
    expect(v[2]).toEqual({ nested: [new Date(5), 2n] });
    expect(await collect(s.letters("abc"))).toEqual(["a", "b", "c"]);
  });

  test("a stream handed to another call is pulled by the server itself", async () => {
    await using h = await memoryServer({ classes });
    await using a = h.toDist(Streamer);
    await using b = h.toDist(Streamer);
    expect(await b.sum(a.count(10))).toBe(45);
    expect(await b.sumLater(a.count(5))).toBe(10);
    expect(await collect(b.doubled(a.count(3)))).toEqual([0, 2, 4]);
  });

  test("a stalled stream honours timeoutMs per item (DEADLINE_EXCEEDED) and a signal (CANCELLED)", async () => {
    await using h = await memoryServer({ classes });
    await using s = h.toDist(Streamer);
    const it = withOptions(s, { timeoutMs: 100 }).stall();
    expect((await it.next()).value).toBe(1);
    expect(await it.next().catch((x) => x)).toBeInstanceOf(DeadlineExceededError);
    const ctl = h.controller();
    const it2 = withOptions(s, { signal: ctl.signal }).stall();
    expect((await it2.next()).value).toBe(1);
    const p = it2.next().catch((x) => x);
    ctl.abort();
    expect(await p).toBeInstanceOf(CancelledError);
  });
});
