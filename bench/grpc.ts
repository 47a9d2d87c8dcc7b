#!/usr/bin/env bun
/**
 * Independent mode (gRPC), against the raw grpc-js floor: the server runs in its own process
 * (`launch({ inSubprocess: true })`), like the raw echo server. Rows: init of 5 agents, the
 * seed scenario (S = 1; one server with awaited work, and five servers with blocking work),
 * sync round trip, async call latency, async pipelined throughput (one client), n:n
 * throughput (4 client processes × 4 agents).
 *
 *   bun bench/grpc.ts [--quick]
 */
import { RpcAgentServerLauncher, type Remote } from "../src/index.ts";
import { seedRounds } from "./fixtures/seed.ts";
import { Echo, Idle, IoWorker, Worker } from "./fixtures/bench-agents.ts";
import { WINDOW } from "./floors.ts";
import { rawClient } from "./fixtures/grpc-raw.ts";
import { here, latencyRow, pairedLatencyRow, quick, runSection, spawnReady, stats, throughputRow, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 5;
const N = quick ? 2000 : 10_000;
const PIPE = quick ? 10_000 : 40_000;
const S = 1;
const CLASSES = [Echo, Worker, IoWorker, Idle];

/** An agent server in its own process. */
export async function serverProcess(opts: ConstructorParameters<typeof RpcAgentServerLauncher>[0] = {}): Promise<RpcAgentServerLauncher> {
  const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: CLASSES, shutdownGraceMs: 500, ...opts });
  await l.launch({ inSubprocess: true });
  return l;
}

async function lifecycleRows(l: RpcAgentServerLauncher): Promise<Row[]> {
  const conf = { host: l.host, port: l.port };
  const inits: number[] = [];
  let first = 0;
  for (let r = 0; r <= ROUNDS; r++) {
    const t0 = performance.now();
    const agents = Array.from({ length: 5 }, (_, i) => new IoWorker(`W${i}`, S).toDist(conf));
    await Promise.all(agents.map((a) => a.name));
    if (r === 0) first = performance.now() - t0;
    else inits.push(performance.now() - t0);
    await Promise.all(agents.map((a) => a.delete()));
  }
  const agents = Array.from({ length: 5 }, (_, i) => new IoWorker(`W${i}`, S).toDist(conf));
  await Promise.all(agents.map((a) => a.name));
  const seeds = await seedRounds(agents, quick ? 1 : 3);
  await Promise.all(agents.map((a) => a.delete()));
  return [
    { id: "grpc.init5.first", name: "independent: init of 5 agents, first (loads grpc-js, connects)", value: first, unit: "ms" },
    { id: "grpc.init5", name: "independent: init of 5 agents (create → answering)", value: stats(inits).median, unit: "ms", rounds: inits, budget: { text: "≤ 5 ms (AgentScope 10 ms)", max: 5 } },
    { id: "grpc.seed", name: `independent: seed scenario S=${S}, 1 server (awaited work)`, value: stats(seeds).median, unit: "ms", rounds: seeds, budget: { text: "≤ S + 50 ms", max: S * 1000 + 50 } },
  ];
}

/**
 * The first init of 5 agents from a fresh client process (bench/fixtures/first-init.ts): from
 * its first `toDist()` (the library imported, as by any script) until all 5 answer, loading
 * grpc-js and the service and connecting on the way. Median of several fresh processes.
 */
async function freshFirstRow(l: RpcAgentServerLauncher): Promise<Row[]> {
  const ms: number[] = [];
  const total: number[] = [];
  const raw: number[] = [];
  const srv = await spawnReady<{ port: number }>([process.execPath, here("./fixtures/grpc-echo-server.ts")]);
  for (let r = 0; r < (quick ? 5 : 9); r++) {
    // The floor in alternating rounds: a fresh process importing grpc-js and making one raw call.
    const f = Bun.spawn([process.execPath, here("./fixtures/grpc-raw-first.ts"), String(srv.ready.port)], { stdout: "pipe", stderr: "inherit" });
    raw.push((JSON.parse(await new Response(f.stdout).text()) as { ms: number }).ms);
    await f.exited;
    const p = Bun.spawn([process.execPath, here("./fixtures/first-init.ts"), l.host, String(l.port)], { stdout: "pipe", stderr: "inherit" });
    const out = JSON.parse(await new Response(p.stdout).text()) as { ms: number; total: number };
    await p.exited;
    ms.push(out.ms);
    total.push(out.total);
  }
  srv.proc.kill();
  await srv.proc.exited;
  return [
    { id: "grpc.first.floor", name: "raw grpc-js from a fresh process: import + first unary echo (floor)", value: stats(raw).median, unit: "ms", rounds: raw },
    { id: "grpc.init5.fresh", name: "independent: first init of 5 agents from a fresh client process", value: stats(ms).median, unit: "ms", rounds: ms, floor: stats(raw).median, budget: { text: "≤ 60 ms", max: 60 }, note: `from the first toDist() (library imported) to 5 answers, grpc-js loaded and connected on the way; from process start ${stats(total).median.toFixed(0)} ms; floor = a fresh process importing grpc-js and making one raw unary echo, in alternating rounds` },
  ];
}

