import { afterAll, beforeAll, expect } from "bun:test";
import Redis from "ioredis";
import { AgentServerError, AgentServerNotAliveError, Msg, NotFoundError, ResourceExhaustedError, RpcAgentServerLauncher, withOptions, type AsyncResult } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { encodeValue } from "../src/core/codec.ts";
import { decodeValue } from "../src/core/codec-decode.ts";
import { type Response } from "../src/core/protocol.ts";
import { randomId } from "../src/core/ids.ts";
import { RedisPool, redactUrl, type RedisPoolOptions } from "../src/server/pool/redis.ts";
import { createPool } from "../src/server/pool/create.ts";
import type { Outcome } from "../src/server/pool/types.ts";
import { Servicer } from "../src/server/servicer.ts";
import { LoadCounter, SlowCounter } from "./fixtures/load-agents.ts";
import { Adder } from "./fixtures/pipeline-agents.ts";
import { Doubler, gate } from "./fixtures/pool-agents.ts";
// describe/test skip (with the reason) where redis-server is missing, never in CI.
import { describe, freePort, startRedis, test, type TestRedis } from "./helpers/redis.ts";

const ok = (n: number): Outcome => ({ ok: true, value: new Uint8Array([n, 255, 0]) });
const failed: Outcome = { ok: false, error: { code: "UNKNOWN", message: "RangeError: no", remote: { name: "RangeError", message: "no" } } };

const open: RedisPool[] = [];
const raws: Redis[] = [];
const servers: TestRedis[] = [];

async function redis(opts?: { password?: string }): Promise<TestRedis> {
  const r = await startRedis(opts);
  servers.push(r);
  return r;
}

async function pool(url: string, extra: Partial<RedisPoolOptions> = {}): Promise<RedisPool> {
  const p = await RedisPool.connect({ redisUrl: url, serverId: randomId().slice(0, 8), maxPoolSize: 100, maxExpireTime: 60, ...extra });
  open.push(p);
  return p;
}

function raw(url: string): Redis {
  const c = new Redis(url, { maxRetriesPerRequest: 0 });
  c.on("error", () => {});
  raws.push(c);
  return c;
}

/**
 * Resolves once Redis has executed `count` reads of `key` (GET or MGET naming it): the pool's
 * remote wait is read, SUBSCRIBE, read, so the second read proves the waiter is subscribed
 * (MONITOR is an event stream of executed commands, not a poll).
 */
async function getsOf(url: string, key: string, count: number): Promise<{ done: Promise<void>; stop(): void }> {
  const m = await raw(url).monitor();
  const { promise, resolve } = Promise.withResolvers<void>();
  let seen = 0;
  m.on("monitor", (_time: string, args: string[]) => {
    const cmd = args[0]?.toLowerCase();
    if (cmd !== "get" && cmd !== "mget") return;
    seen += args.slice(1).filter((a) => a === key).length;
    if (seen >= count) resolve();
  });
  return { done: promise, stop: () => m.disconnect() };
}

/** Once monitoring: `done` resolves when Redis has executed an UNSUBSCRIBE naming `channel`. */
async function unsubscribeOf(url: string, channel: string): Promise<{ done: Promise<void>; stop(): void }> {
  const m = await raw(url).monitor();
  const { promise, resolve } = Promise.withResolvers<void>();
  m.on("monitor", (_time: string, args: string[]) => {
    if (args[0]?.toLowerCase() === "unsubscribe" && args.includes(channel)) resolve();
  });
  return { done: promise, stop: () => m.disconnect() };
}

/** Resolves when Redis reports `key` expired (keyspace event, enabled on the test server). */
async function expiryOf(url: string, key: string): Promise<void> {
  const admin = raw(url);
  await admin.config("SET", "notify-keyspace-events", "Ex");
  const sub = raw(url);
  const { promise, resolve } = Promise.withResolvers<void>();
  sub.on("message", (_c: string, k: string) => {
    if (k === key) resolve();
  });
  await sub.subscribe("__keyevent@0__:expired");
  return promise;
}

