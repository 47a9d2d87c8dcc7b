/**
 * Streams over the in-memory transport: the real client core and servicer, no processes.
 * Every test ends with the harness's leak check (no stream, call or request left behind).
 */
import { describe, expect, test } from "bun:test";
import { AgentCallError, CancelledError, DeadlineExceededError, RemoteStream, withOptions } from "../src/index.ts";
import { Streamer } from "./fixtures/stream-agents.ts";
import { memoryServer } from "./helpers/harness.ts";

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