/** The seed with blocking work: one agent on each of 5 servers (one event loop each). */
async function seedBlockingRow(): Promise<Row> {
  const servers = await Promise.all(Array.from({ length: 5 }, () => serverProcess()));
  const agents = servers.map((s, i) => new Worker(`W${i}`, S).toDist({ host: s.host, port: s.port }));
  await Promise.all(agents.map((a) => a.name));
  const seeds = await seedRounds(agents, quick ? 1 : 3);
  await Promise.all(servers.map((s) => s.shutdown()));
  return { id: "grpc.seed.blocking", name: `independent: seed scenario S=${S}, 5 servers (blocking work)`, value: stats(seeds).median, unit: "ms", rounds: seeds, budget: { text: "≤ S + 50 ms", max: S * 1000 + 50 } };
}

async function callRows(l: RpcAgentServerLauncher): Promise<Row[]> {
  const rows: Row[] = [];
  const e = new Echo().toDist({ host: l.host, port: l.port });
  await e.echo(0);
  // The budget row: the raw grpc-js echo (own server process) in alternating rounds.
  const srv = await spawnReady<{ port: number }>([process.execPath, here("./fixtures/grpc-echo-server.ts")]);
  const raw = rawClient(srv.ready.port);
  const bytes = new Uint8Array(64);
  const sync = await pairedLatencyRow({ id: "grpc.sync", name: "independent: sync call round trip", budget: { text: "≤ 1.3× raw grpc-js (AgentScope 445 µs)", maxRatio: 1.3 } }, ROUNDS, N, () => raw.echo(bytes), (i) => e.echo(i));
  sync.note = "floor = raw grpc-js unary echo of 64 bytes (identity serializers, own server process) in alternating rounds";
  rows.push(sync);
  raw.close();
  srv.proc.kill();
  rows.push(await latencyRow({ id: "grpc.async.lat", name: "independent: async call, awaited at once (call + wait)", floorId: "floor.grpc.rtt" }, ROUNDS, N / 2, (i) => e.aecho(i)));
  rows.push(
    await throughputRow(
      { id: "grpc.async.pipe", name: `independent: async pipelined, 1 client (${WINDOW} in flight)`, floorId: "floor.grpc.pipe", budget: { text: "≥ 10k/s (AgentScope 1,029/s)", min: 10_000 } },
      ROUNDS, PIPE, WINDOW, (i) => e.aecho(i),
    ),
  );
  rows.push(await throughputRow({ id: "grpc.sync.pipe", name: `independent: sync pipelined, 1 client (${WINDOW} in flight)`, floorId: "floor.grpc.pipe" }, ROUNDS, PIPE, WINDOW, (i) => e.echo(i)));
  await e.delete();
  return rows;
}

/** 4 client processes (4 gRPC connections) × 4 agents on one server, each client calling all 4. */
async function nnRow(l: RpcAgentServerLauncher): Promise<Row> {
  const agents: Array<Remote<Echo>> = Array.from({ length: 4 }, () => new Echo().toDist({ host: l.host, port: l.port }));
  await Promise.all(agents.map((a) => a.echo(0)));
  const per = quick ? 1000 : 5000;
  const clients = await Promise.all(
    Array.from({ length: 4 }, (_, c) =>
      spawnReady([process.execPath, here("./fixtures/nn-client.ts"), JSON.stringify({ host: l.host, port: l.port, oids: agents.map((a) => a.oid), n: per, window: WINDOW / 4, offset: c })]),
    ),
  );
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    for (const c of clients) (c.proc.stdin as import("bun").FileSink).write("go\n");
    for (const c of clients) (c.proc.stdin as import("bun").FileSink).flush();
    await Promise.all(clients.map((c) => c.lines.next()));
    rates.push((per * 4) / ((performance.now() - t) / 1000));
  }
  for (const c of clients) (c.proc.stdin as import("bun").FileSink).end();
  await Promise.all(clients.map((c) => c.proc.exited));
  await Promise.all(agents.map((a) => a.delete()));
  return { id: "grpc.async.nn", name: "independent: async n:n (4 client processes × 4 agents, 1 server)", value: stats(rates).median, unit: "calls/s", rounds: rates, note: "2 cores shared by 4 clients and the server" };
}

if (import.meta.main) {
  await runSection("independent mode (gRPC)", async () => {
    const l = await serverProcess();
    try {
      return [...(await lifecycleRows(l)), ...(await freshFirstRow(l)), await seedBlockingRow(), ...(await callRows(l)), await nnRow(l)];
    } finally {
      await l.shutdown();
    }
  });
}
