/**
 * Nothing lost, nothing hangs: async results survive any load (backpressure instead of
 * eviction), every call settles on a silent peer, errors reach chained readers when they
 * happen, results dropped unread are released, and a client process exits when its work is
 * done. Real servers: `launch({ inSubprocess: true })` gRPC servers and child servers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  AgentServerError,
  AsyncResult,
  DeadlineExceededError,
  ResourceExhaustedError,
  RetryFixedTimes,
  RpcAgentServerLauncher,
  RpcClient,
  connect,
  withOptions,
  type Remote,
} from "../src/index.ts";
import { Worker } from "./fixtures/settle-agents.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { LocalPool } from "../src/server/pool/local.ts";
import { Servicer } from "../src/server/servicer.ts";
import { encodeValue } from "../src/core/codec.ts";
import { decodeValue } from "../src/core/codec-decode.ts";
import { randomId } from "../src/core/ids.ts";

const fixture = new URL("./fixtures/settle-agents.ts", import.meta.url).pathname;

/** Run `total` calls of `call` with `window` in flight; each outcome is recorded once. */
async function flood<T>(total: number, window: number, call: (i: number) => PromiseLike<T>): Promise<{ values: T[]; errors: unknown[] }> {
  const values: T[] = [];
  const errors: unknown[] = [];
  let next = 0;
  const lane = async () => {
    while (next < total) {
      const i = next++;
      try {
        values.push(await call(i));
      } catch (e) {
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  return { values, errors };
}

function codes(errors: unknown[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of errors) {
    const k = (e as AgentServerError).code ?? String(e);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** `n` results of `call` held unread, until `drop()`. */
function holdUnread(call: () => AsyncResult<unknown>, n: number): { accepted(): boolean; drop(): void } {
  let held: AsyncResult<unknown>[] | undefined = Array.from({ length: n }, call);
  return {
    accepted: () => held?.every((r) => r.isAccepted) ?? true,
    drop: () => {
      held = undefined;
    },
  };
}

/** 1..n, each exactly once? */
function exactlyOnce(values: number[], n: number): boolean {
  if (values.length !== n) return false;
  const seen = new Uint8Array(n + 1);
  for (const v of values) {
    if (!Number.isInteger(v) || v < 1 || v > n || seen[v]) return false;
    seen[v] = 1;
  }
  return true;
}

describe("under load, with a small result pool", () => {
  let small: RpcAgentServerLauncher;
  beforeAll(async () => {
    small = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], maxPoolSize: 512, shutdownGraceMs: 500 });
    await small.launch({ inSubprocess: true });
  });
  afterAll(() => small.shutdown());

  test("gRPC: 20,000 async calls with 4,096 in flight into a 512-result pool all arrive, each exactly once and right", async () => {
    const w = Worker.toDist({ host: small.host, port: small.port });
    const { values, errors } = await flood(20_000, 4096, () => w.inc());
    expect(codes(errors)).toEqual({});
    expect(exactlyOnce(values, 20_000)).toBe(true);
  }, 120_000);

  test("gRPC, backpressure off: the excess is refused RESOURCE_EXHAUSTED at once, never NOT_FOUND, and what was accepted arrives", async () => {
    // Not inline: every result stays unread on the server until its wait reads it, so the pool fills.
    const w = withOptions(Worker.toDist({ host: small.host, port: small.port }), { backpressure: false, inline: false });
    const { values, errors } = await flood(8192, 4096, () => w.inc());
    const seen = codes(errors);
    expect(Object.keys(seen).filter((k) => k !== "RESOURCE_EXHAUSTED")).toEqual([]);
    expect(seen.RESOURCE_EXHAUSTED).toBeGreaterThan(0);
    const refusal = errors[0] as ResourceExhaustedError;
    expect(refusal).toBeInstanceOf(ResourceExhaustedError);
    expect(refusal.message).toContain("maxPoolSize 512");
    expect(refusal.retryAfterMs).toBeGreaterThan(0);
    expect(values.length + errors.length).toBe(8192);
    expect(new Set(values).size).toBe(values.length);
  }, 60_000);

  test("gRPC, inline results (the default): 8,192 calls with 4,096 in flight into a 512-result pool, backpressure off, are never refused: each result is read with its call's answer", async () => {
    const w = withOptions(Worker.toDist({ host: small.host, port: small.port }), { backpressure: false });
    const { values, errors } = await flood(8192, 4096, () => w.inc());
    expect(codes(errors)).toEqual({});
    expect(values.length).toBe(8192);
    expect(new Set(values).size).toBe(8192);
  }, 60_000);

  test("child mode: 20,000 async calls with 4,096 in flight into a 512-result pool all arrive, each exactly once and right", async () => {
    await using w = new Worker().toDist({ maxPoolSize: 512 });
    const { values, errors } = await flood(20_000, 4096, () => w.inc());
    expect(codes(errors)).toEqual({});
    expect(exactlyOnce(values, 20_000)).toBe(true);
  }, 120_000);
});

describe("busy is not dead", () => {
  let server: RpcAgentServerLauncher;
  beforeAll(async () => {
    server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], shutdownGraceMs: 500, capacity: 1000 });
    await server.launch({ inSubprocess: true });
  });
  afterAll(() => server.shutdown());

  test("a task that outlasts many server-side waits still arrives (no retry strategy: wait while the server lives)", async () => {
    const w = Worker.toDist({ host: server.host, port: server.port, maxTimeoutSeconds: 0.05 });
    // 40 waits of 50 ms: more than the old default strategy's 21 attempts.
    expect(await w.slow(2000)).toBe(2000);
  });

  test("a retry strategy the caller chose still bounds the wait", async () => {
    const w = Worker.toDist({ host: server.host, port: server.port, maxTimeoutSeconds: 0.05, retryStrategy: new RetryFixedTimes({ maxRetries: 2 }) });
    const e = await w.slow(3000).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DeadlineExceededError);
  });

  test("600 parked waits on one connection do not hold back a sync call", async () => {
    const w = Worker.toDist({ host: server.host, port: server.port });
    const tasks = Array.from({ length: 600 }, () => w.slow(1500));
    const reads: Promise<number>[] = [];
    for (const t of tasks) {
      // One wait per turn of the event loop: none shares a batch with another.
      reads.push(t.result());
      await new Promise((r) => setImmediate(r));
    }
    const t0 = performance.now();
    expect(await w.ping()).toBe("pong");
    expect(performance.now() - t0).toBeLessThan(1000);
    expect((await Promise.all(reads)).every((v) => v === 1500)).toBe(true);
  });
});

