#!/usr/bin/env bun
/**
 * Result pool benchmarks, in one run against a throwaway redis-server:
 * - raw ioredis SET(PX)+GET, the floor for any Redis pool;
 * - async call + wait through an in-process Servicer (no transport), local pool vs Redis pool:
 *   1:1 latency, pipelined throughput, and a wait through a second server on the same Redis;
 * - the wake mechanisms weighed for the Redis pool (pub/sub, BLPOP, keyspace events; BENCHMARKS.md);
 * - a Redis restart under a parked waiter whose task finished while Redis was away: time to
 *   reconnect and to deliver the held result.
 *
 *   bun bench/redis-pool.ts [--quick]      (writes bench/results-redis.json)
 */
import Redis from "ioredis";
import { encodeValue } from "../src/core/codec.ts";
import { decodeValue } from "../src/core/codec-decode.ts";
import { type Response } from "../src/core/protocol.ts";
import { randomId } from "../src/core/ids.ts";
import { LocalPool } from "../src/server/pool/local.ts";
import { RedisPool } from "../src/server/pool/redis.ts";
import type { ResultPool } from "../src/server/pool/types.ts";
import { Servicer } from "../src/server/servicer.ts";
import { startRedis, type TestRedis } from "../test/helpers/redis.ts";
import { Echo } from "./fixtures/bench-agents.ts";
import { medianOf, printTable, saveResults, stats, type Row } from "./lib.ts";

const quick = process.argv.includes("--quick");
const N = quick ? 1000 : 3000;
const ROUNDS = quick ? 3 : 5;
const IN_FLIGHT = 64;
const OUT = new URL("./results-redis.json", import.meta.url).pathname;

function servicer(serverId: string, pool: ResultPool): Servicer {
  return new Servicer({
    serverId,
    address: { host: "127.0.0.1", port: 1 },
    resolveClass: (name) => (name === "Echo" ? Echo : undefined),
    capacity: 256,
    maxQueue: 4096,
    pool,
    maxTimeoutSeconds: 10,
  });
}

function valueOf(res: Response): unknown {
  if (res.t !== "value") throw new Error(`expected a value, got ${JSON.stringify(res)}`);
  return decodeValue(res.value);
}

/** One async call and its wait; `waiter` may be another server on the same pool backend. */
async function callAndWait(caller: Servicer, waiter: Servicer, oid: string, args: Uint8Array): Promise<void> {
  const task = randomId();
  const r = await caller.handle({ t: "call", oid, name: "aecho", args, task });
  if (r.t !== "task") throw new Error(`call failed: ${JSON.stringify(r)}`);
  valueOf(await waiter.handle({ t: "wait", task, timeoutMs: 5000 }));
}

/** Median µs of one call+wait, sequential. */
async function latencyUs(caller: Servicer, waiter: Servicer, oid: string): Promise<{ median: number; p99: number }> {
  const args = encodeValue([{ n: 1, s: "hello" }]);
  for (let i = 0; i < 200; i++) await callAndWait(caller, waiter, oid, args);
  const xs: number[] = [];
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    await callAndWait(caller, waiter, oid, args);
    xs.push((performance.now() - t) * 1000);
  }
  return stats(xs);
}

/** call+wait pairs per second with `IN_FLIGHT` pairs outstanding. */
async function throughput(caller: Servicer, waiter: Servicer, oid: string): Promise<number> {
  const args = encodeValue([{ n: 1, s: "hello" }]);
  return medianOf(ROUNDS, async () => {
    let next = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next++ < N) await callAndWait(caller, waiter, oid, args);
      }),
    );
    return N / ((performance.now() - t) / 1000);
  });
}

