import { childTracker } from "../helpers/children.ts";
import { afterAll, describe, expect, test } from "bun:test";
import { AgentServerNotAliveError, CancelledError, DeadlineExceededError, ResourceExhaustedError, withOptions, type Remote } from "../../src/index.ts";
import type { ChildServer } from "../../src/client/child-server.ts";
import { remoteState } from "../../src/client/proxy-state.ts";
import { encodeValue } from "../../src/core/codec.ts";
import { Worker } from "../fixtures/fault-agents.ts";

const { child, stopAll } = childTracker();
afterAll(stopAll);

describe("child server faults", () => {
  test("kill -9 - a pending async wait rejects with UNAVAILABLE within 1 s", async () => {
    const w = child(new Worker().toDist());
    const pid = await w.pid();
    const r = w.work(60_000);
    await r.taskSource!.accepted;
    const waiting = r.result();
    const t0 = performance.now();
    process.kill(pid, "SIGKILL");
    const e = await waiting.catch((x: any) => x);
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    expect(e.code).toBe("UNAVAILABLE");
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("SIGSTOP - a call with a deadline fails with DEADLINE_EXCEEDED at the deadline; after SIGCONT the late answer goes nowhere", async () => {
    const w = child(new Worker().toDist());
    const pid = await w.pid();
    const fast = withOptions(w, { timeoutMs: 300 });
    process.kill(pid, "SIGSTOP");
    try {
      const t0 = performance.now();
      const e = await fast.echo("late").catch((x: any) => x);
      const took = performance.now() - t0;
      expect(e).toBeInstanceOf(DeadlineExceededError);
      expect(took).toBeGreaterThanOrEqual(290);
      expect(took).toBeLessThan(1000);
      const ea = await fast.work(1).catch((x: any) => x);
      expect(ea).toBeInstanceOf(DeadlineExceededError);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    expect(await w.echo("fresh")).toBe("fresh");
  });

  test("an AbortSignal cancels an async call: CANCELLED here, the signal aborts on the server", async () => {
    const w = child(new Worker().toDist());
    const ctl = new AbortController();
    const r = withOptions(w, { signal: ctl.signal }).untilCancelled();
    await r.taskSource!.accepted;
    const pending = r.result();
    ctl.abort();
    expect(await pending.catch((x: any) => x)).toBeInstanceOf(CancelledError);
    // The server saw the cancellation: the method returned after its signal aborted.
    for (let i = 0; i < 100 && (await w.cancelled) === 0; i++) await w.echo(0);
    expect(await w.cancelled).toBe(1);
  });

  test("an AbortSignal cancels a sync call and reaches the server", async () => {
    const w = child(new Worker().toDist());
    const ctl = new AbortController();
    const r = withOptions(w, { signal: ctl.signal }).syncUntilCancelled();
    await w.echo(0);
    ctl.abort();
    expect(await r.catch((x: any) => x)).toBeInstanceOf(CancelledError);
    for (let i = 0; i < 100 && (await w.cancelled) === 0; i++) await w.echo(0);
    expect(await w.cancelled).toBe(1);
  });

  test("1000 concurrent async calls at capacity 4: at most 4 run, the rest queue or are refused, all settle once, sync calls still answer", async () => {
    const w = child(new Worker().toDist({ capacity: 4, maxQueue: 500 }));
    await w.ping();
    const results = Array.from({ length: 1000 }, () => w.work(5));
    expect(await w.ping()).toBe("pong");
    const settled = await Promise.allSettled(results);
    const ok = settled.filter((s) => s.status === "fulfilled").length;
    const refused = settled.filter((s) => s.status === "rejected" && s.reason instanceof ResourceExhaustedError).length;
    expect(ok + refused).toBe(1000);
    expect(ok).toBeGreaterThanOrEqual(504);
    expect(refused).toBeGreaterThan(0);
    expect(await w.peak).toBe(4);
    expect(await w.done).toBe(ok);
    // Throughput recovers after the burst.
    expect(await w.work(1)).toBe(ok + 1);
  });

  test("hostile frames on the IPC channel leave the child serving", async () => {
    const w = child(new Worker().toDist());
    await w.ping();
    const cs = remoteState(w)!.owner as unknown as ChildServer;
    const junk: unknown[] = [
      null, 42, "text", [], { k: "q" }, { k: "q", i: "x" }, { k: "q", i: 1e300 }, { k: "q", i: 9, r: null },
      { k: "q", i: 10, r: { t: "call", oid: "zz", name: "ping", args: new Uint8Array(3) } },
      { k: "q", i: 11, r: { t: "call", oid: w.oid, name: "echo", args: new Uint8Array([255, 255, 255, 255, 1]) } },
      { k: "q", i: 12, r: { t: "call", oid: w.oid, name: "__proto__", args: encodeValue([]) } },
      { k: "q", i: 13, r: { t: "create", oid: "a".repeat(32), cls: "../../../etc/passwd", args: encodeValue([]) } },
      { k: "x", i: 99 }, { k: "a", i: 1, r: { t: "ok" } }, { k: "unknown" },
    ];
    for (const f of junk) cs.rawSend(f);
    expect(await w.ping()).toBe("pong");
    expect(await w.echo({ still: "fine" })).toEqual({ still: "fine" });
  });
});
