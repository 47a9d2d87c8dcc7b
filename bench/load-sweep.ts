#!/usr/bin/env bun
/**
 * Load sweep: 100,000 async calls (10,000 with `--quick`) of `@asyncFunc inc()` on a counter,
 * with 256 / 2,048 / 8,192 / 16,384 in flight, against one `launch({ inSubprocess: true })`
 * server with default settings (maxPoolSize 8192, capacity 32), once with the local result
 * pool and once with the Redis pool (a throwaway redis-server; skipped, with a notice, when
 * none is installed). Each window gets a fresh counter, so every value 1..n must arrive
 * exactly once. Per window:
 * - arrived: right values (each exactly once);
 * - refused: calls that failed RESOURCE_EXHAUSTED (the client's backpressure gave up);
 * - lost: anything else, wrong or repeated values included — must be 0;
 * - calls/s, p99 of one call (issue → value), and the server's peak RSS during the window
 *   (read from /proc every 100 ms, so sampling costs the server nothing).
 *
 *   bun bench/load-sweep.ts [--quick] [--windows 256,2048] [--pools local,redis] [--no-backpressure]
 *
 * Prints a table and writes bench/results-load-sweep.json; under bench/run.ts (`--json FILE`)
 * its rows join the suite's table.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { RpcAgentServerLauncher, RpcClient, withOptions } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { LoadCounter } from "../test/fixtures/load-agents.ts";
import { fmt, here, machine, stats, type Row } from "./lib.ts";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    windows: { type: "string", default: "256,2048,8192,16384" },
    pools: { type: "string", default: "local,redis" },
    calls: { type: "string" },
    "no-backpressure": { type: "boolean", default: false },
    json: { type: "string" },
  },
});
const N = Number(flags.calls ?? (flags.quick ? 10_000 : 100_000));
const WINDOWS = flags.windows!.split(",").map(Number);
const POOLS = flags.pools!.split(",") as Array<"local" | "redis">;
for (const w of WINDOWS) if (!Number.isInteger(w) || w < 1) throw new Error(`--windows: ${w} is not a positive integer`);
for (const p of POOLS) if (p !== "local" && p !== "redis") throw new Error(`--pools: ${p} is not local or redis`);
if (!Number.isInteger(N) || N < 1) throw new Error("--calls must be a positive integer");

/** One window's figures. */
interface Result {
  pool: "local" | "redis";
  window: number;
  calls: number;
  arrived: number;
  refused: number;
  lost: number;
  callsPerSecond: number;
  p99Ms: number;
  rssPeakMiB: number;
  seconds: number;
  /** Redis pool: commands Redis ran per call (INFO commandstats; script calls count once). */
  redisCommandsPerCall?: number;
  firstLost?: string;
}

/** Peak VmRSS of `pid` while `f` runs, sampled every 100 ms from /proc (MiB). */
async function peakRss<T>(pid: number, f: () => Promise<T>): Promise<{ value: T; peakMiB: number }> {
  let peak = 0;
  const sample = () => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
    } catch {
      // The server is gone: the calls will say so.
    }
  };
  sample();
  const timer = setInterval(sample, 100);
  try {
    const value = await f();
    sample();
    return { value, peakMiB: peak };
  } finally {
    clearInterval(timer);
  }
}

/** Commands the pool has sent Redis so far (a script call counts once). */
async function redisCommands(url: string): Promise<number> {
  const { default: Redis } = await import("ioredis");
  const c = new Redis(url, { maxRetriesPerRequest: 0 });
  try {
    const info = await c.info("commandstats");
    let n = 0;
    // Each line: cmdstat_<name>:calls=N,…. Commands run inside scripts are listed too (set,
    // publish, …), so only those the pool sends itself are counted.
    for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) if (/^(evalsha|eval|get|subscribe|unsubscribe)$/.test(m[1]!)) n += Number(m[2]);
    return n;
  } finally {
    c.disconnect();
  }
}