describe("every call settles on a silent peer", () => {
  let silent: { port: number; stop(closeActive?: boolean): void };
  beforeAll(() => {
    // Accepts TCP connections and never says a word.
    silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {}, open() {} } });
  });
  afterAll(() => silent.stop(true));

  test("a call with timeoutMs 500 settles DEADLINE_EXCEEDED within 1 s", async () => {
    const p = withOptions(connect<{ foo(n: number): number }>({ host: "127.0.0.1", port: silent.port, oid: "silent-a" }), { timeoutMs: 500 });
    const t0 = performance.now();
    const e = await p.foo(1).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DeadlineExceededError);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("a plain call settles UNAVAILABLE within the default connect deadline (5 s, as isAlive)", async () => {
    const t0 = performance.now();
    const e = (await new RpcClient("127.0.0.1", silent.port).getAgentList().catch((x: unknown) => x)) as AgentServerError;
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.message).toContain("no connection within 5000 ms");
    expect(performance.now() - t0).toBeLessThan(7_000);
  }, 20_000);
});

describe("errors arrive when they happen", () => {
  let a: RpcAgentServerLauncher;
  let b: RpcAgentServerLauncher;
  beforeAll(async () => {
    a = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], shutdownGraceMs: 500 });
    b = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], shutdownGraceMs: 500 });
    await Promise.all([a.launch({ inSubprocess: true }), b.launch({ inSubprocess: true })]);
  });
  afterAll(() => Promise.all([a.shutdown(), b.shutdown()]));

  const lateBy = (e: unknown) => Date.now() - Number(/failed at (\d+)/.exec((e as Error).message)?.[1]);

  test("4,096 chains of 10 agents over 2 servers, all in flight at once, each arrive right (no slot or pool deadlock)", async () => {
    const agents = Array.from({ length: 10 }, (_, i) => Worker.toDist({ host: (i % 2 ? b : a).host, port: (i % 2 ? b : a).port }));
    const { values, errors } = await flood(4096, 4096, () => {
      let r: unknown = 0;
      for (const w of agents) r = w.add(r, 1);
      return r as PromiseLike<number>;
    });
    expect(codes(errors)).toEqual({});
    expect(values.length).toBe(4096);
    expect(values.every((v) => v === 10)).toBe(true);
  }, 120_000);

  test("over gRPC, a chained reader gets a failed task's error within 100 ms of the failure", async () => {
    const x = Worker.toDist({ host: a.host, port: a.port });
    const y = Worker.toDist({ host: b.host, port: b.port });
    const z = Worker.toDist({ host: a.host, port: a.port });
    await z.add(y.add(x.echo(1), 1), 1); // connections between the servers are open
    const e = await z.add(y.add(x.failAfter(200), 1), 1).catch((err: unknown) => err);
    expect((e as Error).message).toContain("RangeError");
    expect(lateBy(e)).toBeLessThan(100);
  });

  test("in child mode, a chained reader gets a failed task's error within 100 ms of the failure", async () => {
    await using x = new Worker().toDist();
    await using y = new Worker().toDist();
    await y.add(x.echo(1), 1);
    const e = await y.add(x.failAfter(200), 1).catch((err: unknown) => err);
    expect(lateBy(e)).toBeLessThan(100);
  });

  test("a call refused by its server fails a reference to its task at once (no wait for a task that will never exist)", async () => {
    const x = Worker.toDist({ host: a.host, port: a.port });
    const y = Worker.toDist({ host: b.host, port: b.port });
    const gone = connect<Remote<Worker>>({ host: a.host, port: a.port, oid: "never-created" }) as unknown as Remote<Worker>;
    await x.echo(1);
    const t0 = performance.now();
    // `echo` on an object that does not exist is refused (NOT_FOUND); y waits on its task.
    const e = (await y.add((gone as unknown as Remote<Worker>).echo(5), 1).catch((err: unknown) => err)) as AgentServerError;
    expect(e.code).toBe("NOT_FOUND");
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("a client process exits within 100 ms of its last await", async () => {
    const script = `
      import { Worker } from ${JSON.stringify(fixture)};
      const a = Worker.toDist({ host: ${JSON.stringify(a.host)}, port: ${a.port} });
      const b = Worker.toDist({ host: ${JSON.stringify(b.host)}, port: ${b.port} });
      await a.inc();
      try { await b.add(a.failAfter(20), 1); } catch {}
      await Promise.all(Array.from({ length: 200 }, () => a.inc()));
      const last = performance.now();
      // "exit" fires once the event loop has nothing left to do: the time to it is what a
      // lingering request or stream would add.
      process.on("exit", () => console.log(Math.round(performance.now() - last)));`;
    await using proc = Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "pipe" });
    const out = await new Response(proc.stdout).text();
    expect(await proc.exited).toBe(0);
    expect(Number(out.trim())).toBeLessThan(100);
  });
});

