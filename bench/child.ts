#!/usr/bin/env bun
/**
 * Child-mode benchmarks against the raw Bun IPC floor, in one run:
 * init and stop of 5 child agents, the seed scenario (S = 1), sync round trip vs a raw IPC
 * ping-pong, async 1:1 throughput (submit many, then collect).
 *
 *   bun bench/child.ts [--quick]
 */
import { Msg } from "../src/index.ts";
import { Echo, Worker } from "./fixtures/bench-agents.ts";
import { medianOf, printTable, saveResults, stats, type Row } from "./lib.ts";

const quick = process.argv.includes("--quick");
const N = quick ? 2000 : 10_000;
const ROUNDS = quick ? 3 : 5;

async function rawIpcPingUs(): Promise<number> {
  let resolve!: (v: unknown) => void;
  const p = Bun.spawn([process.execPath, new URL("./fixtures/echo-child.ts", import.meta.url).pathname], {
    serialization: "advanced",
    ipc: (m) => resolve(m),
    stdio: ["ignore", "inherit", "inherit"],
  });
  await new Promise((r) => (resolve = r));
  // The same shape as an actorscope call: a small envelope with a byte payload.
  const msg = { k: "q", i: 1, r: { t: "call", oid: "0".repeat(32), name: "echo", args: new Uint8Array(40) } };
  const once = () => new Promise((r) => ((resolve = r), p.send(msg)));
  for (let i = 0; i < 1000; i++) await once();
  const us = await medianOf(ROUNDS, async () => {
    const t = performance.now();
    for (let i = 0; i < N; i++) await once();
    return ((performance.now() - t) * 1000) / N;
  });
  p.kill();
  await p.exited;
  return us;
}

async function main(): Promise<void> {
  const rows: Row[] = [];

  // Init and stop of 5 child agents (init = until each answers a call).
  const initMs: number[] = [];
  const stopMs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    const agents = Array.from({ length: 5 }, (_, i) => new Worker(`W${i}`, 0).toDist());
    await Promise.all(agents.map((a) => a.name));
    initMs.push(performance.now() - t0);
    const t1 = performance.now();
    await Promise.all(agents.map((a) => a.stop()));
    stopMs.push(performance.now() - t1);
  }
  rows.push({ name: "child init of 5 agents", value: stats(initMs).median, unit: "ms", budget: "≤ 100 ms (AgentScope 108 ms)", ok: stats(initMs).median <= 100 });
  rows.push({ name: "stop 5 children", value: stats(stopMs).median, unit: "ms", budget: "≤ 100 ms (AgentScope ~29 s)", ok: stats(stopMs).median <= 100 });

  // Seed scenario, S = 1: five agents each doing 1 s of blocking work.
  const S = 1;
  const agents = Array.from({ length: 5 }, (_, i) => new Worker(`W${i}`, S).toDist());
  await Promise.all(agents.map((a) => a.name));
  const seedMs = await medianOf(quick ? 1 : 3, async () => {
    const t = performance.now();
    const rs = agents.map((a) => a.reply(new Msg({ name: "u", content: "q" })));
    for (const r of rs) await r;
    return performance.now() - t;
  });
  await Promise.all(agents.map((a) => a.stop()));
  rows.push({ name: "seed scenario S=1 (5 agents)", value: seedMs, unit: "ms", budget: "≤ S + 50 ms", ok: seedMs <= S * 1000 + 50 });

  // Sync round trip vs raw IPC.
  const raw = await rawIpcPingUs();
  await using e = new Echo().toDist();
  for (let i = 0; i < 1000; i++) await e.echo(i);
  const syncUs = await medianOf(ROUNDS, async () => {
    const t = performance.now();
    for (let i = 0; i < N; i++) await e.echo(i);
    return ((performance.now() - t) * 1000) / N;
  });
  rows.push({ name: "sync call round trip", value: syncUs, unit: "µs", floor: raw, budget: "≤ 1.5× raw IPC (AgentScope 445 µs)", ok: syncUs <= raw * 1.5 });

  // Async 1:1: submit a batch, then collect it (`Promise.all`, like Ray's `ray.get(list)`).
  const batch = quick ? 5000 : 20_000;
  const perSec = await medianOf(ROUNDS, async () => {
    const t = performance.now();
    const rs = [];
    for (let i = 0; i < batch; i++) rs.push(e.aecho(i));
    await Promise.all(rs);
    return batch / ((performance.now() - t) / 1000);
  });
  rows.push({ name: "async 1:1 throughput (submit, then Promise.all)", value: perSec, unit: "calls/s", budget: "≥ 20k/s (AgentScope ~1k/s)", ok: perSec >= 20_000 });
  // The same, collected one by one in a loop (each read is one round trip).
  const seqPerSec = await medianOf(ROUNDS, async () => {
    const t = performance.now();
    const rs = [];
    for (let i = 0; i < batch; i++) rs.push(e.aecho(i));
    for (const r of rs) await r;
    return batch / ((performance.now() - t) / 1000);
  });
  rows.push({ name: "async 1:1 (submit, then await each in turn)", value: seqPerSec, unit: "calls/s" });
  // Latency of one async call awaited at once (two round trips: call, then wait).
  const asyncUs = await medianOf(ROUNDS, async () => {
    const t = performance.now();
    for (let i = 0; i < N / 2; i++) await e.aecho(i);
    return ((performance.now() - t) * 1000) / (N / 2);
  });
  rows.push({ name: "async call latency (call + wait)", value: asyncUs, unit: "µs", floor: raw });

  printTable("child mode (Bun IPC)", rows);
  await saveResults(new URL("./results.json", import.meta.url).pathname, "child", rows);
}

await main();
