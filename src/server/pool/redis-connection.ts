/**
 * The Redis pool's two connections (commands, and a subscriber: SUBSCRIBE occupies a
 * connection), its Lua scripts, how Redis failures map onto actorscope errors, and URL
 * redaction (a Redis URL may carry a password; no message ever shows it).
 *
 * Connection policy, and why:
 * - connecting PINGs both connections within a bounded time and never retries (a server
 *   started against a wrong URL fails at once, naming the URL with its password masked);
 * - commands never queue while Redis is away (no offline queue, no resend of commands that
 *   were in flight: they may have run) and time out after `commandTimeoutMs`: nothing hangs;
 * - once connected, ioredis reconnects forever, 20 ms doubling to at most `RECONNECT_MAX_MS`,
 *   so a Redis that comes back is used again within a fifth of a second, not seconds later.
 *   (ioredis's auto-pipelining is off: it cost more CPU per command than it saved; the pool
 *   batches its commands itself, `redis-batch.ts`.)
 */
import Redis, { type RedisOptions } from "ioredis";
import { AgentServerError, AgentServerNotAliveError, ResourceExhaustedError } from "../../core/errors.ts";
import { MASK } from "../../models/redact.ts";

/** Longest pause between two reconnection attempts, ms. */
export const RECONNECT_MAX_MS = 200;

/**
 * Reserve tasks: SET NX of each task's pending marker (ARGV[1]) with the expiry ARGV[2];
 * answers 1 (reserved) or 0 (the id is taken) per key.
 */
const PREPARE = `
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, ARGV[1], 'PX', ARGV[2], 'NX') then out[i] = 1 else out[i] = 0 end
end
return out`;

/**
 * Write entries and tell their waiters, the value sent once. For n keys, ARGV holds the n
 * entries, then n expiries (ms), then n channels, then n modes ('S' set, 'N' set only where
 * Redis lost the key: a restore after a restart), then the largest entry published whole
 * (bigger ones are announced with 'L'). Channels are ARGV, not KEYS: ACLs check KEYS
 * against key patterns (`~as:r:*`).
 */
const WRITE = `
local n = #KEYS
local whole = tonumber(ARGV[4 * n + 1])
for i = 1, n do
  local e = ARGV[i]
  local wrote = true
  if ARGV[3 * n + i] == 'N' then
    wrote = redis.call('SET', KEYS[i], e, 'PX', ARGV[n + i], 'NX')
  else
    redis.call('SET', KEYS[i], e, 'PX', ARGV[n + i])
  end
  if wrote then
    if string.len(e) <= whole then redis.call('PUBLISH', ARGV[2 * n + i], e) else redis.call('PUBLISH', ARGV[2 * n + i], 'L') end
  end
end
return n`;

/**
 * Keep the pending markers of tasks still running here: refresh a marker's expiry, or write
 * it again if Redis lost it (restart, eviction). Finished entries are left alone.
 */
const LEASE = `
for _, k in ipairs(KEYS) do
  local t = redis.call('GETRANGE', k, 0, 0)
  if t == '' then redis.call('SET', k, ARGV[2], 'PX', ARGV[1])
  elseif t == 'P' then redis.call('PEXPIRE', k, ARGV[1]) end
end
return 0`;

/**
 * Delete released entries: finished ones, and pending markers of this server (ARGV[1]).
 * Another server's pending marker is left alone: a release names a task, and only the
 * server running it may drop it before it finishes.
 */
const RELEASE = `
local n = 0
for _, k in ipairs(KEYS) do
  local t = redis.call('GETRANGE', k, 0, 0)
  if t == 'V' or t == 'E' or (t == 'P' and redis.call('GET', k) == ARGV[1]) then n = n + redis.call('DEL', k) end
end
return n`;

/** Keys per script call: keeps one script run short so Redis is never blocked for long. */
export const SCRIPT_BATCH = 512;
/** Entry bytes per write call: a batch of large results is split, one big result goes alone. */
export const WRITE_BATCH_BYTES = 1 << 20;

/** The scripts, as ioredis `defineCommand` installs them (EVALSHA, EVAL after NOSCRIPT). */
export interface ScriptCommands {
  /** `(n, ...keys, marker, ttlMs)` → 1 or 0 per key. */
  asPrepare(...args: Array<string | number>): Promise<number[]>;
  /** `(n, ...keys, ...entries, ...ttls, ...channels, ...modes, publishWholeMax)`. */
  asWrite(...args: Array<string | number | Buffer>): Promise<number>;
  asLease(...args: Array<string | number>): Promise<number>;
  asRelease(...args: Array<string | number>): Promise<number>;
}

/** The command connection with the scripts installed. */
export type CommandConnection = Redis & ScriptCommands;

/** Options of `connectRedis`. */
export interface ConnectOptions {
  redisUrl: string;
  /** Names the connections (`CLIENT LIST` shows `actorscope-<id>:cmd` / `:sub`). */
  serverId: string;
  /** Longest wait for the TCP connection and for the first PING, ms. */
  connectTimeoutMs: number;
  /** Longest wait for any command's reply, ms. */
  commandTimeoutMs: number;
}

