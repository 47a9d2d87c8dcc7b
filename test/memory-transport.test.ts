/**
 * Proxies, references and pipelining over the in-memory transport: the real client core and
 * the real servicer, no processes. Every test ends with the harness's leak check.
 */
import { describe, expect, test } from "bun:test";
import { AgentCallError, AsyncResult, withOptions, type Remote } from "../src/index.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { MemoryTransport } from "../src/client/transports/memory.ts";
import type { Response } from "../src/core/protocol.ts";
import { Cell, gateReached, observed, openGate } from "./fixtures/memory-agents.ts";
import { LeakError, memoryServer } from "./helpers/harness.ts";

const classes = [Cell];

/** A peer that records what it is handed and answers `ok` when told to (or at once). */
function recordingPeer(answer?: Promise<void>) {
  const seen: Array<{ raw: unknown; signal: AbortSignal | undefined }> = [];
  const ok: Response = { t: "ok" };
  return {
    seen,
    ok,
    async handle(raw: unknown, signal?: AbortSignal): Promise<Response> {
      seen.push({ raw, signal });
      await answer;
      return ok;
    },
  };
}

describe("the transport", () => {
  test("requests and answers are structured clones delivered on a later turn", async () => {
    const peer = recordingPeer();
    const t = new MemoryTransport(peer);
    const req = { t: "cancel", task: "a".repeat(32) } as const;
    const answer = t.request(req);
    expect(peer.seen).toHaveLength(0);
    const res = await answer;
    expect(res).toEqual({ t: "ok" });
    expect(res).not.toBe(peer.ok);
    expect(peer.seen[0]!.raw).toEqual(req);
    expect(peer.seen[0]!.raw).not.toBe(req);
    expect(t.count("cancel")).toBe(1);
    expect(t.count()).toBe(1);
  });

  test("a cancelled request rejects CANCELLED at once and its server-side signal aborts", async () => {
    const peer = recordingPeer(new Promise(() => {}));
    const t = new MemoryTransport(peer);
    const ctl = new AbortController();
    const p = t.request({ t: "alive" }, { signal: ctl.signal });
    await t.served("alive");
    const serverSide = peer.seen[0]!.signal!;
    const told = new Promise((r) => serverSide.addEventListener("abort", r, { once: true }));
    ctl.abort();
    await expect(p).rejects.toMatchObject({ code: "CANCELLED" });
    await told;
    expect(t.pending).toBe(0);
  });

  test("fenced requests are overtaken by others and arrive in order on release", async () => {
    const peer = recordingPeer();
    const t = new MemoryTransport(peer);
    const release = t.fenceRequests((r) => r.t === "call");
    const calls = [1, 2].map((n) => t.request({ t: "call", oid: "o", name: `m${n}`, args: new Uint8Array(0) }));
    await t.request({ t: "alive" });
    expect(peer.seen.map((s) => (s.raw as { t: string }).t)).toEqual(["alive"]);
    expect(t.held).toBe(2);
    release();
    await Promise.all(calls);
    expect(peer.seen.map((s) => (s.raw as { name?: string }).name ?? "-")).toEqual(["-", "m1", "m2"]);
  });
});

describe("calls", () => {
  test("a sync call answers with its value and an attribute read reads the remote field", async () => {
    await using h = await memoryServer({ classes });
    await using c = h.toDist(Cell, 1);
    expect(await c.add(2)).toBe(3);
    expect(await c.n).toBe(3);
    expect(h.transport.count("create")).toBe(1);
  });

  test("an async call returns an AsyncResult at once and its value arrives", async () => {
    await using h = await memoryServer({ classes });
    await using c = h.toDist(Cell, 10);
    const r = c.addLater(5);
    expect(r).toBeInstanceOf(AsyncResult);
    expect(await r).toBe(15);
    // Re-readable: the outcome is cached, no second wait goes out.
    const waits = h.transport.count("wait");
    expect(await r).toBe(15);
    expect(h.transport.count("wait")).toBe(waits);
  });

  test("arguments and answers are copies: no object identity crosses the transport", async () => {
    await using h = await memoryServer({ classes });
    await using c = h.toDist(Cell, 0);
    const arg = { deep: [1, 2] };
    const back = await c.echo(arg);
    expect(back).toEqual(arg);
    expect(back).not.toBe(arg);
  });

  test("a remote error keeps its name, message and stack", async () => {
    await using h = await memoryServer({ classes });
    await using c = h.toDist(Cell, 0);
    const e = await c.fail("no such thing").then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(AgentCallError);
    const remote = (e as AgentCallError).remote;
    expect(remote.name).toBe("TypeError");
    expect(remote.message).toBe("no such thing");
    expect(remote.stack).toContain("memory-agents.ts");
    expect((e as AgentCallError).host).toBe(h.conn.where.host);
  });
});

