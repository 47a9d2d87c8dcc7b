#!/usr/bin/env bun
/**
 * Child mode (Bun IPC), against the raw Bun IPC floor: init and stop of 5 child agents, the
 * seed scenario (S = 1), sync round trip, async call latency, async pipelined throughput
 * (one client), and n:n throughput (4 agents in 4 children, 4 concurrent callers).
 *
 *   bun bench/child.ts [--quick]
 */
import * as Comlink from "comlink";
import { configureChildren, type Remote } from "../src/index.ts";
import { warmPool } from "../src/client/warm-pool.ts";
import { seedRounds } from "./fixtures/seed.ts";
import { Echo, Worker } from "./fixtures/bench-agents.ts";
import { WINDOW, ipcEcho, ipcEnvelope } from "./floors.ts";
import { here, latencyRow, pairedLatencyRow, pumpCalls, quick, runSection, stats, throughputRow, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 5;
const N = quick ? 2000 : 10_000;
const PIPE = quick ? 10_000 : 40_000;
const S = 1;

/** The floor of a child start: 5 bare `bun` processes spawned at once, each answering one IPC message. */
async function bareSpawns(n = 5): Promise<number> {
  const t = performance.now();
  const procs = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<ReturnType<typeof Bun.spawn>>((resolve) => {
        const p = Bun.spawn([process.execPath, here("./fixtures/echo-child.ts")], {
          serialization: "advanced",
          stdio: ["ignore", "inherit", "inherit"],
          ipc: (m) => (m === "ready" ? p.send("ping") : resolve(p)),
        });
      }),
    ),
  );
  const ms = performance.now() - t;
  for (const p of procs) p.kill();
  await Promise.all(procs.map((p) => p.exited));
  return ms;
}

async function lifecycleRows(): Promise<Row[]> {
  const inits: number[] = [];
  const bares: number[] = [];
  const stops: number[] = [];
  const seeds: number[] = [];
  const INIT_ROUNDS = quick ? 5 : 11;
  await bareSpawns();
  for (let r = 0; r < INIT_ROUNDS; r++) {
    // The floor and the row in alternating rounds, so both see the same load.
    bares.push(await bareSpawns());
    const t0 = performance.now();
    const agents = Array.from({ length: 5 }, (_, i) => new Worker(`W${i}`, S).toDist());
    // Init ends when every agent answers a call.
    await Promise.all(agents.map((a) => a.name));
    inits.push(performance.now() - t0);
    if (r < (quick ? 1 : 2)) seeds.push(...(await seedRounds(agents, quick ? 1 : 2)));
    const t2 = performance.now();
    await Promise.all(agents.map((a) => a.stop()));
    stops.push(performance.now() - t2);
  }
  return [
    { id: "child.init5.floor", name: "5 bare bun processes spawned, each answering one IPC message (floor)", value: stats(bares).median, unit: "ms", rounds: bares },
    { id: "child.init5", name: "child: init of 5 agents (spawn → answering)", value: stats(inits).median, unit: "ms", rounds: inits, floor: stats(bares).median, budget: { text: "≤ 1.5× 5 bare spawns (AgentScope 108 ms)", maxRatio: 1.5 }, note: "floor = 5 bare `bun` processes spawned at once, each answering one IPC message, in alternating rounds" },
    { id: "child.seed", name: `child: seed scenario S=${S} (5 agents, blocking work)`, value: stats(seeds).median, unit: "ms", rounds: seeds, budget: { text: `≤ S + 50 ms`, max: S * 1000 + 50 } },
    { id: "child.stop5", name: "child: stop 5 children", value: stats(stops).median, unit: "ms", rounds: stops, budget: { text: "≤ 100 ms (AgentScope ~29 s)", max: 100 } },
  ];
}

/**
 * The warm pool: `toDist()` → first answer when a spare (runtime loaded, class module imported
 * by an earlier child) is taken, against starting a Comlink Bun Worker → its first answer.
 */
