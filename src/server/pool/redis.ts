/**
 * The Redis result pool (`poolType: "redis"`): results live in Redis with an expiry, so every
 * server on the same Redis can hand out any result, whichever server ran the task.
 *
 * Layout (prefix `as:` by default; an ACL user for the pool needs `~as:r:*` and `&as:d:*`):
 * `as:r:<task>` holds the task's entry (`redis-entry.ts`): a pending marker written by
 * `prepare` with SET NX (a taken id is ALREADY_EXISTS), then the value or error, kept
 * `maxExpireTime` seconds; `set` writes it and publishes it on `as:d:<task>` in one Lua call.
 * Task ids are the clients' random 32-hex ids, unique across servers and Redis restarts.
 *
 * Waiting is event-driven, never polling: a task running here is woken in-process by `set`;
 * any other task is GET, and if pending, subscribed to (one subscriber connection per pool,
 * a subscription per task shared by its waiters) and GET again, so a result landing in
 * between is never missed. The message carries the outcome (up to 64 KiB), so waking costs
 * no GET. Why pub/sub rather than BLPOP or keyspace events: see BENCHMARKS.md, "Redis pool".
 *
 * A Redis blip is not an outage (Redis stopped and back within `outageGraceMs`):
 * - a task accepted while Redis is away runs; its marker is written when Redis is back;
 * - an outcome that cannot be written is kept in memory, answers readers here at once, and
 *   is written the moment Redis is back (reconnection is retried every ≤ 200 ms);
 * - waiters for other tasks stay parked while Redis is away and re-subscribe and re-read as
 *   soon as both connections are back, instead of failing;
 * - outcomes written but not read through this server yet are kept as backups (bounded):
 *   a Redis without persistence forgets them on restart, and they are written back.
 * Past `outageGraceMs` it is an outage: new tasks and reads of other servers' tasks fail
 * UNAVAILABLE at once; tasks already running still deliver through this server.
 *
 * What `maxPoolSize` bounds here: the outcomes this server holds in memory waiting for Redis.
 * At that bound new tasks are refused RESOURCE_EXHAUSTED with a `retryAfterMs` hint, so an
 * outage grows the server by at most `maxPoolSize` outcomes plus those of the tasks already
 * running (bounded by capacity and queue), and no outcome is ever dropped. Finished results
 * live in Redis until they expire or are released; Redis's own `maxmemory` bounds them (an
 * OOM refusal is RESOURCE_EXHAUSTED). Backups of unread results are a bounded cache.
 *
 * Standalone Redis only (not Cluster): the lease and release scripts touch several keys.
 */
import type Redis from "ioredis";
import { AgentServerError, AgentServerNotAliveError, NotFoundError, ResourceExhaustedError } from "../../core/errors.ts";
import { RECONNECT_MAX_MS, commandError, connectRedis, isTransient, quit, redactUrl, type CommandConnection } from "./redis-connection.ts";
import { decodeEntry, encodeOutcome } from "./redis-entry.ts";
import { RedisKeys } from "./redis-keys.ts";
import { ExpiryCount, HeldOutcomes, type Held } from "./redis-held.ts";
import { RedisWaiters } from "./redis-waiters.ts";
import type { Outcome, PoolOptions, ResultPool } from "./types.ts";

export { redactUrl } from "./redis-connection.ts";

/** Options of `RedisPool.connect`. */
export interface RedisPoolOptions extends PoolOptions {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://…` for TLS. */
  redisUrl: string;
  /** This server's id: written in pending markers and the connections' client names. */
  serverId: string;
  /** Key and channel prefix. Default `"as:"`. */
  keyPrefix?: string;
  /** Longest wait for the TCP connection and for the first PING, ms. Default 2000. */
  connectTimeoutMs?: number;
  /** Longest wait for any command's reply before it counts as Redis being away, ms. Default 5000. */
  commandTimeoutMs?: number;
  /** How long Redis may be away before it is an outage (new work fails UNAVAILABLE), ms. Default 5000. */
  outageGraceMs?: number;
  /** Most bytes of written-but-unread results kept in memory as restart backups. Default 64 MiB. */
  maxBackupBytes?: number;
}

