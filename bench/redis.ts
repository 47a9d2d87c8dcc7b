#!/usr/bin/env bun
/**
 * The Redis result pool behind an independent server (own process), against the raw ioredis
 * SET+GET floor: async call latency (call + wait) and async pipelined throughput. Skipped,
 * with a printed notice, when redis-server is absent. (bench/redis-pool.ts weighs the pool's
 * internals without a transport.)
 *
 *   bun bench/redis.ts [--quick]
 */
import { Echo } from "./fixtures/bench-agents.ts";
import { WINDOW } from "./floors.ts";
import { serverProcess } from "./grpc.ts";
import { latencyRow, quick, runSection, throughputRow, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 5;

async function redisRows(): Promise<Row[]> {
  if (!Bun.which("redis-server")) {
    console.log("notice: redis-server not found: the Redis pool rows are skipped");
    return [{ id: "redis.async.lat", name: "independent + Redis pool: async call", value: NaN, unit: "µs", note: "skipped: redis-server is not installed" }];
  }
  const { startRedis } = await import("../test/helpers/redis.ts");
  const redis = await startRedis();
  const l = await serverProcess({ poolType: "redis", redisUrl: redis.url });
  try {
    const e = new Echo().toDist({ host: l.host, port: l.port });
    await e.echo(0);
    return [
      await latencyRow({ id: "redis.async.lat", name: "independent + Redis pool: async call, awaited at once", floorId: "floor.redis.rtt" }, ROUNDS, quick ? 500 : 2000, (i) => e.aecho(i)),
      await throughputRow({ id: "redis.async.pipe", name: `independent + Redis pool: async pipelined (${WINDOW} in flight)`, budget: { text: "≥ 23.7k/s (3× the 7.9k/s of issue 20)", min: 23_700 } }, ROUNDS, quick ? 5000 : 20_000, WINDOW, (i) => e.aecho(i)),
    ];
  } finally {
    await l.shutdown();
    await redis.stop();
  }
}

if (import.meta.main) await runSection("Redis result pool (independent server)", redisRows);
