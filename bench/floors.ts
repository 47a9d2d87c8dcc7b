#!/usr/bin/env bun
/**
 * The raw floors every other section is measured against, in their own processes like the
 * real thing: a bare Bun IPC echo child, a bare grpc-js unary echo server (raw bytes, identity
 * serializers), and ioredis SET+GET against a throwaway redis-server (skipped, with a notice,
 * when redis-server is absent).
 *
 *   bun bench/floors.ts [--quick]
 */
import { rawClient } from "./fixtures/grpc-raw.ts";
import { here, latencyRow, quick, runSection, spawnReady, stats, throughputRow, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 5;
const N = quick ? 2000 : 10_000;
const PIPE = quick ? 10_000 : 40_000;
export const WINDOW = 256;
export const LARGE_MB = [1, 10, 30];

/** A bare Bun IPC echo child: `send(m)` resolves with the echoed message. */
export async function ipcEcho(): Promise<{ send(m: unknown): Promise<unknown>; stop(): Promise<void> }> {
  const waiting: Array<(v: unknown) => void> = [];
  let ready!: () => void;
  const up = new Promise<void>((r) => (ready = r));
  const p = Bun.spawn([process.execPath, here("./fixtures/echo-child.ts")], {
    serialization: "advanced",
    ipc: (m) => (m === "ready" ? ready() : waiting.shift()?.(m)),
    stdio: ["ignore", "inherit", "inherit"],
  });
  await up;
  return {
    send: (m) => new Promise((r) => (waiting.push(r), p.send(m))),
    async stop() {
      p.kill();
      await p.exited;
    },
  };
}

/** The same shape as an actorscope call frame: a small envelope with a byte payload. */
export function ipcEnvelope(bytes: Uint8Array): unknown {
  return { k: "q", i: 1, r: { t: "call", oid: "0".repeat(32), name: "echo", args: bytes } };
}

/** Median ms of `rounds` round trips of `f` (after one warm-up). */
export async function msRow(row: Omit<Row, "value" | "unit">, rounds: number, f: () => Promise<unknown>): Promise<Row> {
  await f();
  const xs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    await f();
    xs.push(performance.now() - t);
  }
  const s = stats(xs);
  return { ...row, value: s.median, p99: s.p99, unit: "ms", rounds: xs };
}

/** Bytes of `mb` MB (10^6), filled so nothing can compress them away. */
export function payload(mb: number): Uint8Array {
  const b = new Uint8Array(mb * 1_000_000);
  for (let i = 0; i < b.length; i += 4096) b[i] = i & 255;
  return b;
}

async function ipcRows(): Promise<Row[]> {
  const rows: Row[] = [];
  const ipc = await ipcEcho();
  const small = ipcEnvelope(new Uint8Array(40));
  rows.push(await latencyRow({ id: "floor.ipc.rtt", name: "raw Bun IPC ping-pong (call-shaped object envelope)" }, ROUNDS, N, () => ipc.send(small)));
  const bytes = new Uint8Array(100);
  rows.push(await latencyRow({ id: "floor.ipc.rtt.bytes", name: "raw Bun IPC ping-pong (one 100-byte Uint8Array)" }, ROUNDS, N, () => ipc.send(bytes)));
  rows.push(await throughputRow({ id: "floor.ipc.pipe", name: `raw Bun IPC pipelined (${WINDOW} in flight)` }, ROUNDS, PIPE, WINDOW, () => ipc.send(small)));
  for (const mb of LARGE_MB) {
    const m = ipcEnvelope(payload(mb));
    rows.push(await msRow({ id: `floor.ipc.${mb}MB`, name: `raw Bun IPC echo of ${mb} MB` }, quick ? 3 : 5, () => ipc.send(m)));
  }
  await ipc.stop();
  return rows;
}

async function grpcRows(): Promise<Row[]> {
  const rows: Row[] = [];
  const srv = await spawnReady<{ port: number }>([process.execPath, here("./fixtures/grpc-echo-server.ts")]);
  const c = rawClient(srv.ready.port);
  const small = new Uint8Array(64);
  rows.push(await latencyRow({ id: "floor.grpc.rtt", name: "raw grpc-js unary echo (64 B, raw bytes)" }, ROUNDS, N, () => c.echo(small)));
  rows.push(await throughputRow({ id: "floor.grpc.pipe", name: `raw grpc-js unary echo (${WINDOW} in flight)` }, ROUNDS, quick ? 10_000 : 30_000, WINDOW, () => c.echo(small)));
  for (const mb of LARGE_MB) {
    const b = payload(mb);
    rows.push(await msRow({ id: `floor.grpc.${mb}MB`, name: `raw grpc-js echo of ${mb} MB` }, quick ? 3 : 5, () => c.echo(b)));
  }
  c.close();
  srv.proc.kill();
  await srv.proc.exited;
  return rows;
}

async function redisRows(): Promise<Row[]> {
  if (!Bun.which("redis-server")) {
    console.log("notice: redis-server not found: the Redis rows are skipped");
    return [{ id: "floor.redis.rtt", name: "raw ioredis SET+GET", value: NaN, unit: "µs", note: "skipped: redis-server is not installed" }];
  }
  const { startRedis } = await import("../test/helpers/redis.ts");
  const { Redis } = await import("ioredis");
  const server = await startRedis();
  const r = new Redis(server.url);
  const v = Buffer.alloc(64, 1);
  let k = 0;
  const row = await latencyRow({ id: "floor.redis.rtt", name: "raw ioredis SET+GET (64 B, sequential)" }, ROUNDS, quick ? 1000 : 3000, async () => {
    const key = `bench:${k++ & 1023}`;
    await r.set(key, v);
    await r.getBuffer(key);
  });
  r.disconnect();
  await server.stop();
  return [row];
}

if (import.meta.main) {
  await runSection("raw floors", async () => [...(await ipcRows()), ...(await grpcRows()), ...(await redisRows())]);
}
