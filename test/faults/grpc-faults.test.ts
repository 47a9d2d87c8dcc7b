/**
 * Faults of independent (gRPC) servers, each a real subprocess (scenarios F3–F5, O1, L1–L3):
 * kill -9, SIGSTOP, SIGTERM, cancellation, a capacity flood, deleted objects and stopped
 * servers. Nothing waits on a sleep: tests wait on the server's own events (its stdout, or a
 * method that answers when something happened inside it).
 */
import { afterAll, describe, expect, test } from "bun:test";
import {
  AgentServerNotAliveError,
  CancelledError,
  DeadlineExceededError,
  NotFoundError,
  ResourceExhaustedError,
  RpcClient,
  connect,
  withOptions,
} from "../../src/index.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { cliServer, subServer } from "../fixtures/fault-harness.ts";
import { Sturdy } from "../fixtures/fault-server/agents.ts";
import { rejection } from "../helpers/grpc.ts";

afterAll(() => closeAllConnections());

describe("kill -9 of an independent server (F3)", () => {
  test("a sync call and an async wait in flight fail UNAVAILABLE within 1 s; later calls fail fast; after a restart on the same port a new proxy works and old ids are NOT_FOUND", async () => {
    const first = await subServer();
    let port: number;
    let w: ReturnType<typeof Sturdy.toDist<Sturdy, []>>;
    try {
      port = first.port;
      w = Sturdy.toDist(first.conf);
      expect(await w.ping()).toBe("pong");
      const sync = w.hang();
      const fut = w.hangAsync();
      await fut.taskSource!.accepted;
      const waiting = fut.result();
      // Both are running inside the server now.
      expect(await w.atLeast("hanging", 2)).toBe(2);
      const t0 = performance.now();
      process.kill(first.pid, "SIGKILL");
      const [es, ea] = await Promise.all([rejection(sync), rejection(waiting)]);
      const took = performance.now() - t0;
      for (const e of [es, ea]) {
        expect(e).toBeInstanceOf(AgentServerNotAliveError);
        expect(e.code).toBe("UNAVAILABLE");
      }
      expect(took).toBeLessThan(1000);
      await first.launcher.waitUntilTerminate();
      // Down: every later call fails UNAVAILABLE at once (no waitForReady, no hang in backoff).
      for (const attempt of [() => w.ping(), () => w.work(1), () => Sturdy.toDist(first.conf).ping(), () => new RpcClient(first.host, port).getAgentList()]) {
        const t1 = performance.now();
        const e = await rejection(attempt());
        expect(e.code).toBe("UNAVAILABLE");
        expect(performance.now() - t1).toBeLessThan(1000);
      }
      expect(await new RpcClient(first.host, port).isAlive()).toBe(false);
    } finally {
      await first[Symbol.asyncDispose]();
    }
    // The same port again, this time from the CLI: a new proxy works at once.
    await using again = await cliServer([], { port: port! });
    expect(again.port).toBe(port);
    const fresh = Sturdy.toDist({ host: first.host, port: port! });
    expect(await fresh.ping()).toBe("pong");
    expect(await fresh.work(1)).toBe(1);
    // The state died with the old process: its object ids are unknown here.
    const old = await rejection(w.ping());
    expect(old).toBeInstanceOf(NotFoundError);
    expect(old.code).toBe("NOT_FOUND");
  });
});