describe("results dropped unread", () => {
  test("are released when their AsyncResults are garbage collected, so fire-and-forget calls do not fill the pool", async () => {
    const server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], shutdownGraceMs: 500 });
    await server.launch({ inSubprocess: true });
    try {
      // Not inline: fire-and-forget results stay unread until released (inline ones are read with the call's answer).
      const w = withOptions(Worker.toDist({ host: server.host, port: server.port }), { inline: false });
      const client = new RpcClient(server.host, server.port);
      await w.inc();
      // Held (unread) until every call is accepted, so none can be collected early; then dropped.
      // The array lives only in `calls`' closure: the collector scans stacks conservatively.
      const calls = holdUnread(() => w.inc(), 2000);
      for (let i = 0; i < 200 && !calls.accepted(); i++) await w.ping();
      expect(calls.accepted()).toBe(true);
      const before = (await client.getServerInfo()).results ?? 0;
      expect(before).toBeGreaterThanOrEqual(2000);
      calls.drop();
      let after = before;
      for (let i = 0; i < 50 && after > 100; i++) {
        Bun.gc(true);
        await w.ping(); // the releases go out and are answered before this
        after = (await client.getServerInfo()).results ?? 0;
      }
      expect(after).toBeLessThan(100);
    } finally {
      await server.shutdown();
    }
  });

  test("a result whose reference was handed to another server is not released on the owner's behalf", async () => {
    await using x = new Worker().toDist();
    await using y = new Worker().toDist();
    const r = x.slow(100);
    const sum = y.add(r, 1);
    // Only `sum` is held from here on: `r` may be collected, but y still reads it.
    Bun.gc(true);
    expect(await sum).toBe(101);
  });
});

