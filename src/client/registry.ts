/**
 * Reading the registry: `listServers(url)` once, `watchRegistry(url, onChange)` live (a
 * channel for joins and clean leaves, a poll every second for servers that died without a
 * word and whose record expired). ioredis is imported only when one of these is called, so
 * the package root never loads it.
 */
import type { Redis } from "ioredis";
import { AgentServerNotAliveError } from "../core/errors.ts";
import { EVENTS_CHANNEL, IDS_KEY, isServerRecord, recordKey, type ServerRecord } from "../core/server-record.ts";

export type { ServerRecord } from "../core/server-record.ts";

async function open(url: string, name: string): Promise<{ redis: Redis; shown: string }> {
  if (typeof url !== "string" || !/^rediss?:\/\//.test(url)) throw new TypeError("the registry must be a redis:// or rediss:// URL");
  const [{ Redis }, { redactUrl }] = await Promise.all([import("ioredis"), import("../server/pool/redis-connection.ts")]);
  const shown = redactUrl(url);
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 2000,
    commandTimeout: 2000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectionName: name,
    retryStrategy: (times) => Math.min(50 * times, 1000),
  });
  redis.on("error", () => {});
  try {
    await redis.connect();
  } catch (e) {
    redis.disconnect();
    const msg = (e as Error).message.split(url).join(shown);
    throw new AgentServerNotAliveError(`registry ${shown} is not available: ${msg}`);
  }
  return { redis, shown };
}

/** The live records in `redis`, by id; expired ids are dropped from the index on the way. */
async function read(redis: Redis): Promise<ServerRecord[]> {
  const now = Date.now();
  await redis.zremrangebyscore(IDS_KEY, "-inf", String(now));
  const ids = await redis.zrange(IDS_KEY, "0", "-1");
  if (ids.length === 0) return [];
  const raw = await redis.mget(ids.map(recordKey));
  const out: ServerRecord[] = [];
  for (const r of raw) {
    if (r === null) continue;
    try {
      const v: unknown = JSON.parse(r);
      if (isServerRecord(v)) out.push(v);
    } catch {
      // A malformed record is not a server.
    }
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * Every server registered in the registry at `registryUrl` (a Redis URL) right now.
 *
 * @example
 * for (const s of await listServers("redis://10.0.0.9:6379")) console.log(s.id, `${s.host}:${s.port}`, s.agents);
 */
export async function listServers(registryUrl: string): Promise<ServerRecord[]> {
  const { redis, shown } = await open(registryUrl, "actorscope-list");
  try {
    return await read(redis);
  } catch (e) {
    throw new AgentServerNotAliveError(`cannot read the registry ${shown}: ${(e as Error).message}`);
  } finally {
    redis.disconnect();
  }
}

/** A live view of a registry. */
export interface RegistryWatch {
  /** The servers as last read. */
  readonly servers: readonly ServerRecord[];
  /** Read again now (also what a join/leave announcement or the poll does). */
  refresh(): Promise<readonly ServerRecord[]>;
  /** Stop watching and close the connections. */
  close(): void;
}

/** Options of `watchRegistry`. */
export interface WatchOptions {
  /** How often to read the registry besides the announcements, ms. Default 1000. */
  pollMs?: number;
}

/**
 * Watch a registry: `onChange` gets the full list each time the set of servers (or their
 * addresses) changed. Resolves after the first read.
 */
export async function watchRegistry(registryUrl: string, onChange: (servers: readonly ServerRecord[]) => void, opts: WatchOptions = {}): Promise<RegistryWatch> {
  const { redis } = await open(registryUrl, "actorscope-watch");
  let sub: Redis;
  try {
    sub = (await open(registryUrl, "actorscope-watch:sub")).redis;
  } catch (e) {
    redis.disconnect();
    throw e;
  }
  let servers: readonly ServerRecord[] = [];
  let shape = "";
  let closed = false;
  let reading: Promise<readonly ServerRecord[]> | undefined;
  const refresh = (): Promise<readonly ServerRecord[]> => {
    reading ??= read(redis)
      .then((list) => {
        servers = list;
        const s = list.map((r) => `${r.id}@${r.host}:${r.port}`).join(",");
        if (s !== shape && !closed) {
          shape = s;
          onChange(list);
        }
        return list;
      })
      .catch(() => servers)
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };
  await sub.subscribe(EVENTS_CHANNEL);
  sub.on("message", () => void refresh());
  // After a reconnect the subscription is restored by ioredis (autoResubscribe) and the poll catches up.
  const timer = setInterval(() => void refresh(), opts.pollMs ?? 1000);
  timer.unref();
  await refresh();
  return {
    get servers() {
      return servers;
    },
    refresh,
    close() {
      closed = true;
      clearInterval(timer);
      redis.disconnect();
      sub.disconnect();
    },
  };
}