async function rawRedis(url: string): Promise<{ pairUs: number; perSec: number }> {
  const c = new Redis(url);
  const v = Buffer.from(encodeValue([{ n: 1, s: "hello" }]));
  for (let i = 0; i < 500; i++) await c.set(`bench:${i}`, v, "PX", 60_000);
  const pairUs = await medianOf(ROUNDS, async () => {
    const t = performance.now();
    for (let i = 0; i < N; i++) {
      await c.set(`bench:${i}`, v, "PX", 60_000);
      await c.getBuffer(`bench:${i}`);
    }
    return ((performance.now() - t) * 1000) / N;
  });
  const perSec = await medianOf(ROUNDS, async () => {
    let next = 0;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < N) {
          const i = next++;
          await c.set(`bench:${i}`, v, "PX", 60_000);
          await c.getBuffer(`bench:${i}`);
        }
      }),
    );
    return N / ((performance.now() - t) / 1000);
  });
  c.disconnect();
  return { pairUs, perSec };
}

/** Write → wake latency of the three wake mechanisms, µs. */
async function wakeMechanisms(url: string): Promise<Row[]> {
  const n = quick ? 300 : 1000;
  const cmd = new Redis(url);
  const sub = new Redis(url);
  const blk = new Redis(url);
  await Promise.all([cmd.ping(), sub.ping(), blk.ping()]);
  const pubsub: number[] = [];
  for (let i = 0; i < n; i++) {
    const ch = `wake:${i}`;
    await sub.subscribe(ch);
    const got = new Promise<void>((res) => sub.once("messageBuffer", () => res()));
    const t = performance.now();
    await cmd.eval("redis.call('SET', KEYS[1], ARGV[1], 'PX', 10000); return redis.call('PUBLISH', KEYS[2], ARGV[1])", 2, `wk:${i}`, ch, "Vhello");
    await got;
    pubsub.push((performance.now() - t) * 1000);
    await sub.unsubscribe(ch);
  }
  const blpop: number[] = [];
  for (let i = 0; i < n; i++) {
    const popped = blk.blpop(`wl:${i}`, 5);
    // The BLPOP must be parked in Redis before the push; its connection answers in order, so
    // a PING queued behind it on another connection does not prove that. Ask Redis instead.
    while (Number((await cmd.info("clients")).match(/blocked_clients:(\d+)/)?.[1] ?? 0) < 1) {}
    const t = performance.now();
    await cmd.rpush(`wl:${i}`, "x");
    await popped;
    blpop.push((performance.now() - t) * 1000);
  }
  await cmd.config("SET", "notify-keyspace-events", "K$");
  const keyspace: number[] = [];
  for (let i = 0; i < n; i++) {
    const ch = `__keyspace@0__:wn:${i}`;
    await sub.subscribe(ch);
    const got = new Promise<void>((res) => sub.once("messageBuffer", () => res()));
    const t = performance.now();
    await cmd.set(`wn:${i}`, "v", "PX", 10_000);
    await got;
    keyspace.push((performance.now() - t) * 1000);
    await sub.unsubscribe(ch);
  }
  await cmd.config("SET", "notify-keyspace-events", "");
  for (const c of [cmd, sub, blk]) c.disconnect();
  const row = (name: string, xs: number[]): Row[] => {
    const s = stats(xs);
    return [
      { name: `${name}, median`, value: s.median, unit: "µs" },
      { name: `${name}, p99`, value: s.p99, unit: "µs" },
    ];
  };
  return [...row("wake: pub/sub SET+PUBLISH (chosen)", pubsub), ...row("wake: BLPOP after RPUSH", blpop), ...row("wake: keyspace notification", keyspace)];
}

/**
 * Kill and restart Redis under a parked remote waiter: the waiter is not failed; the task
 * finishes while Redis is away, and the waiter gets the value once Redis is back.
 */
