/**
 * Build the result pool a server asked for. The Redis pool (and ioredis with it) is loaded
 * only when asked for, so servers with a local pool never load it.
 */
import { LocalPool } from "./local.ts";
import type { PoolOptions, ResultPool } from "./types.ts";

/** Options of `createPool`. */
export interface CreatePoolOptions extends PoolOptions {
  poolType: "local" | "redis";
  /** Redis URL for the redis pool (default `redis://localhost:6379`). */
  redisUrl?: string;
  /** Namespaces keys in a shared Redis. */
  serverId: string;
}

/** The pool for `opts.poolType`; the Redis pool connects (and fails fast) before resolving. */
export async function createPool(opts: CreatePoolOptions): Promise<ResultPool> {
  if (opts.poolType === "redis") {
    const { RedisPool } = await import("./redis.ts");
    return RedisPool.connect({ ...opts, redisUrl: opts.redisUrl ?? "redis://localhost:6379" });
  }
  if (opts.poolType !== "local") throw new TypeError(`unknown pool type ${String(opts.poolType)} (local or redis)`);
  return new LocalPool(opts);
}
