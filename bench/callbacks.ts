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

/** Rounds of `floor` and `measure` alternating (both see the same load); medians of each, in `unit`. */
async function paired(row: Omit<Row, "value" | "unit">, unit: string, floor: () => Promise<number>, measure: () => Promise<number>): Promise<Row> {
  await floor();
  await measure();
  const fl: number[] = [];
  const xs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    fl.push(await floor());
    xs.push(await measure());
  }
  return { ...row, value: stats(xs).median, unit, floor: stats(fl).median, rounds: xs };
}

/** Sequential µs per call of `f` over N calls. */
async function usPerCall(f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < N; i++) await f();
  return ((performance.now() - t) * 1000) / N;
}

/** Calls/s of PIPE calls of `f`, WINDOW in flight. */
async function callsPerSecond(f: () => PromiseLike<unknown>): Promise<number> {
  const t = performance.now();
  await pumpCalls(PIPE, WINDOW, f);
  return PIPE / ((performance.now() - t) / 1000);
}

async function childRows(): Promise<Row[]> {
  const ipc = await ipcEcho();
  const small = ipcEnvelope(new Uint8Array(40));
  const p = new Pinger().toDist();
  using cb = callback((i: number) => i);
  const rows = [
    await paired({ id: "callbacks.child.rtt", name: "child: callback round trip (server → caller → server), sequential", budget: "vs raw Bun IPC echo" }, "µs", () => usPerCall(() => ipc.send(small)), () => p.pingMany(N, cb).result()),
    await paired({ id: "callbacks.child.pipe", name: `child: callback calls, ${WINDOW} in flight`, budget: "vs raw Bun IPC pipelined echo" }, "calls/s", () => callsPerSecond(() => ipc.send(small)), () => p.pingPipelined(PIPE, WINDOW, cb).result()),
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
    await paired({ id: "callbacks.grpc.rtt", name: "grpc: callback round trip (server → caller → server), sequential", budget: "vs raw grpc-js unary echo" }, "µs", () => usPerCall(() => c.echo(small)), () => p.pingMany(N, cb).result()),
    await paired({ id: "callbacks.grpc.pipe", name: `grpc: callback calls, ${WINDOW} in flight`, budget: "vs raw grpc-js pipelined echo" }, "calls/s", () => callsPerSecond(() => c.echo(small)), () => p.pingPipelined(PIPE, WINDOW, cb).result()),
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