describe("a hung server (F4)", () => {
  test("SIGSTOP: calls with a deadline fail DEADLINE_EXCEEDED at the deadline, sync and async; after SIGCONT late answers go nowhere", async () => {
    await using s = await subServer();
    const w = Sturdy.toDist(s.conf);
    expect(await w.ping()).toBe("pong");
    // An async call accepted before the server hangs: its wait runs into the deadline.
    const accepted = withOptions(w, { timeoutMs: 600 }).work(60_000);
    await accepted.taskSource!.accepted;
    const acceptedAt = performance.now();
    process.kill(s.pid, "SIGSTOP");
    try {
      const fast = withOptions(w, { timeoutMs: 300 });
      for (const call of [() => fast.echo("late"), () => fast.work(1)]) {
        const t0 = performance.now();
        const e = await rejection(call());
        const took = performance.now() - t0;
        expect(e).toBeInstanceOf(DeadlineExceededError);
        expect(e.code).toBe("DEADLINE_EXCEEDED");
        expect(took).toBeGreaterThanOrEqual(290);
        expect(took).toBeLessThan(1000);
      }
      const e = await rejection(accepted);
      expect(e.code).toBe("DEADLINE_EXCEEDED");
      expect(performance.now() - acceptedAt).toBeLessThan(1500);
    } finally {
      process.kill(s.pid, "SIGCONT");
    }
    // The late answers are discarded: the next call gets its own.
    expect(await w.echo("fresh")).toBe("fresh");
    expect(await w.ping()).toBe("pong");
  });
});

describe("cancellation over gRPC", () => {
  test("an AbortSignal cancels a sync call and an async call: CANCELLED here, currentCall().signal aborts on the server", async () => {
    await using s = await subServer();
    const w = Sturdy.toDist(s.conf);
    const syncCtl = new AbortController();
    const sync = withOptions(w, { signal: syncCtl.signal }).hang();
    expect(await w.atLeast("hanging", 1)).toBe(1);
    syncCtl.abort();
    expect(await rejection(sync)).toBeInstanceOf(CancelledError);
    expect(await w.atLeast("cancelled", 1)).toBe(1);

    const asyncCtl = new AbortController();
    const fut = withOptions(w, { signal: asyncCtl.signal }).hangAsync();
    await fut.taskSource!.accepted;
    const pending = fut.result();
    expect(await w.atLeast("hanging", 1)).toBe(1);
    asyncCtl.abort();
    const e = await rejection(pending);
    expect(e).toBeInstanceOf(CancelledError);
    expect(e.code).toBe("CANCELLED");
    expect(await w.atLeast("cancelled", 2)).toBe(2);
    expect(await w.hanging).toBe(0);
  });
});