/** `ResultPool` on Redis (ioredis): shared by every server on the same Redis. */
export class RedisPool implements ResultPool {
  readonly #cmd: CommandConnection;
  readonly #sub: Redis;
  readonly #shownUrl: string;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #graceMs: number;
  readonly #keys: RedisKeys;
  /** Tasks prepared here whose outcome is not set yet (their markers are leased). */
  readonly #running = new Set<string>();
  /** Running tasks released by their owner: deleted instead of written when they finish. */
  readonly #released = new Set<string>();
  readonly #held: HeldOutcomes;
  readonly #waiters: RedisWaiters;
  /** Results set here and not expired or released yet (for `size()`). */
  readonly #results = new ExpiryCount();
  /** When a connection last dropped, while it (or the catch-up after it) is not done. */
  #downSince: number | undefined;
  #leaseTimer: Timer | undefined;
  /** The post-reconnect work; `ready()` awaits it. */
  #catchingUp: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(cmd: CommandConnection, sub: Redis, opts: RedisPoolOptions) {
    this.#cmd = cmd;
    this.#sub = sub;
    this.#shownUrl = redactUrl(opts.redisUrl);
    this.#ttlMs = Math.max(1, Math.round(opts.maxExpireTime * 1000));
    this.#max = Math.max(1, opts.maxPoolSize);
    this.#graceMs = opts.outageGraceMs ?? 5000;
    this.#held = new HeldOutcomes({ maxEntries: this.#max, maxBackupBytes: opts.maxBackupBytes ?? 64 * 2 ** 20 });
    this.#keys = new RedisKeys(cmd, { prefix: opts.keyPrefix ?? "as:", marker: `P${opts.serverId}`, ttlMs: this.#ttlMs, maxToDelete: this.#max });
    this.#waiters = new RedisWaiters({
      sub,
      channelPrefix: this.#keys.channelPrefix,
      shownUrl: this.#shownUrl,
      read: (task) => this.#read(task),
      fromMemory: (task, keep) => this.#fromMemory(task, keep),
      runningHere: (task) => this.#running.has(task),
      bothUp: () => this.#bothUp(),
      outageError: (op) => (this.#outage() ? this.#unavailable(op) : undefined),
    });
    cmd.on("close", () => this.#markDown());
    sub.on("close", () => {
      this.#markDown();
      this.#waiters.park();
    });
    const onReady = () => this.#onReady();
    cmd.on("ready", onReady);
    sub.on("ready", onReady);
    const every = Math.min(60_000, Math.max(100, Math.floor(this.#ttlMs / 3)));
    this.#leaseTimer = setInterval(() => void this.#tick(), every);
    this.#leaseTimer.unref();
  }

  /**
   * Connect (two connections: commands and subscriber), PING both, and resolve the pool.
   * Rejects within about `connectTimeoutMs` when Redis is unreachable (UNAVAILABLE) or
   * refuses the credentials (UNAUTHENTICATED); the message names the URL, password redacted.
   */
  static async connect(opts: RedisPoolOptions): Promise<RedisPool> {
    const { cmd, sub } = await connectRedis({
      redisUrl: opts.redisUrl,
      serverId: opts.serverId,
      connectTimeoutMs: opts.connectTimeoutMs ?? 2000,
      commandTimeoutMs: opts.commandTimeoutMs ?? 5000,
    });
    return new RedisPool(cmd, sub, opts);
  }

  async prepare(task: string): Promise<void> {
    this.#open();
    if (this.#running.has(task) || this.#held.get(task)) throw alreadyExists(task);
    // Only outcomes waiting for Redis count: running tasks are bounded by the server's
    // capacity and queue, and counting them would refuse the later hops of a chain while
    // the earlier ones still run.
    if (this.#held.unsentCount >= this.#max) {
      throw new ResourceExhaustedError(`result pool full: ${this.#held.unsentCount} results waiting for Redis to come back (maxPoolSize ${this.#max})`, {
        retryAfterMs: RECONNECT_MAX_MS,
      });
    }
    if (this.#cmd.status !== "ready") {
      // Redis is away: accept the task (its marker is written on reconnect), unless it has
      // been away so long that this is an outage rather than a blip.
      if (this.#outage()) throw this.#unavailable("prepare");
      this.#running.add(task);
      return;
    }
    // Running from now on, so a wait that races this round trip waits here, not on Redis.
    this.#running.add(task);
    let ok: boolean;
    try {
      ok = await this.#keys.reserve(task);
    } catch (e) {
      // Connection trouble: the SET may or may not have run; the lease writes the marker.
      if (isTransient(e) && !this.#outage()) return;
      this.#unprepare(task);
      throw commandError(e, this.#shownUrl, "prepare");
    }
    if (!ok) {
      this.#unprepare(task);
      throw alreadyExists(task);
    }
  }

  async set(task: string, outcome: Outcome): Promise<void> {
    if (!this.#running.delete(task) || this.#closed) return;
    const readers = this.#waiters.readers(task);
    if (this.#released.delete(task) && !readers.any) {
      this.#keys.deleteSoon(task);
      return;
    }
    const expiresAt = Date.now() + this.#ttlMs;
    this.#results.add(expiresAt);
    const h = this.#held.add(task, outcome, encodeOutcome(outcome), expiresAt);
    h.read = readers.reading;
    // Waiters here never wait for Redis: they have it now, and re-reads come from memory.
    this.#waiters.settleAll(task, outcome);
    await this.#write(task, h);
  }

  async get(task: string, timeoutMs: number, signal?: AbortSignal, keep = false): Promise<Outcome | "pending"> {
    this.#open();
    const held = this.#fromMemory(task, keep);
    if (held) return held;
    if (this.#running.has(task)) return this.#waitOrPending(task, timeoutMs, signal, false, keep);
    let first: Outcome | "pending" = "pending";
    if (this.#bothUp()) {
      try {
        first = await this.#read(task);
      } catch (e) {
        // Prepared here while the GET was on its way (its wait came ahead of its call).
        if (e instanceof NotFoundError && this.#running.has(task)) return this.#waitOrPending(task, timeoutMs, signal, false, keep);
        if (!(e instanceof AgentServerNotAliveError) || this.#outage()) throw e;
      }
    } else if (this.#outage()) throw this.#unavailable("get");
    if (first !== "pending") return first;
    const now = this.#fromMemory(task, keep);
    if (now) return now;
    return this.#waitOrPending(task, timeoutMs, signal, !this.#running.has(task), keep);
  }

  async release(task: string): Promise<void> {
    if (this.#closed) return;
    if (this.#running.has(task)) {
      this.#released.add(task);
      return;
    }
    const h = this.#held.get(task);
    if (h?.state === "writing") {
      h.released = true; // deleted once its write lands
      return;
    }
    if (h) {
      this.#held.delete(task);
      this.#results.remove(h.expiresAt);
    }
    // Finished entries, or this server's marker; another server's running task is left alone.
    this.#keys.deleteSoon(task);
  }

  /**
   * An estimate, not a Redis count: tasks this server prepared that are running, plus results
   * it wrote that have not expired (to the second) or been released. Results lost to a Redis
   * restart still count until their expiry; other servers' tasks never do.
   */
  size(): number {
    return this.#running.size + this.#results.count();
  }

  /**
   * Resolve when both connections are up and the post-reconnect writes are done (kept
   * outcomes written, running tasks' markers restored); UNAVAILABLE after `timeoutMs`.
   */
  async ready(timeoutMs = 5000): Promise<void> {
    this.#open();
    const cleanup: Array<() => void> = [];
    const up = (c: Redis) =>
      c.status === "ready"
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const on = () => resolve();
            c.once("ready", on);
            cleanup.push(() => c.off("ready", on));
          });
    let timer: Timer | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AgentServerNotAliveError(`Redis server at ${this.#shownUrl} is still unavailable after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([Promise.all([up(this.#cmd), up(this.#sub)]).then(() => this.#catchingUp), late]);
    } finally {
      clearTimeout(timer);
      for (const f of cleanup) f();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#leaseTimer);
    this.#leaseTimer = undefined;
    this.#waiters.close(new AgentServerError("result pool closed (the server is shutting down)", { code: "CANCELLED" }));
    await Promise.all([quit(this.#cmd), quit(this.#sub)]);
  }

  /** An outcome held here (the first read of it counts unless `keep`). */
  #fromMemory(task: string, keep: boolean): Outcome | undefined {
    const h = this.#held.get(task);
    if (!h) return undefined;
    if (!keep) this.#held.markRead(task, h);
    return h.outcome;
  }

  #waitOrPending(task: string, timeoutMs: number, signal: AbortSignal | undefined, remote: boolean, keep: boolean): Promise<Outcome | "pending"> {
    if (timeoutMs <= 0 || signal?.aborted) return Promise.resolve("pending");
    return this.#waiters.wait(task, timeoutMs, signal, remote, keep);
  }

  /** GET the entry: its outcome, `"pending"`, or NOT_FOUND. */
  async #read(task: string): Promise<Outcome | "pending"> {
    let raw: Buffer | null;
    try {
      raw = await this.#keys.read(task);
    } catch (e) {
      throw commandError(e, this.#shownUrl, "get");
    }
    if (raw === null) throw new NotFoundError(`result of task ${task} not found (unknown, expired or released)`);
    return decodeEntry(raw, task);
  }

  /** A prepare that did not take: its early waiters ask again (they will read the truth). */
  #unprepare(task: string): void {
    this.#running.delete(task);
    this.#released.delete(task);
    this.#waiters.settleAll(task, "pending");
  }

  /** Write a held outcome (its first write, or again after Redis was away). */
  async #write(task: string, h: Held): Promise<void> {
    if (this.#cmd.status !== "ready") return this.#held.markUnsent(task, h);
    try {
      await this.#keys.write({ task, entry: h.entry, expiresAt: h.expiresAt, mode: "S" });
    } catch (e) {
      this.#held.markUnsent(task, h);
      if (!isTransient(e)) throw commandError(e, this.#shownUrl, "set", " (the result is kept in memory here and written again later)");
      return;
    }
    if (this.#held.markWritten(task, h)) this.#keys.deleteSoon(task);
  }

  #markDown(): void {
    this.#downSince ??= Date.now();
  }

  #bothUp(): boolean {
    return this.#cmd.status === "ready" && this.#sub.status === "ready";
  }

  /** Has Redis been away longer than a blip? (A drop not yet reported counts from now.) */
  #outage(): boolean {
    if (this.#downSince === undefined && this.#bothUp()) return false;
    return Date.now() - (this.#downSince ?? Date.now()) >= this.#graceMs;
  }

  #unavailable(op: string): AgentServerNotAliveError {
    const since = this.#downSince === undefined ? "" : ` for ${Date.now() - this.#downSince} ms`;
    return new AgentServerNotAliveError(`Redis server at ${this.#shownUrl} is unavailable${since} (${op})`);
  }

  #onReady(): void {
    if (this.#closed || !this.#bothUp()) return;
    this.#downSince = undefined;
    this.#catchingUp = this.#afterReconnect();
  }

  /**
   * Both connections are back: re-arm parked waiters (they subscribe before the writes below
   * publish), write what could not be written, restore running tasks' markers and the
   * backups a restart may have lost, and delete what was released meanwhile.
   */
  async #afterReconnect(): Promise<void> {
    this.#waiters.rearm();
    const writes = this.#held.unsent().map(([task, h]) => this.#write(task, h).catch(() => {}));
    const restores = this.#held.backups().map(([task, h]) =>
      this.#keys.write({ task, entry: h.entry, expiresAt: h.expiresAt, mode: "N" }).catch(() => {}),
    );
    await Promise.all([...writes, ...restores, this.#keys.lease(this.#running), this.#keys.flushDeletes()]);
  }

  /** Timer: sweep counters and backups, retry kept outcomes, lease running tasks' markers. */
  async #tick(): Promise<void> {
    this.#held.sweep();
    if (this.#closed || this.#cmd.status !== "ready") return;
    // A write refused by Redis (OOM) or timed out on a connection that stayed up gets no
    // "ready" to retry on.
    await Promise.all([...this.#held.unsent().map(([task, h]) => this.#write(task, h).catch(() => {})), this.#keys.lease(this.#running), this.#keys.flushDeletes()]);
  }

  #open(): void {
    if (this.#closed) throw new AgentServerError("result pool closed (the server is shutting down)", { code: "FAILED_PRECONDITION" });
  }
}

function alreadyExists(task: string): AgentServerError {
  return new AgentServerError(`task ${task} already exists`, { code: "ALREADY_EXISTS" });
}