/** Once subscribed: `done` resolves when Redis reports `key` deleted (keyspace event). */
async function deletionOf(url: string, key: string): Promise<{ done: Promise<void> }> {
  const { promise, resolve } = Promise.withResolvers<void>();
  await raw(url).config("SET", "notify-keyspace-events", "Eg");
  const sub = raw(url);
  sub.on("message", (_c: string, k: string) => {
    if (k === key) resolve();
  });
  await sub.subscribe("__keyevent@0__:del");
  return { done: promise };
}

function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

afterAll(async () => {
  await Promise.all(open.map((p) => p.close()));
  for (const c of raws) c.disconnect();
  await Promise.all(servers.map((s) => s.stop()));
});

describe("Redis result pool", () => {
  let r: TestRedis;
  beforeAll(async () => {
    r = await redis();
  });

  test("a result set and then read comes back byte for byte, and can be read again", async () => {
    const p = await pool(r.url);
    const [a, b] = [randomId(), randomId()];
    await p.prepare(a);
    await p.prepare(b);
    await p.set(a, ok(1));
    await p.set(b, failed);
    expect(await p.get(a, 0)).toEqual(ok(1));
    expect(await p.get(a, 1000)).toEqual(ok(1));
    expect(await p.get(b, 1000)).toEqual(failed);
  });

  test("keys are namespaced and a pending marker is written on prepare", async () => {
    const p = await pool(r.url);
    const t = randomId();
    await p.prepare(t);
    const c = raw(r.url);
    expect((await c.get(`as:r:${t}`))?.[0]).toBe("P");
    expect(await c.pttl(`as:r:${t}`)).toBeGreaterThan(50_000);
    expect(await p.get(t, 0)).toBe("pending");
  });

  test("a waiter on the server that runs the task is woken by set at once", async () => {
    const p = await pool(r.url);
    const t = randomId();
    await p.prepare(t);
    const w = p.get(t, 10_000);
    const t0 = performance.now();
    await p.set(t, ok(2));
    expect(await w).toEqual(ok(2));
    expect(performance.now() - t0).toBeLessThan(200);
  });

  test("a waiter on another server is woken by the publish, not by a poll (wake latency < 200 ms)", async () => {
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const t = randomId();
    await a.prepare(t);
    const parked = await getsOf(r.url, `as:r:${t}`, 2);
    const w = b.get(t, 10_000);
    await parked.done;
    parked.stop();
    const t0 = performance.now();
    await a.set(t, ok(3));
    expect(await w).toEqual(ok(3));
    const wake = performance.now() - t0;
    expect(wake).toBeLessThan(200);
  });

  test("a failed task's error reaches its waiters here and on another server the moment it is set", async () => {
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const t = randomId();
    await a.prepare(t);
    const parked = await getsOf(r.url, `as:r:${t}`, 2);
    const remote = b.get(t, 30_000);
    const local = a.get(t, 30_000);
    await parked.done;
    parked.stop();
    const t0 = performance.now();
    await a.set(t, failed);
    expect(await remote).toEqual(failed);
    expect(await local).toEqual(failed);
    // Woken by the write itself, far inside the 30 s wait.
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("a large result (over the 64 KiB published whole) is announced and fetched by the remote waiters", async () => {
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const t = randomId();
    await a.prepare(t);
    const big = new Uint8Array(200 * 1024).map((_, i) => i % 251);
    const parked = await getsOf(r.url, `as:r:${t}`, 2 * 3);
    const waits = [b.get(t, 10_000), b.get(t, 10_000), b.get(t, 10_000)];
    await parked.done;
    parked.stop();
    await a.set(t, { ok: true, value: big });
    for (const o of await Promise.all(waits)) {
      expect(o !== "pending" && o.ok && Bun.deepEquals(o.value, big)).toBe(true);
    }
  });

  test("many concurrent waiters on one task all wake, sharing one subscription and no extra connections", async () => {
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const c = raw(r.url);
    const t = randomId();
    await a.prepare(t);
    const n = 200;
    const parked = await getsOf(r.url, `as:r:${t}`, 2 * n);
    const clientsBefore = String(await c.client("LIST")).split("\n").filter(Boolean).length;
    const remote = Array.from({ length: n }, () => b.get(t, 10_000));
    const local = Array.from({ length: n }, () => a.get(t, 10_000));
    await parked.done;
    const [, subs] = (await c.pubsub("NUMSUB", `as:d:${t}`)) as [string, number];
    expect(Number(subs)).toBe(1);
    const clientsAfter = String(await c.client("LIST")).split("\n").filter(Boolean).length;
    expect(clientsAfter).toBe(clientsBefore);
    parked.stop();
    const unsubscribed = await unsubscribeOf(r.url, `as:d:${t}`);
    await a.set(t, ok(4));
    const got = await Promise.all([...remote, ...local]);
    expect(got.every((o) => o !== "pending" && o.ok && o.value[0] === 4)).toBe(true);
    // Every waiter left: the subscription is gone.
    await within(5000, unsubscribed.done, "the UNSUBSCRIBE");
    unsubscribed.stop();
    const [, after] = (await c.pubsub("NUMSUB", `as:d:${t}`)) as [string, number];
    expect(Number(after)).toBe(0);
  });

  test("a wait that runs out answers pending, and an aborted wait answers pending at once", async () => {
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const t = randomId();
    await a.prepare(t);
    expect(await a.get(t, 30)).toBe("pending");
    expect(await b.get(t, 30)).toBe("pending");
    expect(await b.get(t, 0)).toBe("pending");
    const ctl = new AbortController();
    const w = b.get(t, 10_000, ctl.signal);
    ctl.abort();
    expect(await w).toBe("pending");
  });

  test("an unknown task is NOT_FOUND, never undefined", async () => {
    const p = await pool(r.url);
    await expect(p.get(randomId(), 0)).rejects.toBeInstanceOf(NotFoundError);
    await expect(p.get(randomId(), 1000)).rejects.toBeInstanceOf(NotFoundError);
    await p.set(randomId(), ok(1)); // an unknown task is ignored
  });

  test("preparing a task id twice is ALREADY_EXISTS, on one server or across two", async () => {
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const t = randomId();
    await a.prepare(t);
    const codes = await Promise.all([a.prepare(t), b.prepare(t)].map((p) => p.then(() => "OK", (e: AgentServerError) => e.code)));
    expect(codes).toEqual(["ALREADY_EXISTS", "ALREADY_EXISTS"]);
  });

  test("two servers on one Redis: a task prepared and set on one is fetched through the other", async () => {
    const [a, b] = [await pool(r.url, { serverId: "one" }), await pool(r.url, { serverId: "two" })];
    const [t, e] = [randomId(), randomId()];
    await a.prepare(t);
    await a.prepare(e);
    expect(await b.get(t, 0)).toBe("pending");
    await a.set(t, ok(5));
    await a.set(e, failed);
    expect(await b.get(t, 1000)).toEqual(ok(5));
    expect(await b.get(e, 0)).toEqual(failed);
    // size() counts this server's tasks only.
    expect(a.size()).toBe(2);
    expect(b.size()).toBe(0);
  });

  test("createPool builds the Redis pool for poolType redis", async () => {
    const p = await createPool({ poolType: "redis", redisUrl: r.url, serverId: "factory", maxPoolSize: 10, maxExpireTime: 60 });
    open.push(p as RedisPool);
    expect(p).toBeInstanceOf(RedisPool);
  });

  test("a closed pool settles its waiters CANCELLED and refuses work FAILED_PRECONDITION", async () => {
    const p = await RedisPool.connect({ redisUrl: r.url, serverId: "closing", maxPoolSize: 10, maxExpireTime: 60 });
    const t = randomId();
    await p.prepare(t);
    const w = p.get(t, 10_000).then(
      (v) => v,
      (e: unknown) => e,
    );
    await p.close();
    expect((await w as AgentServerError).code).toBe("CANCELLED");
    const codeOfRejection = (x: Promise<unknown>) => x.then(() => "OK", (e: AgentServerError) => e.code);
    expect(await codeOfRejection(p.get(t, 0))).toBe("FAILED_PRECONDITION");
    expect(await codeOfRejection(p.prepare(randomId()))).toBe("FAILED_PRECONDITION");
  });
});

describe("Redis result pool expiry", () => {
  test("an expired result is NOT_FOUND", async () => {
    const r = await redis();
    const p = await pool(r.url, { maxExpireTime: 1 });
    const t = randomId();
    await p.prepare(t);
    const gone = expiryOf(r.url, `as:r:${t}`);
    await p.set(t, ok(6));
    expect(await p.get(t, 0)).toEqual(ok(6));
    await within(5000, gone, "key expiry");
    await expect(p.get(t, 0)).rejects.toBeInstanceOf(NotFoundError);
    await expect(p.get(t, 1000)).rejects.toBeInstanceOf(NotFoundError);
  });

  test("a task running longer than maxExpireTime still reads pending (its marker is leased)", async () => {
    const r = await redis();
    const [a, b] = [await pool(r.url, { maxExpireTime: 1 }), await pool(r.url, { maxExpireTime: 1 })];
    const t = randomId();
    await a.prepare(t);
    // This wait itself outlasts the 1 s expiry.
    expect(await b.get(t, 1500)).toBe("pending");
    expect(await b.get(t, 0)).toBe("pending");
    await a.set(t, ok(7));
    expect(await b.get(t, 0)).toEqual(ok(7));
  });
});

describe("Redis unreachable or refusing", () => {
  test("URLs are shown with the password redacted", () => {
    expect(redactUrl("redis://:pw@h:1/0")).toBe("redis://:***@h:1/0");
    expect(redactUrl("rediss://user:p%40ss@h:1")).toBe("rediss://user:***@h:1");
    expect(redactUrl("redis://onlytoken@h")).toBe("redis://***@h");
    expect(redactUrl("redis://h:1?password=pw&db=2")).toBe("redis://h:1?password=***&db=2");
    expect(redactUrl("redis://h:1")).toBe("redis://h:1");
  });

  test("connect to a port nobody listens on rejects fast, naming the URL with its password redacted", async () => {
    const port = freePort();
    const url = `redis://:hunter2@127.0.0.1:${port}`;
    const t0 = performance.now();
    const e = await RedisPool.connect({ redisUrl: url, serverId: "x", maxPoolSize: 1, maxExpireTime: 1 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(performance.now() - t0).toBeLessThan(2500);
    expect(e).toBeInstanceOf(AgentServerNotAliveError);
    const msg = (e as Error).message;
    expect(msg).toContain(`redis://:***@127.0.0.1:${port}`);
    expect(msg).not.toContain("hunter2");
  });

  test("connect to something that accepts but never answers gives up after the connect timeout", async () => {
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const t0 = performance.now();
      const e = await RedisPool.connect({ redisUrl: `redis://127.0.0.1:${silent.port}`, serverId: "x", maxPoolSize: 1, maxExpireTime: 1, connectTimeoutMs: 500 }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(performance.now() - t0).toBeLessThan(2500);
      expect(e).toBeInstanceOf(AgentServerNotAliveError);
      expect((e as Error).message).toContain(`redis://127.0.0.1:${silent.port}`);
    } finally {
      silent.stop(true);
    }
  });

  test("an ACL user limited to the pool's keys (~as:r:*) and channels (&as:d:*) is enough", async () => {
    const r = await redis();
    await raw(r.url).acl("SETUSER", "pool", "on", ">pool-pw", "resetkeys", "~as:r:*", "resetchannels", "&as:d:*", "+@all");
    const url = r.url.replace("redis://", "redis://pool:pool-pw@");
    const [a, b] = [await pool(url), await pool(url)];
    const t = randomId();
    await a.prepare(t);
    const parked = await getsOf(r.url, `as:r:${t}`, 2);
    const w = b.get(t, 10_000);
    await parked.done;
    parked.stop();
    await a.set(t, ok(1));
    expect(await w).toEqual(ok(1));
  });

  test("Redis refusing writes for memory is RESOURCE_EXHAUSTED, not a hang or a crash", async () => {
    const r = await redis();
    const p = await pool(r.url);
    await raw(r.url).config("SET", "maxmemory", "1");
    const e = await p.prepare(randomId()).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((e as AgentServerError).code).toBe("RESOURCE_EXHAUSTED");
  });

  test("a wrong password fails with UNAUTHENTICATED and the password appears nowhere", async () => {
    const r = await redis({ password: "right-one" });
    const wrong = r.url.replace("right-one", "wrong-one");
    const e = await RedisPool.connect({ redisUrl: wrong, serverId: "x", maxPoolSize: 1, maxExpireTime: 1 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((e as AgentServerError).code).toBe("UNAUTHENTICATED");
    expect((e as Error).message).not.toContain("wrong-one");
    expect((e as Error).message).toContain("***");
    const p = await pool(r.url);
    const t = randomId();
    await p.prepare(t);
    await p.set(t, ok(8));
    expect(await p.get(t, 0)).toEqual(ok(8));
  });
});

describe("Redis restarting under running servers", () => {
  test("a waiter on another server is parked, not failed, while Redis restarts, and gets the result once Redis is back", async () => {
    const r = await redis();
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const running = randomId();
    await a.prepare(running);
    const parked = await getsOf(r.url, `as:r:${running}`, 2);
    const remoteWaiter = b.get(running, 30_000);
    const localWaiter = a.get(running, 30_000);
    await parked.done;
    parked.stop();

    await r.restart();
    await Promise.all([a.ready(5000), b.ready(5000)]);
    // The running task's marker was written again on reconnect.
    expect(await b.get(running, 0)).toBe("pending");
    const t0 = performance.now();
    await a.set(running, ok(2));
    expect(await within(1000, remoteWaiter, "the parked waiter")).toEqual(ok(2));
    expect(await localWaiter).toEqual(ok(2));
    expect(performance.now() - t0).toBeLessThan(1000);
    // New work goes through.
    const fresh = randomId();
    await b.prepare(fresh);
    const w = a.get(fresh, 10_000);
    await b.set(fresh, ok(3));
    expect(await w).toEqual(ok(3));
  });

  test("a task prepared and finished while Redis is down delivers here at once and reaches Redis when it is back", async () => {
    const r = await redis();
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const before = randomId();
    await a.prepare(before);
    await r.stop();
    // Accepted although Redis is away: a blip is not an outage.
    const during = randomId();
    await a.prepare(during);
    const localWaiter = a.get(during, 30_000);
    // A wait through the other server parks until Redis is back.
    const remoteWaiter = b.get(before, 30_000);
    await a.set(before, ok(8));
    await a.set(during, ok(9));
    expect(await localWaiter).toEqual(ok(9));
    expect(await a.get(during, 0, undefined, true)).toEqual(ok(9));

    await r.restart();
    await Promise.all([a.ready(5000), b.ready(5000)]);
    expect(await within(1000, remoteWaiter, "the parked waiter")).toEqual(ok(8));
    expect(await b.get(during, 0)).toEqual(ok(9));
  });

  test("a result written but never read survives a Redis restart that lost it: answered from memory, written back for the others", async () => {
    const r = await redis();
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const t = randomId();
    await a.prepare(t);
    await a.set(t, ok(4));
    await r.restart();
    await Promise.all([a.ready(5000), b.ready(5000)]);
    expect(await b.get(t, 0)).toEqual(ok(4));
    expect(await a.get(t, 0)).toEqual(ok(4));
  });

  test("a result read before a Redis restart that lost it is NOT_FOUND afterwards, never undefined", async () => {
    const r = await redis();
    const a = await pool(r.url);
    const t = randomId();
    await a.prepare(t);
    await a.set(t, ok(5));
    expect(await a.get(t, 0)).toEqual(ok(5));
    await r.restart();
    await a.ready(5000);
    await expect(a.get(t, 0)).rejects.toBeInstanceOf(NotFoundError);
  });

  test("past outageGraceMs Redis being away is an outage: new tasks and other servers' reads fail UNAVAILABLE at once, running tasks still deliver here", async () => {
    const r = await redis();
    const a = await pool(r.url, { outageGraceMs: 0 });
    const t = randomId();
    await a.prepare(t);
    await r.stop();
    await expect(within(1000, a.prepare(randomId()), "a prepare during an outage")).rejects.toBeInstanceOf(AgentServerNotAliveError);
    await expect(within(1000, a.get(randomId(), 10_000), "a read during an outage")).rejects.toBeInstanceOf(AgentServerNotAliveError);
    const w = a.get(t, 10_000);
    await a.set(t, ok(6));
    expect(await w).toEqual(ok(6));
  });

  test("outcomes waiting for Redis are bounded: at maxPoolSize new tasks are refused RESOURCE_EXHAUSTED with a retry hint, none is dropped", async () => {
    const r = await redis();
    const [a, b] = [await pool(r.url, { maxPoolSize: 4 }), await pool(r.url)];
    // Running tasks do not count: more than maxPoolSize may run.
    const tasks = Array.from({ length: 5 }, () => randomId());
    for (const t of tasks) await a.prepare(t);
    await r.stop();
    for (const [i, t] of tasks.entries()) await a.set(t, ok(i));
    // All five held in memory, none dropped; no room for more while they wait for Redis.
    const refused = await a.prepare(randomId()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ResourceExhaustedError);
    expect((refused as ResourceExhaustedError).retryAfterMs).toBeGreaterThan(0);
    for (const [i, t] of tasks.entries()) expect(await a.get(t, 0, undefined, true)).toEqual(ok(i));
    await r.restart();
    await Promise.all([a.ready(5000), b.ready(5000)]);
    for (const [i, t] of tasks.entries()) expect(await b.get(t, 0)).toEqual(ok(i));
    await a.prepare(randomId());
  });
});

describe("Redis pool release", () => {
  test("a finished result released is deleted from Redis; a running task released is deleted when it finishes, never written", async () => {
    const r = await redis();
    const a = await pool(r.url);
    const c = raw(r.url);
    const [done, running] = [randomId(), randomId()];
    await a.prepare(done);
    await a.set(done, ok(1));
    await a.prepare(running);
    let gone = await deletionOf(r.url, `as:r:${done}`);
    await a.release(done);
    await within(5000, gone.done, "the deletion of the released result");
    await expect(a.get(done, 0)).rejects.toBeInstanceOf(NotFoundError);

    gone = await deletionOf(r.url, `as:r:${running}`);
    await a.release(running);
    expect(a.size()).toBe(1);
    await a.set(running, ok(2));
    await within(5000, gone.done, "the deletion of the released task's marker");
    expect(await c.exists(`as:r:${running}`)).toBe(0);
    expect(a.size()).toBe(0);
    await a.release(randomId()); // unknown: ignored
  });

  test("another server's running task is left alone by a release; its finished result may be released anywhere", async () => {
    const r = await redis();
    const [a, b] = [await pool(r.url), await pool(r.url)];
    const c = raw(r.url);
    const [theirs, finished] = [randomId(), randomId()];
    await a.prepare(theirs);
    await a.prepare(finished);
    await a.set(finished, ok(3));
    const gone = await deletionOf(r.url, `as:r:${finished}`);
    // One batch: the finished one is deleted, the running one is not.
    await Promise.all([b.release(theirs), b.release(finished)]);
    await within(5000, gone.done, "the deletion of the released result");
    expect((await c.get(`as:r:${theirs}`))?.[0]).toBe("P");
    await a.set(theirs, ok(4));
    expect(await b.get(theirs, 0)).toEqual(ok(4));
  });
});

describe("Redis pool behind a Servicer", () => {
  test("create, an async call with a task id, then wait: the value arrives, through this server or another", async () => {
    const r = await redis();
    const make = async (serverId: string) =>
      new Servicer({
        serverId,
        address: { host: "127.0.0.1", port: 1 },
        resolveClass: (name) => (name === "Doubler" ? Doubler : undefined),
        capacity: 8,
        maxQueue: 64,
        pool: await RedisPool.connect({ redisUrl: r.url, serverId, maxPoolSize: 100, maxExpireTime: 60 }),
        maxTimeoutSeconds: 10,
      });
    const [s1, s2] = [await make("svc-one"), await make("svc-two")];
    try {
      const oid = randomId();
      const created = await s1.handle({ t: "create", oid, cls: "Doubler", args: encodeValue([]) });
      expect(created).toEqual({ t: "ok" });

      const value = (res: Response) => {
        if (res.t !== "value") throw new Error(`expected a value, got ${JSON.stringify(res)}`);
        return decodeValue(res.value);
      };

      const task = randomId();
      expect(await s1.handle({ t: "call", oid, name: "double", args: encodeValue([21]), task })).toEqual({ t: "task", task });
      expect(value(await s1.handle({ t: "wait", task, timeoutMs: 5000 }))).toBe(42);
      expect(value(await s2.handle({ t: "wait", task, timeoutMs: 5000 }))).toBe(42);

      // Pipelined: the wait is handled while the call is still preparing its task in Redis.
      const piped = randomId();
      const [callRes, waitRes] = await Promise.all([
        s1.handle({ t: "call", oid, name: "double", args: encodeValue([5]), task: piped }),
        s1.handle({ t: "wait", task: piped, timeoutMs: 5000 }),
      ]);
      expect(callRes).toEqual({ t: "task", task: piped });
      expect(value(waitRes)).toBe(10);

      // The wait starts before the result exists and is woken when it lands.
      const key = randomId();
      const held = randomId();
      expect(await s1.handle({ t: "call", oid, name: "held", args: encodeValue([key, 50]), task: held })).toEqual({ t: "task", task: held });
      const here = s1.handle({ t: "wait", task: held, timeoutMs: 5000 });
      const there = s2.handle({ t: "wait", task: held, timeoutMs: 5000 });
      expect(await s2.handle({ t: "wait", task: held, timeoutMs: 0 })).toEqual({ t: "pending" });
      gate(key).resolve();
      expect(value(await here)).toBe(100);
      expect(value(await there)).toBe(100);

      // A user error travels through Redis as a typed error.
      const bad = randomId();
      await s1.handle({ t: "call", oid, name: "fail", args: encodeValue(["too big"]), task: bad });
      const err = await s2.handle({ t: "wait", task: bad, timeoutMs: 5000 });
      expect(err.t).toBe("error");
      if (err.t === "error") expect(err.error.remote?.name).toBe("RangeError");

      // An unknown task is NOT_FOUND through the servicer too.
      const missing = await s2.handle({ t: "wait", task: randomId(), timeoutMs: 100 });
      expect(missing.t === "error" && missing.error.code).toBe("NOT_FOUND");
    } finally {
      await Promise.all([s1.close(), s2.close()]);
    }
  });
});

/** Issue `n` calls keeping `window` in flight; each settles into `onSettle`. */
async function pump(n: number, window: number, call: (i: number) => PromiseLike<unknown>, onSettle: (r: { ok: true; value: unknown } | { ok: false; error: unknown }, issuedAt: number) => void): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      const issuedAt = performance.now();
      try {
        onSettle({ ok: true, value: await call(i) }, issuedAt);
      } catch (error) {
        onSettle({ ok: false, error }, issuedAt);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
}

const codeOf = (e: unknown): string => String((e as { code?: unknown }).code ?? (e as Error).message);

describe("Redis pool behind a server process under load", () => {
  const launchers: RpcAgentServerLauncher[] = [];
  afterAll(async () => {
    await Promise.all(launchers.map((l) => l.shutdown()));
    await closeAllConnections();
  });
  async function serve(url: string, opts: { maxPoolSize?: number; capacity?: number; classes: Function[] }): Promise<{ host: string; port: number }> {
    const l = new RpcAgentServerLauncher({ port: 0, poolType: "redis", redisUrl: url, customAgentClasses: opts.classes, maxPoolSize: opts.maxPoolSize ?? 8192, capacity: opts.capacity ?? 32 });
    launchers.push(l);
    await l.launch({ inSubprocess: true });
    return { host: l.host, port: l.port };
  }

  test("20,000 async calls with 4,096 in flight and maxPoolSize 512: every value arrives exactly once and right", async () => {
    const r = await redis();
    const c = LoadCounter.toDist(await serve(r.url, { maxPoolSize: 512, classes: [LoadCounter] }));
    const n = 20_000;
    const seen = new Uint8Array(n + 1);
    const errors = new Map<string, number>();
    await pump(n, 4096, () => c.inc(), (res) => {
      if (!res.ok) errors.set(codeOf(res.error), (errors.get(codeOf(res.error)) ?? 0) + 1);
      else {
        const v = res.value as number;
        if (!(v >= 1 && v <= n) || seen[v]) errors.set(`wrong or repeated value ${v}`, 1);
        else seen[v] = 1;
      }
    });
    expect(Object.fromEntries(errors)).toEqual({});
    expect(seen.subarray(1).every((x) => x === 1)).toBe(true);
    expect(await c.count()).toBe(n);
  }, 120_000);

  test("with backpressure off the excess over maxPoolSize is refused RESOURCE_EXHAUSTED, never NOT_FOUND, and every accepted value arrives", async () => {
    const r = await redis();
    const c = withOptions(LoadCounter.toDist(await serve(r.url, { maxPoolSize: 512, classes: [LoadCounter] })), { backpressure: false });
    const n = 20_000;
    const codes = new Map<string, number>();
    let values = 0;
    await pump(n, 4096, () => c.inc(), (res) => {
      if (res.ok) values++;
      else codes.set(codeOf(res.error), (codes.get(codeOf(res.error)) ?? 0) + 1);
    });
    expect([...codes.keys()].filter((k) => k !== "RESOURCE_EXHAUSTED")).toEqual([]);
    expect(values + (codes.get("RESOURCE_EXHAUSTED") ?? 0)).toBe(n);
    // The server ran exactly the accepted calls.
    expect(await c.count()).toBe(values);
  }, 120_000);

  test("4,096 chains of 10 agents over 2 servers on one Redis, all in flight: every chain ends with its right value (later hops are not refused while earlier ones run)", async () => {
    const r = await redis();
    const at = await Promise.all([0, 1].map(() => serve(r.url, { classes: [Adder] })));
    const agents = Array.from({ length: 10 }, (_, i) => new Adder(`A${i}`, 0).toDist(at[i % 2]!));
    await Promise.all(agents.map((a) => a.name));
    const codes = new Map<string, number>();
    let right = 0;
    await pump(4096, 4096, () => {
      let x: AsyncResult<Msg> = agents[0]!.reply(new Msg({ name: "u", metadata: { value: 0 } }));
      for (const a of agents.slice(1)) x = a.reply(x);
      return x;
    }, (res) => {
      if (res.ok && ((res.value as Msg).metadata as { value: number }).value === 10) right++;
      else {
        const code = res.ok ? "wrong value" : codeOf(res.error);
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    });
    expect(Object.fromEntries(codes)).toEqual({});
    expect(right).toBe(4096);
  }, 120_000);

  test("Redis restarted for about 1 s under 2,000 calls in flight: every call settles with its value or a clear error, none later than 2 s after Redis is back", async () => {
    const r = await redis();
    const c = SlowCounter.toDist(await serve(r.url, { capacity: 4096, classes: [SlowCounter] }));
    await c.incAfter(0);
    const n = 10_000;
    const window = 2000;
    let settled = 0;
    let values = 0;
    let backAt = 0;
    let latestAfterBack = 0;
    const errors = new Map<string, number>();
    const { promise: quarter, resolve: atQuarter } = Promise.withResolvers<void>();
    const load = pump(n, window, () => c.incAfter(20), (res, issuedAt) => {
      if (res.ok) values++;
      else errors.set(codeOf(res.error), (errors.get(codeOf(res.error)) ?? 0) + 1);
      if (++settled === n / 4) atQuarter();
      // Calls made before Redis was back (in flight through the blip): how late they settle.
      if (backAt && issuedAt < backAt) latestAfterBack = Math.max(latestAfterBack, performance.now() - backAt);
    });
    await quarter;
    await r.stop();
    // Part of the scenario, not synchronisation: Redis stays away for about a second.
    await Bun.sleep(1000);
    await r.restart();
    backAt = performance.now();
    await load;
    expect(settled).toBe(n);
    // Clear errors only (a blip should produce none at all).
    expect(Object.fromEntries(errors)).toEqual({});
    expect(values).toBe(n);
    expect(latestAfterBack).toBeLessThan(2000);
  }, 120_000);
});
