#!/usr/bin/env bun
/**
 * Streams, against the raw floor of each transport measured in the same run: items/s of a
 * stream of small items and MB/s of a stream of 64 KiB chunks, from a child server (Bun IPC)
 * and from an independent server in its own process (gRPC). The floors: a bare Bun IPC echo
 * child and a bare grpc-js unary echo server, pipelined (256 small messages in flight; 32
 * chunks of 64 KiB in flight — the stream's window). A stream item crosses the wire once; an
 * echo carries its payload there and back, so the MB/s floor counts each payload once.
 * Target: ≥ 0.5× the raw pipelined floor in items/s.
 *
 *   bun bench/streams.ts [--quick]
 */
import { RpcAgentServerLauncher } from "../src/index.ts";
import { Producer } from "./fixtures/stream-agents.ts";
import { rawClient } from "./fixtures/grpc-raw.ts";
import { WINDOW, ipcEcho, ipcEnvelope } from "./floors.ts";
import { here, quick, runSection, spawnReady, stats, throughputRow, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 5;
const ITEMS = quick ? 50_000 : 300_000;
const CHUNK = 64 * 1024;
const CHUNKS = quick ? 500 : 3000;
/** In flight for the 64 KiB floors: as many as a stream's window. */
const CHUNK_WINDOW = 32;

/** Median rate over rounds of `f`, which moves `units` per round. */
async function rateRow(row: Omit<Row, "value" | "unit">, unit: string, units: number, f: () => Promise<unknown>): Promise<Row> {
  await f();
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = performance.now();
    await f();
    rates.push(units / ((performance.now() - t) / 1000));
  }
  return { ...row, value: stats(rates).median, unit, rounds: rates };
}

async function drain(s: AsyncIterable<unknown>, expect: number): Promise<void> {
  let n = 0;
  for await (const _ of s) n++;
  if (n !== expect) throw new Error(`stream gave ${n} items, expected ${expect}`);
}

const MB = (CHUNKS * CHUNK) / 1e6;

/** A calls/s row of 64 KiB echoes as MB/s (each payload counted once). */
function asMb(r: Row): Row {
  const mb = (x: number) => (x * CHUNK) / 1e6;
  return { ...r, value: mb(r.value), unit: "MB/s", ...(r.rounds ? { rounds: r.rounds.map(mb) } : {}) };
}

/** A calls/s floor as items/s: one small message is one item. */
function asItems(r: Row): Row {
  return { ...r, unit: "items/s" };
}

async function streamRows(prefix: string, p: ReturnType<typeof Producer.prototype.toDist>, floorItems: string, floorMb: string): Promise<Row[]> {
  return [
    await rateRow({ id: `${prefix}.stream.items`, name: `${prefix}: stream of small items (for await)`, floorId: floorItems, budget: { text: "≥ 0.5× raw pipelined", maxRatio: 2 } }, "items/s", ITEMS, () => drain(p.count(ITEMS), ITEMS)),
    await rateRow({ id: `${prefix}.stream.64k`, name: `${prefix}: stream of 64 KiB chunks`, floorId: floorMb }, "MB/s", MB, () => drain(p.chunks(CHUNKS, CHUNK), CHUNKS)),
  ];
}

async function childRows(): Promise<Row[]> {
  const ipc = await ipcEcho();
  const small = ipcEnvelope(new Uint8Array(40));
  const rows: Row[] = [asItems(await throughputRow({ id: "streams.floor.ipc.pipe", name: `raw Bun IPC pipelined echo (${WINDOW} in flight)` }, ROUNDS, ITEMS / 4, WINDOW, () => ipc.send(small)))];
  const big = ipcEnvelope(new Uint8Array(CHUNK).fill(7));
  const r = await throughputRow({ id: "streams.floor.ipc.64k", name: `raw Bun IPC pipelined echo of 64 KiB (${CHUNK_WINDOW} in flight)` }, ROUNDS, CHUNKS, CHUNK_WINDOW, () => ipc.send(big));
  rows.push(asMb(r));
  await ipc.stop();
  const p = new Producer().toDist();
  rows.push(...(await streamRows("child", p, "streams.floor.ipc.pipe", "streams.floor.ipc.64k")));
  await p.stop();
  return rows;
}

async function grpcRows(): Promise<Row[]> {
  const srv = await spawnReady<{ port: number }>([process.execPath, here("./fixtures/grpc-echo-server.ts")]);
  const c = rawClient(srv.ready.port);
  const small = new Uint8Array(64);
  const rows: Row[] = [asItems(await throughputRow({ id: "streams.floor.grpc.pipe", name: `raw grpc-js unary echo (${WINDOW} in flight)` }, ROUNDS, ITEMS / 10, WINDOW, () => c.echo(small)))];
  const big = new Uint8Array(CHUNK).fill(7);
  const r = await throughputRow({ id: "streams.floor.grpc.64k", name: `raw grpc-js unary echo of 64 KiB (${CHUNK_WINDOW} in flight)` }, ROUNDS, CHUNKS, CHUNK_WINDOW, () => c.echo(big));
  rows.push(asMb(r));
  c.close();
  srv.proc.kill();
  await srv.proc.exited;
  const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Producer], shutdownGraceMs: 500 });
  await l.launch({ inSubprocess: true });
  const p = Producer.toDist({ host: l.host, port: l.port });
  rows.push(...(await streamRows("grpc", p, "streams.floor.grpc.pipe", "streams.floor.grpc.64k")));
  await l.shutdown();
  return rows;
}

if (import.meta.main) {
  await runSection("streams", async () => [...(await childRows()), ...(await grpcRows())]);
}