describe("references", () => {
  test("a pending AsyncResult passed to another call is resolved by the server", async () => {
    await using h = await memoryServer({ classes });
    await using c = h.toDist(Cell, 1);
    expect(await c.plus(c.addLater(1), 10)).toBe(12);
  });

  test("a chain across two servers: B resolves a reference to A's task itself", async () => {
    await using ha = await memoryServer({ classes });
    await using hb = await memoryServer({ classes });
    await using a = ha.toDist(Cell, 1);
    await using b = hb.toDist(Cell, 100);
    const x = a.addLater(5);
    const y = b.plus(x, 1000);
    const z = a.plus(y, 1);
    expect(await z).toBe(1007);
    // B fetched A's result itself: the client never read x.
    expect(x.settled).toBeUndefined();
  });

  test("a fresh reference (the call not yet accepted) waits for its task to appear", async () => {
    await using ha = await memoryServer({ classes });
    await using hb = await memoryServer({ classes });
    await using a = ha.toDist(Cell, 1);
    await using b = hb.toDist(Cell, 100);
    await Promise.all([a.get(), b.get()]);
    // A's calls are held: the task does not exist on A when B asks for it.
    const release = ha.transport.fenceRequests((r) => r.t === "call");
    const x = a.addLater(5);
    const waitArrived = ha.transport.served("wait");
    const y = b.plus(x, 1000);
    await waitArrived;
    // The wait is parked on A (its task unknown there yet), not refused NOT_FOUND.
    expect(x.isAccepted).toBe(false);
    expect(ha.transport.serving).toBe(1);
    release();
    expect(await y).toBe(1006);
  });

  test("a proxy passed as an argument is called by the receiving server and comes back as the same proxy", async () => {
    await using ha = await memoryServer({ classes });
    await using hb = await memoryServer({ classes });
    await using a = ha.toDist(Cell, 7);
    await using b = hb.toDist(Cell, 100);
    expect(await b.readOther(a)).toBe(107);
    const back = (await b.echo(a)) as unknown as Remote<Cell>;
    expect(back.oid).toBe(a.oid);
    expect(remoteState(back)?.conn).toBe(ha.conn);
    expect(await back.add(1)).toBe(8);
  });

  test("a server-held object returned by value arrives as a proxy to it", async () => {
    await using h = await memoryServer({ classes });
    await using c = h.toDist(Cell, 0);
    const spawned = (await c.spawn(41)) as unknown as Remote<Cell>;
    expect(remoteState(spawned)).toBeDefined();
    expect(await spawned.add(1)).toBe(42);
    await spawned.delete();
  });
});

describe("deadlines and cancellation", () => {
  test("a deadline rejects DEADLINE_EXCEEDED and aborts the server-side call", async () => {
    await using h = await memoryServer({ classes });
    await using c = h.toDist(Cell, 0);
    await c.get();
    const key = `deadline-${Math.random()}`;
    await expect(withOptions(c, { timeoutMs: 20 }).held(key).result()).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    await gateReached(key);
    // A round trip later, the method has seen its signal abort.
    await c.get();
    expect(observed.get(key)).toBe("aborted");
  });

  test("a transport deadline holds while answers are fenced, and the late answer is dropped", async () => {
    await using h = await memoryServer({ classes });
    const release = h.transport.fence();
    await expect(h.transport.request({ t: "alive" }, { timeoutMs: 5 })).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    release();
  });

  test("cancelling an accepted async call rejects CANCELLED and the method's signal aborts", async () => {
    await using h = await memoryServer({ classes });
    await using c = h.toDist(Cell, 0);
    const ctl = h.controller();
    const key = `cancel-${Math.random()}`;
    const r = withOptions(c, { signal: ctl.signal }).heldAsync(key);
    const outcome = r.result();
    await gateReached(key);
    // A round trip behind the call: its acceptance has arrived.
    await c.get();
    expect(r.isAccepted).toBe(true);
    const cancelArrived = h.transport.served("cancel");
    ctl.abort();
    await expect(outcome).rejects.toMatchObject({ code: "CANCELLED" });
    await cancelArrived;
    await c.get();
    expect(observed.get(key)).toBe("aborted");
  });

  // Found by this harness: the call request carries the signal, so a cancel while its answer
  // is on the way rejects the call itself; the AsyncResult must still send `cancel`, or the
  // task the server did accept runs on.
  test("cancelling an async call before its acceptance arrives still cancels the task", async () => {
    await using h = await memoryServer({ classes, drainMs: 50 });
    await using c = h.toDist(Cell, 0);
    await c.get();
    const ctl = h.controller();
    const key = `early-cancel-${Math.random()}`;
    const release = h.transport.fence();
    const outcome = withOptions(c, { signal: ctl.signal }).heldAsync(key).result();
    await gateReached(key);
    ctl.abort();
    await expect(outcome).rejects.toMatchObject({ code: "CANCELLED" });
    release();
    await c.get();
    expect(observed.get(key)).toBe("aborted");
  });

  test("an already aborted signal rejects CANCELLED without sending", async () => {
    await using h = await memoryServer({ classes });
    const ctl = h.controller();
    ctl.abort();
    await expect(h.transport.request({ t: "alive" }, { signal: ctl.signal })).rejects.toMatchObject({ code: "CANCELLED" });
    expect(h.servicer.capacity.running).toBe(0);
  });
});

