#!/usr/bin/env bun
/**
 * Soak: 100,000 calls (10,000 with `--quick`) with 64 in flight against an independent server
 * running in its own process (`launch({ inSubprocess: true })`), half sync `echo`, half async
 * `aecho` (call + wait, results kept by the server's local pool). Reports errors (must be 0),
 * the server's RSS before and after (from `getServerInfo().mem`, sampled every tenth of the run),
 * throughput, and p50/p99 latency per call; and, to tell a leak from memory the allocator keeps,
 * the server's JS heap and live object count after a forced full GC (`SoakProbe`), before and
 * after. Not a test: a table, and bench/results.json "soak".
 *
 *   bun bench/soak.ts [--quick]
 */
import { Msg, RpcAgentServerLauncher, RpcClient } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { Echo } from "./fixtures/bench-agents.ts";
import { SoakProbe } from "./fixtures/soak-agents.ts";
import { here, printTable, quick, saveResults, stats, type Row } from "./lib.ts";

const N = quick ? 10_000 : 100_000;
const IN_FLIGHT = 64;
/** Warm-up: enough async calls to fill the server's result pool (8192), so before and after compare like with like. */
const WARM = 20_000;

const launcher = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Echo, SoakProbe], shutdownGraceMs: 1000 });
await launcher.launch({ inSubprocess: true });
const conf = { host: launcher.host, port: launcher.port };
const client = new RpcClient(conf.host, conf.port);
const echo = Echo.toDist(conf);
const probe = SoakProbe.toDist(conf);
const payload = (i: number) => ({ i, msg: new Msg({ name: "soak", content: `message ${i}`, metadata: { n: [1, 2, 3] } }) });

let errors = 0;
const firstErrors: string[] = [];
const lat = { sync: [] as number[], async: [] as number[] };

/** `n` calls, `IN_FLIGHT` at a time; even calls sync, odd async. */
async function run(n: number, record: boolean, onTenth?: (k: number) => Promise<void>): Promise<number> {
  let next = 0;
  let done = 0;
  let tenth = 1;
  const t0 = performance.now();
  const lane = async () => {
    while (next < n) {
      const i = next++;
      const isAsync = i % 2 === 1;
      const t = performance.now();
      try {
        const v = (await (isAsync ? echo.aecho(payload(i)) : echo.echo(payload(i)))) as { i: number; msg: Msg };
        if (v.i !== i || !(v.msg instanceof Msg)) throw new Error(`wrong answer for call ${i}`);
      } catch (e) {
        errors++;
        if (firstErrors.length < 5) firstErrors.push(String((e as Error).message ?? e));
      }
      if (record) (isAsync ? lat.async : lat.sync).push((performance.now() - t) * 1000);
      done++;
      if (onTenth && done >= (tenth * n) / 10) {
        const k = tenth++;
        await onTenth(k);
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  return (performance.now() - t0) / 1000;
}

try {
  await run(WARM, false);
  const heapBefore = await probe.collect();
  const before = await client.getServerInfo();
  const memTrace: number[] = [before.mem];
  process.stdout.write(`soak: ${N} calls, ${IN_FLIGHT} in flight, server pid ${before.pid}, RSS ${before.mem} MiB after a ${WARM}-call warm-up\n`);
  const seconds = await run(N, true, async (k) => {
    const info = await client.getServerInfo();
    memTrace.push(info.mem);
    process.stdout.write(`  ${k * 10}%  RSS ${info.mem} MiB  results held ${info.results ?? "?"}  pending ${info.pending}\n`);
  });
  const after = await client.getServerInfo();
  const heapAfter = await probe.collect();
  const all = [...lat.sync, ...lat.async];
  const s = stats(all);
  const ss = stats(lat.sync);
  const sa = stats(lat.async);
  const rows: Row[] = [
    { id: "soak.calls", name: `calls (${IN_FLIGHT} in flight, half sync, half async)`, value: N, unit: "calls" },
    { id: "soak.errors", name: "errors", value: errors, unit: "errors", budget: { text: "= 0", max: 0 }, ok: errors === 0 },
    { id: "soak.rate", name: "throughput", value: N / seconds, unit: "calls/s" },
    { id: "soak.latency", name: "latency, all calls (p50 / p99)", value: s.median, p99: s.p99, unit: "µs" },
    { id: "soak.latency.sync", name: "latency, sync echo", value: ss.median, p99: ss.p99, unit: "µs" },
    { id: "soak.latency.async", name: "latency, async call + wait", value: sa.median, p99: sa.p99, unit: "µs" },
    { id: "soak.rss.before", name: `server RSS before (after ${WARM.toLocaleString("en-US")} warm-up calls)`, value: before.mem, unit: "MiB" },
    { id: "soak.rss.after", name: "server RSS after", value: after.mem, unit: "MiB" },
    { id: "soak.rss.peak", name: "server RSS peak (sampled every 10%)", value: Math.max(...memTrace, after.mem), unit: "MiB" },
    { id: "soak.results", name: "results held by the pool after (max 8192)", value: after.results ?? 0, unit: "results" },
    { id: "soak.heap.before", name: "server JS heap after a full GC, before", value: heapBefore.heap, unit: "MiB" },
    { id: "soak.heap.after", name: "server JS heap after a full GC, after", value: heapAfter.heap, unit: "MiB" },
    { id: "soak.objects.before", name: "server live objects after a full GC, before", value: heapBefore.objects, unit: "objects" },
    { id: "soak.objects.after", name: "server live objects after a full GC, after", value: heapAfter.objects, unit: "objects" },
  ];
  printTable(`Soak: ${N} calls against an independent server subprocess`, rows);
  if (firstErrors.length) console.log(`first errors:\n  ${firstErrors.join("\n  ")}`);
  await saveResults(here("results.json"), "soak", rows);
  if (errors > 0) process.exitCode = 1;
} finally {
  await launcher.shutdown();
  await closeAllConnections();
}
process.exit();