/**
 * Open both connections and PING them. Rejects within about `connectTimeoutMs` when Redis
 * is unreachable (UNAVAILABLE) or refuses the credentials (UNAUTHENTICATED).
 */
export async function connectRedis(opts: ConnectOptions): Promise<{ cmd: CommandConnection; sub: Redis }> {
  const shown = redactUrl(opts.redisUrl);
  let established = false;
  let lastError: Error | undefined;
  const name = `actorscope-${opts.serverId}`.replace(/[^A-Za-z0-9_.:-]/g, "_").slice(0, 120);
  const base: RedisOptions = {
    lazyConnect: true,
    connectTimeout: opts.connectTimeoutMs,
    commandTimeout: opts.commandTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // The pool re-subscribes what its waiters still need after a reconnect, then re-reads.
    autoResubscribe: false,
    retryStrategy: (times) => (established ? Math.min(20 * 2 ** Math.min(times - 1, 8), RECONNECT_MAX_MS) : null),
  };
  const cmd = new Redis(opts.redisUrl, { ...base, connectionName: `${name}:cmd` }) as CommandConnection;
  const sub = new Redis(opts.redisUrl, { ...base, connectionName: `${name}:sub` });
  // Without listeners ioredis prints every connection error; the pool reports them itself.
  const remember = (e: Error) => {
    lastError = e;
  };
  cmd.on("error", remember);
  sub.on("error", remember);
  const attempt = Promise.all([cmd.connect(), sub.connect()]).then(() => Promise.all([cmd.ping(), sub.ping()]));
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs + 500);
  });
  try {
    await Promise.race([attempt, deadline]);
  } catch (e) {
    attempt.catch(() => {});
    cmd.disconnect();
    sub.disconnect();
    const reason = scrub((lastError ?? (e as Error)).message, opts.redisUrl);
    if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(reason)) {
      throw new AgentServerError(`Redis server at ${shown} refused authentication: ${reason}`, { code: "UNAUTHENTICATED" });
    }
    throw new AgentServerNotAliveError(`Redis server at ${shown} is not available: ${reason}`);
  } finally {
    clearTimeout(timer);
  }
  established = true;
  cmd.defineCommand("asPrepare", { lua: PREPARE });
  cmd.defineCommand("asWrite", { lua: WRITE });
  cmd.defineCommand("asLease", { lua: LEASE });
  cmd.defineCommand("asRelease", { lua: RELEASE });
  return { cmd, sub };
}

/** Close a connection politely if it is up, at once otherwise (QUIT would fail or wait). */
export async function quit(c: Redis): Promise<void> {
  if (c.status === "ready") {
    try {
      await c.quit();
      return;
    } catch {
      // Fall through: drop it.
    }
  }
  c.disconnect();
}

/**
 * Is this failure the connection's (Redis away, reply lost, timed out, or a transient
 * refusal such as LOADING after a restart) rather than Redis refusing the command itself?
 */
export function isTransient(e: unknown): boolean {
  if (e instanceof AgentServerError) return e instanceof AgentServerNotAliveError;
  if (!(e instanceof Error) || e.name !== "ReplyError") return true;
  return /^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN)\b/.test(e.message);
}

/**
 * A failed command as an actorscope error. Connection trouble, timeouts and Redis's
 * transient refusals are UNAVAILABLE (try again later); OOM is RESOURCE_EXHAUSTED.
 */
export function commandError(e: unknown, shownUrl: string, op: string, note = ""): AgentServerError {
  if (e instanceof AgentServerError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  if (isTransient(err)) return new AgentServerNotAliveError(`Redis server at ${shownUrl} is unavailable (${op}: ${err.message})${note}`);
  const msg = `Redis refused ${op}: ${err.message}${note}`;
  if (/^OOM\b/.test(err.message)) return new ResourceExhaustedError(msg);
  if (/^(NOPERM|NOAUTH|WRONGPASS)\b/.test(err.message)) return new AgentServerError(msg, { code: "PERMISSION_DENIED" });
  return new AgentServerError(msg, { code: "INTERNAL" });
}

/**
 * The URL as it may be shown: the password (userinfo or `?password=`) masked. Redis URLs
 * carry a bare password as `redis://:pw@host` or `redis://pw@host`, shapes the general
 * `redact()` of model configs does not take for credentials, hence this URL-aware version.
 */
export function redactUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/?#]*)@/i, (_m, scheme: string, info: string) => {
      const colon = info.indexOf(":");
      return colon < 0 ? `${scheme}${MASK}@` : `${scheme}${info.slice(0, colon)}:${MASK}@`;
    })
    .replace(/([?&]password=)[^&#]*/gi, `$1${MASK}`);
}

/** Remove the URL's password from a message, in case a lower layer echoed it. */
function scrub(message: string, url: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^:@/?#]*:([^@/?#]+)@/i.exec(url);
  let out = message;
  if (m?.[1]) {
    out = out.split(m[1]).join(MASK);
    const decoded = safeDecode(m[1]);
    if (decoded !== m[1]) out = out.split(decoded).join(MASK);
  }
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