describe("broken links", () => {
  test("a broken link rejects pending calls UNAVAILABLE at once, and later ones too", async () => {
    // The async call's task ran and finished, but its caller is cut off: nobody reads it.
    await using h = await memoryServer({ classes, allowUnread: true });
    const c = h.toDist(Cell, 0);
    await c.get();
    const release = h.transport.fence();
    const sync = c.get();
    const later = c.addLater(1);
    let broken = 0;
    const prev = h.transport.onBroken;
    h.transport.onBroken = (e) => {
      broken++;
      prev?.(e);
    };
    h.transport.breakLink();
    h.transport.breakLink();
    await expect(sync.result()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await expect(later.result()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await expect(c.get().result()).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(broken).toBe(1);
    expect(h.conn.broken?.name).toBe("AgentServerNotAliveError");
    release();
    // The object cannot be deleted through a dead link: clean up on the server itself.
    await h.servicer.handle({ t: "delete", oid: c.oid });
  });

  test("abort() rejects everything pending with its reason and calls onBroken once", async () => {
    const never = { handle: () => new Promise<Response>(() => {}) };
    const t = new MemoryTransport(never);
    const seen: Error[] = [];
    t.onBroken = (e) => seen.push(e);
    const p = t.request({ t: "alive" });
    const reason = new Error("closing");
    t.abort(reason);
    t.abort(new Error("again"));
    await expect(p).rejects.toBe(reason);
    await expect(t.request({ t: "alive" })).rejects.toBe(reason);
    expect(seen).toEqual([reason]);
    expect(t.pending).toBe(0);
  });
});

describe("backpressure", () => {
  test("many async calls into a small result pool all arrive", async () => {
    await using h = await memoryServer({ classes, maxPoolSize: 4, capacity: 4 });
    await using c = h.toDist(Cell, 0);
    const rs = Array.from({ length: 200 }, (_, i) => c.addLater(i));
    // Nobody reads yet: the pool fills with unread results and refuses the rest for a while.
    await c.get();
    const vs = await Promise.all(rs);
    expect(vs).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(h.transport.count("call")).toBeGreaterThan(200); // some were refused and resubmitted
  });
});

describe("leak check", () => {
  test("an object left on the server fails the check", async () => {
    const h = await memoryServer({ classes });
    const c = h.toDist(Cell, 0);
    await c.get();
    await expect(h[Symbol.asyncDispose]()).rejects.toThrow(/1 object\(s\) left/);
  });

  test("a listener left on a call's signal fails the check", async () => {
    const h = await memoryServer({ classes });
    const c = h.toDist(Cell, 0);
    expect(await c.leakListener()).toBe(1);
    await c.delete();
    const e = await h[Symbol.asyncDispose]().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(LeakError);
    expect((e as LeakError).leaks).toEqual(["1 abort listener(s) never removed"]);
  });

  test("a task that never finishes and a request never answered fail the check", async () => {
    const h = await memoryServer({ classes, drainMs: 20 });
    const c = h.toDist(Cell, 0);
    await c.get();
    const key = `stuck-${Math.random()}`;
    const r = c.heldAsync(key);
    r.catch(() => {});
    await gateReached(key);
    await c.delete();
    const release = h.transport.fence();
    const stuck = h.transport.request({ t: "alive" });
    stuck.catch(() => {});
    const e = await h[Symbol.asyncDispose]().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(LeakError);
    const leaks = (e as LeakError).leaks.join("; ");
    expect(leaks).toContain("task(s) never finished");
    expect(leaks).toContain("request(s) never answered");
    release();
    openGate(key);
  });
});
