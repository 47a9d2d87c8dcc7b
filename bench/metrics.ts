/**
 * What counting calls costs the hot path (issue 19): sync round trip and async throughput of
 * one independent (gRPC) server, client in the same process, in three set-ups measured in
 * alternating rounds on the same machine:
 * - bare: a servicer with no observer at all (nothing counted, nothing logged);
 * - default: a launcher without `metricsPort` (call counts for the registry/status and the
 *   event log, no Prometheus);
 * - metrics: a launcher with `metricsPort` (prom-client series too), scraped every second
 *   during the run as Prometheus would.
 * Prints a table and writes bench/results-metrics.json. `--quick` for a short run.
 */
import { RpcAgentServerLauncher } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { Servicer } from "../src/server/servicer.ts";
import { createPool } from "../src/server/pool/create.ts";
import { bindGrpc } from "../src/server/bindings/grpc/binding.ts";
import { DEFAULT_LIMITS } from "../src/core/limits.ts";
import { Echo } from "./fixtures/bench-agents.ts";
import { consola } from "consola";

// The event log's creation/deletion lines would interleave with the table.
consola.level = 1;

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 3 : 7;
const SYNC_N = quick ? 1000 : 3000;
const ASYNC_N = quick ? 5000 : 20_000;
const WINDOW = 256;

type Setup = { name: string; host: string; port: number; metricsPort?: number; stop(): Promise<void> };

async function bare(): Promise<Setup> {
  const pool = await createPool({ poolType: "local", maxPoolSize: 65_536, maxExpireTime: 600, serverId: "bare" } as Parameters<typeof createPool>[0]);
  const address = { host: "localhost", port: 0 };
  const servicer = new Servicer({ serverId: "bare", address, aliases: ["localhost", "127.0.0.1"], resolveClass: (n) => (n === "Echo" ? (Echo as never) : undefined), capacity: 32, maxQueue: 65_536, pool, maxTimeoutSeconds: 5, limits: DEFAULT_LIMITS });
  const binding = await bindGrpc({ servicer, bindHost: "localhost", port: 0, token: undefined, maxMessageBytes: DEFAULT_LIMITS.maxMessageBytes, tls: undefined } as Parameters<typeof bindGrpc>[0]);
  address.port = binding.port;
  return {
    name: "bare (no observer)",
    host: "localhost",
    port: binding.port,
    async stop() {
      await binding.shutdown(0);
      await servicer.close();
    },
  };
}

async function launched(metrics: boolean): Promise<Setup> {
  const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Echo], maxPoolSize: 65_536, ...(metrics ? { metricsPort: 0 } : {}) });
  await l.launch();
  return { name: metrics ? "metrics (prom-client, scraped 1/s)" : "default (counts + event log)", host: l.host, port: l.port, ...(l.metricsPort ? { metricsPort: l.metricsPort } : {}), stop: () => l.shutdown() };
}

async function syncUs(s: Setup): Promise<number> {
  const e = Echo.toDist({ host: s.host, port: s.port });
  for (let i = 0; i < 200; i++) await e.echo(i);
  const t0 = performance.now();
  for (let i = 0; i < SYNC_N; i++) await e.echo(i);
  const us = ((performance.now() - t0) * 1000) / SYNC_N;
  await e.delete();
  return us;
}

async function asyncRate(s: Setup): Promise<number> {
  const e = Echo.toDist({ host: s.host, port: s.port });
  await e.aecho(0);
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < ASYNC_N) {
      const i = next++;
      await e.aecho(i);
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, lane));
  const rate = ASYNC_N / ((performance.now() - t0) / 1000);
  await e.delete();
  return rate;
}

/** The observers' own cost per call, ns, timed directly (what the end-to-end rows cannot resolve through noise). */
async function observerNs(prom: boolean): Promise<number> {
  const { CallStats } = await import("../src/server/metrics.ts");
  const { eventLog } = await import("../src/server/event-log.ts");
  const { observers } = await import("../src/server/observer.ts");
  const stats = new CallStats();
  if (prom) await stats.enablePrometheus({ running: () => 0, queued: () => 0, agents: () => 0, poolResults: () => 0 });
  const obs = observers([stats, eventLog("bench")])!;
  const req = { t: "call", oid: "o", name: "echo", args: new Uint8Array() } as never;
  const ok = { t: "value", value: new Uint8Array() } as never;
  const n = 200_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    obs.started(req, "Echo");
    obs.answered(req, ok, 0.0003, "Echo");
  }
  stats.close();
  return ((performance.now() - t0) * 1e6) / n;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const setups = [await bare(), await launched(false), await launched(true)];
const scraper = setInterval(() => {
  for (const s of setups) if (s.metricsPort) void fetch(`http://127.0.0.1:${s.metricsPort}/metrics`).then((r) => r.text());
}, 1000);
const sync = new Map<string, number[]>(setups.map((s) => [s.name, []]));
const rate = new Map<string, number[]>(setups.map((s) => [s.name, []]));
for (let r = 0; r < ROUNDS; r++) {
  // Alternate the order each round so drift of a shared machine hits each set-up alike.
  const order = r % 2 ? [...setups].reverse() : setups;
  for (const s of order) sync.get(s.name)!.push(await syncUs(s));
  for (const s of order) rate.get(s.name)!.push(await asyncRate(s));
}
clearInterval(scraper);
for (const s of setups) await s.stop();
await closeAllConnections();

const base = setups[0]!.name;
const rows = setups.map((s) => {
  const us = median(sync.get(s.name)!);
  const cps = median(rate.get(s.name)!);
  return {
    setup: s.name,
    syncRoundTripUs: Math.round(us * 10) / 10,
    syncVsBare: Math.round((us / median(sync.get(base)!)) * 1000) / 1000,
    asyncCallsPerSec: Math.round(cps),
    asyncVsBare: Math.round((cps / median(rate.get(base)!)) * 1000) / 1000,
  };
});
const perCall = { countsAndLogNs: Math.round(await observerNs(false)), withPrometheusNs: Math.round(await observerNs(true)) };
console.log(`\nObserver cost per call, timed directly: counts + event log ${perCall.countsAndLogNs} ns; with Prometheus ${perCall.withPrometheusNs} ns`);
console.log(`\nMetrics cost (medians of ${ROUNDS} alternating rounds; sync: ${SYNC_N} sequential echo calls; async: ${ASYNC_N} calls, ${WINDOW} in flight)\n`);
console.log("| set-up | sync round trip | vs bare | async calls/s | vs bare |");
console.log("|---|---|---|---|---|");
for (const r of rows) console.log(`| ${r.setup} | ${r.syncRoundTripUs} µs | ${r.syncVsBare.toFixed(3)}× | ${r.asyncCallsPerSec} | ${r.asyncVsBare.toFixed(3)}× |`);
const out = { at: new Date().toISOString(), bun: Bun.version, rounds: ROUNDS, syncN: SYNC_N, asyncN: ASYNC_N, window: WINDOW, rows, observerPerCall: perCall };
await Bun.write(new URL("./results-metrics.json", import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
console.log(`\n${JSON.stringify(out)}`);
process.exit(0);