describe("SIGTERM (F5)", () => {
  test("as-server: new calls are refused UNAVAILABLE, calls in flight (sync and async) finish, exit 0", async () => {
    await using srv = await cliServer();
    const conf = { host: srv.host, port: srv.port };
    const w = Sturdy.toDist(conf);
    expect(await w.ping()).toBe("pong");
    const sync = w.nap(400, "sync-1");
    const fut = w.napAsync(400, "async-1");
    await fut.taskSource!.accepted;
    const waited = fut.result();
    await srv.stdout.waitFor(/nap sync-1 entered/);
    await srv.stdout.waitFor(/nap async-1 entered/);
    // The wait for the async result went out before this call on the same connection.
    expect(await w.ping()).toBe("pong");
    const t0 = performance.now();
    srv.proc.kill("SIGTERM");
    await srv.stdout.waitFor(/SIGTERM: draining/);
    const refused = await rejection(w.ping());
    expect(refused).toBeInstanceOf(AgentServerNotAliveError);
    expect(refused.code).toBe("UNAVAILABLE");
    expect((await rejection(Sturdy.toDist(conf).ping())).code).toBe("UNAVAILABLE");
    expect(await sync).toBe("sync-1");
    expect(await waited).toBe("async-1");
    expect(await srv.proc.exited).toBe(0);
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  test("as-server --shutdown-grace-ms: a call still running when the grace period ends is cut, and the server exits 0", async () => {
    await using srv = await cliServer(["--shutdown-grace-ms", "300"]);
    const w = Sturdy.toDist({ host: srv.host, port: srv.port });
    const stuck = w.hang();
    expect(await w.atLeast("hanging", 1)).toBe(1);
    const t0 = performance.now();
    srv.proc.kill("SIGTERM");
    const e = await rejection(stuck);
    const took = performance.now() - t0;
    expect(["UNAVAILABLE", "CANCELLED"]).toContain(e.code!);
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(2000);
    expect(await srv.proc.exited).toBe(0);
  });
});

describe("capacity over gRPC (O1)", () => {
  test("1000 concurrent async calls at capacity 4: at most 4 run, the queue overflows with RESOURCE_EXHAUSTED, each call settles once, isAlive answers meanwhile", async () => {
    await using s = await subServer({ capacity: 4, maxQueue: 500 });
    const w = Sturdy.toDist(s.conf);
    expect(await w.ping()).toBe("pong");
    let settlements = 0;
    const calls = Array.from({ length: 1000 }, () => {
      const r = w.work(5);
      r.then(
        () => settlements++,
        () => settlements++,
      );
      return r;
    });
    // Management and sync calls answer while the burst is queued.
    const client = new RpcClient(s.host, s.port);
    expect(await client.isAlive()).toBe(true);
    expect(await w.ping()).toBe("pong");
    const busy = await client.getServerInfo();
    expect(busy.pending).toBeGreaterThan(0);
    const settled = await Promise.allSettled(calls);
    const ok = settled.filter((x) => x.status === "fulfilled").length;
    const refused = settled.filter((x) => x.status === "rejected" && x.reason instanceof ResourceExhaustedError && x.reason.code === "RESOURCE_EXHAUSTED").length;
    expect(ok + refused).toBe(1000);
    expect(settlements).toBe(1000);
    expect(ok).toBeGreaterThanOrEqual(504);
    expect(refused).toBeGreaterThan(0);
    // Measured inside the object: never more than 4 at once, and every success ran exactly once.
    expect(await w.peak).toBe(4);
    expect(await w.done).toBe(ok);
    const values = settled.flatMap((x) => (x.status === "fulfilled" ? [x.value] : []));
    expect(new Set(values).size).toBe(ok);
    // Throughput recovers after the burst.
    expect(await w.work(1)).toBe(ok + 1);
    expect((await client.getServerInfo()).pending).toBe(0);
  });
});

describe("objects and servers that are gone (L1–L3)", () => {
  test("a deleted object is NOT_FOUND for every proxy, deleting twice is harmless, a call in flight during the delete completes", async () => {
    await using s = await subServer();
    const client = new RpcClient(s.host, s.port);
    const w = Sturdy.toDist(s.conf);
    expect(await w.ping()).toBe("pong");
    const other = connect<Sturdy>({ ...s.conf, oid: w.oid });
    expect(await other.ping()).toBe("pong");
    const inFlight = w.nap(100, "during-delete");
    expect(await w.atLeast("napping", 1)).toBe(1);
    await w.delete();
    await w.delete();
    expect(await client.deleteAgent(w.oid)).toBe(true);
    expect(await inFlight).toBe("during-delete");
    const mine = await rejection(w.ping());
    expect(mine).toBeInstanceOf(NotFoundError);
    const theirs = await rejection(other.ping());
    expect(theirs).toBeInstanceOf(NotFoundError);
    expect(theirs.message).toContain(w.oid);
    expect((await client.getAgentList()).some((a) => a.id === w.oid)).toBe(false);
  });

  test("calls after RpcClient.stop() and after launcher shutdown() fail UNAVAILABLE, fast", async () => {
    const a = await subServer();
    const b = await subServer();
    try {
      const wa = Sturdy.toDist(a.conf);
      const wb = Sturdy.toDist(b.conf);
      expect(await wa.ping()).toBe("pong");
      expect(await wb.ping()).toBe("pong");
      expect(await new RpcClient(a.host, a.port).stop()).toBe(true);
      await a.launcher.waitUntilTerminate();
      await b.launcher.shutdown();
      for (const call of [() => wa.ping(), () => wb.ping(), () => wa.work(1), () => new RpcClient(b.host, b.port).getServerInfo()]) {
        const t0 = performance.now();
        const e = await rejection(call());
        expect(e).toBeInstanceOf(AgentServerNotAliveError);
        expect(performance.now() - t0).toBeLessThan(1000);
      }
      expect(a.alive()).toBe(false);
      expect(b.alive()).toBe(false);
    } finally {
      await a[Symbol.asyncDispose]();
      await b[Symbol.asyncDispose]();
    }
  });
});