async function sweepWindow(pool: "local" | "redis", at: { host: string; port: number }, pid: number, window: number, redisUrl?: string): Promise<Result> {
  const plain = LoadCounter.toDist(at);
  const c = flags["no-backpressure"] ? withOptions(plain, { backpressure: false }) : plain;
  await plain.count();
  const seen = new Uint8Array(N + 1);
  const lat = new Float64Array(N);
  let arrived = 0;
  let refused = 0;
  let lost = 0;
  let firstLost: string | undefined;
  let next = 0;
  const commandsBefore = redisUrl ? await redisCommands(redisUrl) : 0;
  const t0 = performance.now();
  const { peakMiB } = await peakRss(pid, () =>
    Promise.all(
      Array.from({ length: Math.min(window, N) }, async () => {
        while (next < N) {
          const i = next++;
          const t = performance.now();
          try {
            const v = await c.inc();
            if (Number.isInteger(v) && v >= 1 && v <= N && !seen[v]) {
              seen[v] = 1;
              arrived++;
            } else {
              lost++;
              firstLost ??= `wrong or repeated value ${String(v)}`;
            }
          } catch (e) {
            const code = (e as { code?: string }).code;
            if (code === "RESOURCE_EXHAUSTED") refused++;
            else {
              lost++;
              firstLost ??= `${code ?? ""} ${(e as Error).message}`.slice(0, 200);
            }
          }
          lat[i] = performance.now() - t;
        }
      }),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  await plain.delete();
  const r: Result = { pool, window, calls: N, arrived, refused, lost, callsPerSecond: N / seconds, p99Ms: stats([...lat]).p99, rssPeakMiB: peakMiB, seconds };
  if (redisUrl) r.redisCommandsPerCall = ((await redisCommands(redisUrl)) - commandsBefore) / N;
  if (firstLost) r.firstLost = firstLost;
  return r;
}

/** One server for `pool`, every window against it, then shut down. */
async function sweepPool(pool: "local" | "redis"): Promise<Result[]> {
  let redis: { url: string; stop(): Promise<void> } | undefined;
  if (pool === "redis") {
    if (!Bun.which("redis-server")) {
      console.log("notice: redis-server not found: the Redis pool rows are skipped");
      return [];
    }
    const { startRedis } = await import("../test/helpers/redis.ts");
    redis = await startRedis();
  }
  const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [LoadCounter], poolType: pool, ...(redis ? { redisUrl: redis.url } : {}) });
  await l.launch({ inSubprocess: true });
  const client = new RpcClient(l.host, l.port);
  const out: Result[] = [];
  try {
    const { pid } = await client.getServerInfo();
    for (const w of WINDOWS) {
      const r = await sweepWindow(pool, { host: l.host, port: l.port }, pid, w, redis?.url);
      out.push(r);
      console.log(
        `  ${pool.padEnd(5)} ${String(w).padStart(6)} in flight: ${r.arrived} arrived, ${r.refused} refused, ${r.lost} lost, ${fmt(r.callsPerSecond)} calls/s, p99 ${fmt(r.p99Ms)} ms, server RSS peak ${fmt(r.rssPeakMiB)} MiB${r.redisCommandsPerCall === undefined ? "" : `, ${r.redisCommandsPerCall.toFixed(3)} Redis commands per call`}${r.firstLost ? `  (first lost: ${r.firstLost})` : ""}`,
      );
    }
  } finally {
    client.close();
    await l.shutdown();
    await closeAllConnections();
    await redis?.stop();
  }
  return out;
}

function printSweep(results: Result[]): void {
  const head = ["pool", "in flight", "arrived", "refused", "lost", "calls/s", "p99 ms", "server RSS peak MiB"];
  const lines = results.map((r) => [r.pool, String(r.window), String(r.arrived), String(r.refused), String(r.lost), fmt(r.callsPerSecond), fmt(r.p99Ms), fmt(r.rssPeakMiB)]);
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const out = (l: string[]) => console.log(l.map((c, i) => (i < 1 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  console.log(`\nLoad sweep: ${N.toLocaleString("en-US")} async inc() calls per window, one subprocess server, default settings${flags["no-backpressure"] ? ", backpressure off" : ""}`);
  out(head);
  out(w.map((n) => "-".repeat(n)));
  lines.forEach(out);
}

/** Rows for bench/run.ts: calls/s per window, judged on "lost = 0". */
function rowsOf(results: Result[]): Row[] {
  return results.map((r) => ({
    id: `sweep.${r.pool}.${r.window}`,
    name: `load sweep, ${r.pool} pool, ${r.window} in flight`,
    value: r.callsPerSecond,
    unit: "calls/s",
    budget: { text: "lost = 0" },
    ok: r.lost === 0,
    note: `${r.arrived} arrived, ${r.refused} refused, ${r.lost} lost; p99 ${fmt(r.p99Ms)} ms; server RSS peak ${fmt(r.rssPeakMiB)} MiB`,
  }));
}

if (import.meta.main) {
  console.log(`load sweep: ${N.toLocaleString("en-US")} calls × windows ${WINDOWS.join(" / ")} × pools ${POOLS.join(", ")}`);
  const results: Result[] = [];
  for (const p of POOLS) results.push(...(await sweepPool(p)));
  printSweep(results);
  const lost = results.reduce((s, r) => s + r.lost, 0);
  console.log(lost === 0 ? "\nlost: 0" : `\nLOST: ${lost} calls`);
  await Bun.write(here("results-load-sweep.json"), `${JSON.stringify({ machine: machine(), config: { calls: N, windows: WINDOWS, pools: POOLS, backpressure: !flags["no-backpressure"] }, results }, null, 2)}\n`);
  if (flags.json) await Bun.write(flags.json, JSON.stringify({ title: "Load sweep (async calls, one subprocess server)", rows: rowsOf(results) }));
  process.exit(lost > 0 && !flags.json ? 1 : 0);
}