describe("inline results: a fast task answers with its call", () => {
  let shared: RpcAgentServerLauncher;
  beforeAll(async () => {
    shared = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], shutdownGraceMs: 500 });
    await shared.launch({ inSubprocess: true });
  });
  afterAll(() => shared.shutdown());
  const kinds = (w: unknown): { sent: string[]; restore(): void } => {
    const t = remoteState(w)!.conn.transport;
    const orig = t.request.bind(t);
    const sent: string[] = [];
    t.request = (req, opts) => {
      sent.push(req.t);
      return orig(req, opts);
    };
    return { sent, restore: () => void (t.request = orig) };
  };

  for (const [mode, make] of [
    ["child mode", () => new Worker().toDist()],
    ["gRPC", () => Worker.toDist({ host: shared.host, port: shared.port })],
  ] as const) {
    test(`${mode}: an async call whose task succeeds within the hold costs one request, no wait; a longer one is read with a wait`, async () => {
      const w = make();
      try {
        expect(await w.inc()).toBe(1);
        const spy = kinds(w);
        expect(await w.echo("fast")).toBe("fast");
        expect(spy.sent).toEqual(["call"]);
        expect(await w.slow(120)).toBe(120);
        expect(spy.sent).toEqual(["call", "call", "wait"]);
        // A failure is never inline: the call is accepted, its error read with a wait.
        // (Read with catch: bun's expect().rejects stalls gRPC I/O while it waits.)
        const e = await w.failAfter(0).result().catch((x: unknown) => x);
        expect(String((e as Error).message)).toMatch(/failed at/);
        expect(spy.sent.slice(3)).toEqual(["call", "wait"]);
        spy.restore();
      } finally {
        await w.stop();
      }
    });
  }

  test("more calls in flight than the server's capacity: fast tasks queued for a slot still answer inline", async () => {
    const narrow = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Worker], capacity: 2, shutdownGraceMs: 500 });
    await narrow.launch({ inSubprocess: true });
    try {
      const w = Worker.toDist({ host: narrow.host, port: narrow.port });
      await w.inc();
      const spy = kinds(w);
      const got = await Promise.all(Array.from({ length: 200 }, (_, i) => w.echo(i)));
      expect(got).toEqual(Array.from({ length: 200 }, (_, i) => i));
      expect(spy.sent.filter((k) => k !== "call")).toEqual([]);
      spy.restore();
    } finally {
      await narrow.shutdown();
    }
  });

  test("gRPC: a call nobody else can name goes solo — answered inline, its result never enters the server's pool; a reference made after it went out waits for its answer", async () => {
    const w = Worker.toDist({ host: shared.host, port: shared.port });
    const y = Worker.toDist({ host: shared.host, port: shared.port });
    const info = new RpcClient(shared.host, shared.port);
    try {
      await Promise.all([w.inc(), y.inc()]);
      const before = (await info.getServerInfo()).results;
      const got = await Promise.all(Array.from({ length: 300 }, (_, i) => w.echo(i)));
      expect(got).toEqual(Array.from({ length: 300 }, (_, i) => i));
      expect((await info.getServerInfo()).results).toBe(before);
      // Handed on in the turn it was made (before its request was written): pipelined as a
      // reference, so that one is not solo and its server keeps the result for y.
      const early = w.echo(1);
      expect(await y.add(early, 1)).toBe(2);
      expect(early.taskSource?.sealed).toBeUndefined();
      // Handed on after its request went out solo: the reference waits for the answer.
      const late = w.slow(30);
      await new Promise((r) => setImmediate(r));
      expect(late.taskSource?.sealed).toBe(true);
      expect(await y.add(late, 1)).toBe(31);
      expect(await late).toBe(30);
    } finally {
      await Promise.all([w.delete(), y.delete()]);
    }
  });

  test("servicer: a solo task's inline value is not recorded, so a taken task id costs nothing then; an outcome that must be kept is refused ALREADY_EXISTS and the task owning the id is untouched", async () => {
    // A servicer of its own on a plain local pool (the one solo calls need: it reads at once).
    const pool = new LocalPool({ maxPoolSize: 64, maxExpireTime: 60 });
    const servicer = new Servicer({ capacity: 4, maxQueue: 64, maxTimeoutSeconds: 5, serverId: "solo", address: { host: "memory", child: "solo" }, resolveClass: (n) => (n === "Worker" ? Worker : undefined), pool });
    const oid = randomId();
    expect(await servicer.handle({ t: "create", oid, cls: "Worker", args: encodeValue([]) })).toEqual({ t: "ok" });
    const h = { servicer };
    const call = (name: string, args: unknown[], extra: Record<string, unknown>) => h.servicer.handle({ t: "call", oid, name, args: encodeValue(args), ...extra });
    const owner = randomId();
    expect(await call("slow", [100], { task: owner })).toEqual({ t: "task", task: owner });
    // Same id, solo, succeeds within the hold: answered by value, the owner's entry untouched.
    const fast = await call("echo", ["x"], { task: owner, holdMs: 50, solo: true });
    expect(fast.t).toBe("value");
    // Same id, solo, fails: its error would be kept for a wait, and the id is taken.
    const bad = await call("failAfter", [0], { task: owner, holdMs: 50, solo: true });
    expect(bad).toMatchObject({ t: "error", error: { code: "ALREADY_EXISTS" } });
    const res = await h.servicer.handle({ t: "wait", task: owner, timeoutMs: 2000 });
    expect(res.t).toBe("value");
    expect(decodeValue((res as { value: Uint8Array }).value)).toBe(100);
    // A fresh solo id that fails is kept: its error is read with a wait.
    const lone = randomId();
    expect(await call("failAfter", [0], { task: lone, holdMs: 50, solo: true })).toEqual({ t: "task", task: lone });
    const err = await h.servicer.handle({ t: "wait", task: lone, timeoutMs: 2000 });
    expect(err).toMatchObject({ t: "error", error: { code: "UNKNOWN" } });
    expect(pool.size()).toBe(2);
    await servicer.close();
    await pool.close();
  });

  test("a result answered inline can still be handed on, before and after it arrives", async () => {
    await using x = new Worker().toDist();
    await using y = new Worker().toDist();
    const r = x.echo(41);
    expect(await y.add(r, 1)).toBe(42);
    expect(await r).toBe(41);
    expect(await y.add(r, 2)).toBe(43);
  });
});
