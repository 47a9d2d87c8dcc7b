#!/usr/bin/env bun
/**
 * Callbacks, against the raw floor of each transport in the same run: the round trip of one
 * callback call (server → caller → server, timed on the server) from a child server (floor:
 * a bare Bun IPC echo) and from an independent server in its own process (floor: a bare
 * grpc-js unary echo), sequential and pipelined (256 in flight). Floors and rows alternate
 * round by round, so both see the same machine load.
 *
 *   bun bench/callbacks.ts [--quick]
 */
import { RpcAgentServerLauncher, callback } from "../src/index.ts";
import { Pinger } from "./fixtures/callback-agents.ts";
import { rawClient } from "./fixtures/grpc-raw.ts";
import { WINDOW, ipcEcho, ipcEnvelope } from "./floors.ts";
import { here, pumpCalls, quick, runSection, spawnReady, stats, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 7;
const N = quick ? 1000 : 5000;
const PIPE = quick ? 5000 : 40_000;

/** Rounds of `floor` (sequential µs per echo) and `row` (µs per callback round trip), alternating. */
async function pairedUs(row: Omit<Row, "value" | "unit">, floor: () => Promise<unknown>, measure: () => Promise<number>): Promise<Row> {
  const floorUs = async () => {
    const t = performance.now();
    for (let i = 0; i < N; i++) await floor();
    return ((performance.now() - t) * 1000) / N;
  };
  await floorUs();
  await measure();
  const fl: number[] = [];
  const xs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    fl.push(await floorUs());
    xs.push(await measure());
  }
  return { ...row, value: stats(xs).median, unit: "µs", floor: stats(fl).median, rounds: xs };
}

/** The same for rates (calls/s, `window` in flight). */
async function pairedRate(row: Omit<Row, "value" | "unit">, floor: () => PromiseLike<unknown>, measure: () => Promise<number>): Promise<Row> {
  const floorRate = async () => {
    const t = performance.now();
    await pumpCalls(PIPE, WINDOW, floor);
    return PIPE / ((performance.now() - t) / 1000);
  };
  await floorRate();
  await measure();
  const fl: number[] = [];
  const xs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    fl.push(await floorRate());
    xs.push(await measure());
  }
  return { ...row, value: stats(xs).median, unit: "calls/s", floor: stats(fl).median, rounds: xs };
}

async function childRows(): Promise<Row[]> {
  const ipc = await ipcEcho();
  const small = ipcEnvelope(new Uint8Array(40));
  const p = new Pinger().toDist();
  using cb = callback((i: number) => i);
  const rows = [
    await pairedUs({ id: "callbacks.child.rtt", name: "child: callback round trip (server → caller → server), sequential", budget: "vs raw Bun IPC echo" }, () => ipc.send(small), () => p.pingMany(N, cb).result()),
    await pairedRate({ id: "callbacks.child.pipe", name: `child: callback calls, ${WINDOW} in flight`, budget: "vs raw Bun IPC pipelined echo" }, () => ipc.send(small), () => p.pingPipelined(PIPE, WINDOW, cb).result()),
  ];
  await ipc.stop();
  await p.stop();
  return rows;
}

async function grpcRows(): Promise<Row[]> {
  const srv = await spawnReady<{ port: number }>([process.execPath, here("./fixtures/grpc-echo-server.ts")]);
  const c = rawClient(srv.ready.port);
  const small = new Uint8Array(64);
  const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Pinger], shutdownGraceMs: 500 });
  await l.launch({ inSubprocess: true });
  const p = new Pinger().toDist({ host: l.host, port: l.port });
  using cb = callback((i: number) => i);
  const rows = [
    await pairedUs({ id: "callbacks.grpc.rtt", name: "grpc: callback round trip (server → caller → server), sequential", budget: "vs raw grpc-js unary echo" }, () => c.echo(small), () => p.pingMany(N, cb).result()),
    await pairedRate({ id: "callbacks.grpc.pipe", name: `grpc: callback calls, ${WINDOW} in flight`, budget: "vs raw grpc-js pipelined echo" }, () => c.echo(small), () => p.pingPipelined(PIPE, WINDOW, cb).result()),
  ];
  c.close();
  srv.proc.kill();
  await srv.proc.exited;
  await l.shutdown();
  return rows;
}

if (import.meta.main) {
  await runSection("callbacks", async () => [...(await childRows()), ...(await grpcRows())]);
}