async function warmRows(): Promise<Row[]> {
  const R = quick ? 7 : 15;
  await configureChildren({ warm: 1 });
  // The first child of the class teaches the pool its module; spares spawned after import it.
  const first = new Echo().toDist();
  await first.echo(0);
  await first.stop();
  const warm: number[] = [];
  const workers: number[] = [];
  for (let r = 0; r < R; r++) {
    await refilled();
    const t = performance.now();
    const e = new Echo().toDist();
    await e.echo(1);
    warm.push(performance.now() - t);
    await e.stop();
    const t2 = performance.now();
    const w = new globalThis.Worker(here("./fixtures/comlink-worker.ts"));
    const agent = Comlink.wrap<{ echo(v: number): number }>(w as unknown as Comlink.Endpoint);
    await agent.echo(1);
    workers.push(performance.now() - t2);
    w.terminate();
  }
  await configureChildren({ warm: 0 });
  return [
    { id: "child.warm.first", name: "child: warm pool, toDist() → first answer", value: stats(warm).median, unit: "ms", rounds: warm, floor: stats(workers).median, budget: { text: "≤ 5 ms", max: 5 }, note: "floor = a Comlink Bun Worker started → its first answer, in alternating rounds" },
    { id: "child.comlink.start", name: "Comlink (Bun Worker): new Worker → first answer", value: stats(workers).median, unit: "ms", rounds: workers },
  ];
}

/** Wait (polled, bounded) until the pool holds a loaded spare that imported the class's module. */
async function refilled(): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    await configureChildren({ warm: 1 });
    if (warmPool.ready() >= 1) return;
    await Bun.sleep(20);
  }
  throw new Error("the warm pool did not refill within 20 s");
}

async function callRows(): Promise<Row[]> {
  const rows: Row[] = [];
  const e = new Echo().toDist();
  await e.echo(0);
  // The budget row: the raw ping-pong of a call-shaped envelope measured in alternating
  // rounds with the calls (the same load on both), plus the bytes-only ping-pong for context.
  const raw = await ipcEcho();
  const envelope = ipcEnvelope(new Uint8Array(40));
  const bytes = new Uint8Array(100);
  const sync = await pairedLatencyRow({ id: "child.sync", name: "child: sync call round trip", budget: { text: "≤ 1.5× raw IPC (AgentScope 445 µs)", maxRatio: 1.5 } }, ROUNDS, N, () => raw.send(envelope), (i) => e.echo(i));
  const vsBytes = await pairedLatencyRow({ id: "child.sync.vsbytes", name: "child: sync call round trip (vs a bytes-only ping-pong)" }, ROUNDS, N, () => raw.send(bytes), (i) => e.echo(i));
  sync.note = `floor = raw ping-pong of a call-shaped object envelope in alternating rounds; against a 100-byte Uint8Array ping-pong the same calls are ${(vsBytes.value / vsBytes.floor!).toFixed(2)}× (${vsBytes.floor!.toFixed(1)} µs)`;
  await raw.stop();
  rows.push(sync, vsBytes);
  rows.push(await latencyRow({ id: "child.async.lat", name: "child: async call, awaited at once (call + wait)", floorId: "floor.ipc.rtt" }, ROUNDS, N / 2, (i) => e.aecho(i)));
  rows.push(
    await throughputRow(
      { id: "child.async.pipe", name: `child: async pipelined, 1 client (${WINDOW} in flight)`, floorId: "floor.ipc.pipe", budget: { text: "≥ 20k/s (AgentScope 1,029/s)", min: 20_000 } },
      ROUNDS, PIPE, WINDOW, (i) => e.aecho(i),
    ),
  );
  rows.push(await throughputRow({ id: "child.sync.pipe", name: `child: sync pipelined, 1 client (${WINDOW} in flight)`, floorId: "floor.ipc.pipe" }, ROUNDS, PIPE, WINDOW, (i) => e.echo(i)));
  await e.stop();
  return rows;
}

/** 4 agents, each in its own child; 4 callers, each spreading its calls over all 4 agents. */
async function nnRow(): Promise<Row> {
  const agents: Array<Remote<Echo>> = Array.from({ length: 4 }, () => new Echo().toDist());
  await Promise.all(agents.map((a) => a.echo(0)));
  const per = PIPE / 4;
  const run = () => Promise.all(Array.from({ length: 4 }, (_, c) => pumpCalls(per, WINDOW / 4, (i) => agents[(c + i) % 4]!.aecho(i))));
  await run();
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    await run();
    rates.push(PIPE / ((performance.now() - t) / 1000));
  }
  await Promise.all(agents.map((a) => a.stop()));
  return { id: "child.async.nn", name: "child: async n:n (4 callers × 4 agents in 4 children)", value: stats(rates).median, unit: "calls/s", rounds: rates, note: "callers are 4 concurrent loops of one process; each child is its own IPC connection" };
}

if (import.meta.main) {
  await runSection("child mode (Bun IPC)", async () => [...(await lifecycleRows()), ...(await warmRows()), ...(await callRows()), await nnRow()]);
}