async function restart(r: TestRedis): Promise<Row[]> {
  const [a, b] = await Promise.all([0, 1].map((i) => RedisPool.connect({ redisUrl: r.url, serverId: `restart-${i}`, maxPoolSize: 100, maxExpireTime: 60 })));
  const task = randomId();
  await a!.prepare(task);
  let gotAt = 0;
  const waiting = b!.get(task, 30_000).then(
    (v) => {
      gotAt = performance.now();
      return v === "pending" ? "pending" : "value";
    },
    (e: Error) => e.name,
  );
  // Wait until the waiter is subscribed: from then on only the connection loss can end it.
  const admin = new Redis(r.url);
  while (Number(((await admin.pubsub("NUMSUB", `as:d:${task}`)) as [string, number])[1]) < 1) {}
  admin.disconnect();
  const t = performance.now();
  await r.stop();
  // The task finishes while Redis is away: the outcome is held and written on reconnect.
  await a!.set(task, { ok: true, value: new Uint8Array([1]) });
  await r.restart();
  const backAt = performance.now();
  await Promise.all([a!.ready(10_000), b!.ready(10_000)]);
  const readyMs = performance.now() - backAt;
  const what = await waiting;
  await Promise.all([a!.close(), b!.close()]);
  if (what !== "value") throw new Error(`waiter ended with ${what}`);
  return [
    { name: "restart: Redis killed → back answering PING", value: backAt - t, unit: "ms" },
    { name: "restart: Redis back → both pool connections ready, held outcome written", value: readyMs, unit: "ms" },
    { name: "restart: Redis back → parked remote waiter has the value", value: gotAt - backAt, unit: "ms" },
  ];
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const r = await startRedis();
  try {
    const rows: Row[] = [];
    const raw = await rawRedis(r.url);
    rows.push({ name: "raw ioredis SET(PX)+GET, sequential", value: raw.pairUs, unit: "µs" });
    rows.push({ name: `raw ioredis SET(PX)+GET, ${IN_FLIGHT} in flight`, value: raw.perSec, unit: "pairs/s" });

    const local = servicer("bench-local", new LocalPool({ maxPoolSize: 1 << 16, maxExpireTime: 60 }));
    const opts = { redisUrl: r.url, maxPoolSize: 1 << 16, maxExpireTime: 60 };
    const red1 = servicer("bench-redis-1", await RedisPool.connect({ ...opts, serverId: "bench-redis-1" }));
    const red2 = servicer("bench-redis-2", await RedisPool.connect({ ...opts, serverId: "bench-redis-2" }));
    const oid = randomId();
    for (const s of [local, red1]) {
      const c = await s.handle({ t: "create", oid, cls: "Echo", args: encodeValue([]) });
      if (c.t !== "ok") throw new Error(`create failed: ${JSON.stringify(c)}`);
    }
    try {
      const lLat = await latencyUs(local, local, oid);
      const rLat = await latencyUs(red1, red1, oid);
      const xLat = await latencyUs(red1, red2, oid);
      rows.push({ name: "async call+wait 1:1, local pool", value: lLat.median, unit: "µs" });
      rows.push({ name: "async call+wait 1:1, Redis pool", value: rLat.median, unit: "µs", floor: raw.pairUs });
      rows.push({ name: "async call+wait 1:1, Redis pool, wait on 2nd server", value: xLat.median, unit: "µs", floor: raw.pairUs });
      rows.push({ name: "  p99, local pool", value: lLat.p99, unit: "µs" });
      rows.push({ name: "  p99, Redis pool", value: rLat.p99, unit: "µs" });
      rows.push({ name: "  p99, Redis pool, wait on 2nd server", value: xLat.p99, unit: "µs" });
      const lTp = await throughput(local, local, oid);
      const rTp = await throughput(red1, red1, oid);
      const xTp = await throughput(red1, red2, oid);
      rows.push({ name: `call+wait, ${IN_FLIGHT} in flight, local pool`, value: lTp, unit: "calls/s" });
      rows.push({ name: `call+wait, ${IN_FLIGHT} in flight, Redis pool`, value: rTp, unit: "calls/s", floor: raw.perSec });
      rows.push({ name: `call+wait, ${IN_FLIGHT} in flight, Redis, 2nd server`, value: xTp, unit: "calls/s", floor: raw.perSec });
    } finally {
      await Promise.all([local.close(), red1.close(), red2.close()]);
    }
    rows.push(...(await wakeMechanisms(r.url)));
    rows.push(...(await restart(r)));
    printTable(`Result pools (Bun ${Bun.version}, ioredis, loopback redis-server; N=${N}, ${((performance.now() - t0) / 1000).toFixed(1)} s)`, rows);
    await saveResults(OUT, "redisPool", rows);
    console.log(`\nwrote ${OUT}`);
  } finally {
    await r.stop();
  }
}

await main();
