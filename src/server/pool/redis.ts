/**
 * The Redis result pool (`poolType: "redis"`): results live in Redis with an expiry, so every
 * server on the same Redis can hand out any result, whichever server ran the task.
 *
 * Layout (prefix `as:` by default; an ACL user for the pool needs `~as:r:*` and `&as:d:*`):
 * - `as:r:<task>` holds one entry: `P<serverId>` while the task runs (written by `prepare`
 *   with SET NX, so a taken id is ALREADY_EXISTS), then `V<value bytes>` or `E<wire error
 *   JSON>`, kept `maxExpireTime` seconds. Task ids are the clients' random 32-hex ids, not a
 *   counter, so they are unique across servers and Redis restarts (AgentScope used a global
 *   INCR that restarts at 1 and lets servers read each other's results by counting).
 * - `as:d:<task>` is a pub/sub channel: `set` writes the entry and publishes it in one Lua
 *   call (one round trip, value sent once); entries over 64 KiB are announced, not published.
 *
 * Waiting is event-driven, never polling:
 * - a task this server prepared is woken in-process by `set` (no Redis round trip to wait);
 * - a task prepared elsewhere: GET; if pending, subscribe to its channel on the pool's one
 *   subscriber connection (reference-counted per task, fanned out to local waiters), THEN GET
 *   again, so a result that lands between the two is never missed. The message carries the
 *   outcome (up to 64 KiB; larger ones are fetched once per task), so waking costs no GET.
 *
 * Wake mechanisms measured before choosing (Bun 1.4.5, ioredis 6.0.0, redis-server 7.0.15,
 * loopback, shared 2-CPU VM; a 2000-sample probe, then five runs of `bun bench/redis-pool.ts`
 * with 1000 samples each; the ranges are the spread across runs, i.e. machine noise):
 *
 * | mechanism                                  | write → wake, median | p99             | connections for N waits |
 * |--------------------------------------------|----------------------|-----------------|-------------------------|
 * | pub/sub, channel per task (chosen)         | 69–88 µs             | 0.28–0.54 ms    | 1 per pool              |
 * | BLPOP on a dedicated connection (Python)   | 49–64 µs             | 0.11–0.31 ms    | 1 per waited task       |
 * | keyspace notifications (`__keyspace@0__:`) | 55–78 µs             | 0.09–0.32 ms *  | 1 per pool              |
 *
 * (* one run had a 3.7 ms p99.)
 *
 * SUBSCRIBE round trip: 43 µs. 1000 tasks waited on one subscriber connection: subscribing
 * all took 9.9 ms, publishing all and waking every waiter 10.2 ms; opening 200 extra
 * connections (what BLPOP would need for 200 waits) took 80 ms. All three wake in well under
 * a millisecond, so latency does not decide: BLPOP blocks a whole connection per key and
 * consumes the pushed item (AgentScope re-pushed it so other waiters wake), and keyspace
 * notifications need `CONFIG SET notify-keyspace-events` (server-wide, refused by most
 * managed Redis) and fire for the pending marker too. Pub/sub needs neither.
 *
 * Through an in-process Servicer (same bench, four runs): async call + wait 1:1 takes
 * 129–164 µs with this pool (raw ioredis SET+GET pair: 82–109 µs; local pool: 6–8 µs): two or
 * three Redis round trips (prepare, set, and a GET when the wait comes after the write).
 * 64 calls in flight: 16k–23k calls/s (local pool 70k–144k). A Redis kill fails a parked
 * remote waiter in 3–14 ms; both connections are back 57–72 ms after the kill.
 *
 * Failure behaviour (reliability scenarios P1–P5):
 * - `connect` PINGs both connections within a bounded time (connect timeout 2 s) and never
 *   retries while connecting; the error names the URL with its password redacted.
 * - Commands never queue while Redis is away (no offline queue, no resend of commands that
 *   were in flight: they may have run) and time out after `commandTimeoutMs`, so nothing hangs.
 * - Once connected, ioredis reconnects by itself (backoff 50 ms doubling to 1 s, forever).
 *   When the subscriber connection drops, waiters for other servers' tasks fail at once with
 *   UNAVAILABLE (a publish may have been missed); they re-wait, which re-reads the key.
 *   Waiters for this server's own tasks keep waiting: `set` wakes them in-process.
 * - A `set` while Redis is down rejects UNAVAILABLE (the servicer swallows it), but the
 *   outcome is not lost: waiters on this server get it at once, `get` on this server answers
 *   from memory, and it is written to Redis (remaining expiry) as soon as the connection is
 *   back (`ready()` resolves after that write). Until then other servers answer UNAVAILABLE
 *   while Redis is down, and afterwards pending, or NOT_FOUND if the restart lost the marker.
 *   At most `maxPoolSize` such outcomes are held (oldest dropped): it is the only thing
 *   `maxPoolSize` bounds here; Redis itself holds results until they expire, like AgentScope.
 * - Pending markers of tasks still running here are refreshed every third of the expiry and
 *   re-written after a reconnect, so a task that outlives `maxExpireTime` or a Redis restart
 *   still reads as pending. Results written before a Redis restart are gone: NOT_FOUND.
 *
 * Standalone Redis only (not Cluster): the lease script touches several keys in one call.
 */
import Redis, { type RedisOptions } from "ioredis";
import {
  AgentServerError,
  AgentServerNotAliveError,
  NotFoundError,
  ResourceExhaustedError,
  type WireError,
} from "../../rpc/errors.ts";
import type { Outcome, PoolOptions, ResultPool } from "./types.ts";

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
  /** Longest wait for any command's reply before it fails UNAVAILABLE, ms. Default 5000. */
  commandTimeoutMs?: number;
}

const TAG_PENDING = 0x50; // "P"
const TAG_VALUE = 0x56; // "V"
const TAG_ERROR = 0x45; // "E"
/** Published instead of a large entry: "it landed, GET it". */
const TAG_LANDED = 0x4c; // "L"

/**
 * Largest entry published whole. Redis drops a subscriber connection whose output buffer
 * passes `client-output-buffer-limit pubsub` (32 MiB hard, 8 MiB for 60 s by default), which
 * would fail every remote waiter of that server; bigger results are announced and fetched.
 */
const PUBLISH_WHOLE_MAX = 64 * 1024;

/**
 * Write the entry and tell the task's waiters, in one round trip (the value sent once).
 * The channel is an ARGV, not a KEY: ACLs check KEYS against key patterns (`~as:r:*`).
 */
const SET_AND_PUBLISH = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if string.len(ARGV[1]) <= tonumber(ARGV[3]) then return redis.call('PUBLISH', ARGV[4], ARGV[1]) end
return redis.call('PUBLISH', ARGV[4], 'L')`;

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

/** Keys per lease call: keeps one script run short so Redis is never blocked for long. */
const LEASE_BATCH = 512;

/** The two scripts, as ioredis `defineCommand` installs them (EVALSHA, EVAL after NOSCRIPT). */
interface ScriptCommands {
  asSetPublish(key: string, entry: Buffer, ttlMs: number, publishWholeMax: number, channel: string): Promise<number>;
  asLease(...args: Array<string | number>): Promise<number>;
}

type Settle = (r: Outcome | "pending" | Error) => void;

interface Waiter {
  settle: Settle;
  /** Woken through the subscriber connection (another server's task). */
  remote: boolean;
}

interface Subscription {
  waiters: number;
  ready: Promise<unknown>;
}

interface Unsent {
  outcome: Outcome;
  entry: Buffer;
  expiresAt: number;
}

/** `ResultPool` on Redis (ioredis): shared by every server on the same Redis. */
export class RedisPool implements ResultPool {
  readonly #cmd: Redis & ScriptCommands;
  /** Subscriber connection: SUBSCRIBE occupies a connection, so it has its own. */
  readonly #sub: Redis;
  readonly #shownUrl: string;
  readonly #ttlMs: number;
  readonly #maxUnsent: number;
  readonly #keyPrefix: string;
  readonly #channelPrefix: string;
  readonly #marker: string;
  /** Tasks prepared here and not set yet (their markers are leased). */
  readonly #running = new Set<string>();
  /** Tasks whose outcome is being written: their waiters here are woken when it lands. */
  readonly #writing = new Set<string>();
  /** Local waiters by task. */
  readonly #waiters = new Map<string, Set<Waiter>>();
  /** Channel subscriptions by task, shared by that task's remote waiters. */
  readonly #subs = new Map<string, Subscription>();
  /** Outcomes whose write failed (Redis down), written again on reconnect or the next tick. */
  readonly #unsent = new Map<string, Unsent>();
  /** Results set here, counted by the second they expire in (for `size()`). */
  readonly #expiring = new Map<number, number>();
  #expiringTotal = 0;
  #leaseTimer: Timer | undefined;
  /** The post-reconnect work (flush kept outcomes, restore markers); `ready()` awaits it. */
  #catchingUp: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(cmd: Redis, sub: Redis, opts: RedisPoolOptions, shownUrl: string) {
    this.#cmd = cmd as Redis & ScriptCommands;
    this.#sub = sub;
    this.#shownUrl = shownUrl;
    this.#ttlMs = Math.max(1, Math.round(opts.maxExpireTime * 1000));
    this.#maxUnsent = Math.max(1, opts.maxPoolSize);
    const prefix = opts.keyPrefix ?? "as:";
    this.#keyPrefix = `${prefix}r:`;
    this.#channelPrefix = `${prefix}d:`;
    this.#marker = `P${opts.serverId}`;
    cmd.defineCommand("asSetPublish", { numberOfKeys: 1, lua: SET_AND_PUBLISH });
    cmd.defineCommand("asLease", { lua: LEASE });
    sub.on("messageBuffer", (channel: Buffer, message: Buffer) => this.#onMessage(channel, message));
    // Publishes sent while the subscriber was away are lost: its remote waiters must re-wait.
    sub.on("close", () => this.#failRemoteWaiters());
    cmd.on("ready", () => {
      this.#catchingUp = this.#afterReconnect();
    });
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
    const shown = redactUrl(opts.redisUrl);
    const connectTimeout = opts.connectTimeoutMs ?? 2000;
    let established = false;
    let lastError: Error | undefined;
    const name = `actorscope-${opts.serverId}`.replace(/[^A-Za-z0-9_.:-]/g, "_").slice(0, 120);
    const base: RedisOptions = {
      lazyConnect: true,
      connectTimeout,
      commandTimeout: opts.commandTimeoutMs ?? 5000,
      // Never park a command while Redis is away: it would hang its caller.
      enableOfflineQueue: false,
      // Commands in flight when the connection drops fail at once and are not re-sent:
      // they may already have run.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // Subscriptions are per wait; their waiters are failed on disconnect and re-subscribe.
      autoResubscribe: false,
      // No retry while connecting (fail fast); once up, reconnect forever with a short backoff.
      retryStrategy: (times) => (established ? Math.min(50 * 2 ** Math.min(times - 1, 5), 1000) : null),
    };
    const cmd = new Redis(opts.redisUrl, { ...base, connectionName: `${name}:cmd` });
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
      timer = setTimeout(() => reject(new Error(`no answer within ${connectTimeout} ms`)), connectTimeout + 500);
    });
    try {
      await Promise.race([attempt, deadline]);
    } catch (e) {
      attempt.catch(() => {});
      cmd.disconnect();
      sub.disconnect();
      const cause = lastError ?? (e as Error);
      const reason = scrub(cause.message, opts.redisUrl);
      if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(reason)) {
        throw new AgentServerError(`Redis server at ${shown} refused authentication: ${reason}`, { code: "UNAUTHENTICATED" });
      }
      throw new AgentServerNotAliveError(`Redis server at ${shown} is not available: ${reason}`);
    } finally {
      clearTimeout(timer);
    }
    established = true;
    return new RedisPool(cmd, sub, opts, shown);
  }

  async prepare(task: string): Promise<void> {
    this.#open();
    if (this.#running.has(task)) throw alreadyExists(task);
    let ok: string | null;
    try {
      ok = await this.#cmd.set(this.#key(task), this.#marker, "PX", this.#ttlMs, "NX");
    } catch (e) {
      throw this.#commandError(e, "prepare");
    }
    if (ok !== "OK") throw alreadyExists(task);
    this.#running.add(task);
  }

  async set(task: string, outcome: Outcome): Promise<void> {
    if (!this.#running.delete(task)) return;
    this.#open();
    this.#countExpiring(Date.now() + this.#ttlMs);
    const entry = encodeOutcome(outcome);
    this.#writing.add(task);
    try {
      await this.#cmd.asSetPublish(this.#key(task), entry, this.#ttlMs, PUBLISH_WHOLE_MAX, this.#channel(task));
    } catch (e) {
      this.#keepUnsent(task, { outcome, entry, expiresAt: Date.now() + this.#ttlMs });
      throw this.#commandError(e, "set", " (the result is kept in memory here and written again later)");
    } finally {
      this.#writing.delete(task);
      // Woken after the write: whoever gets the result can re-read it through any server.
      this.#wake(task, outcome);
    }
  }

  async get(task: string, timeoutMs: number, signal?: AbortSignal): Promise<Outcome | "pending"> {
    this.#open();
    const unsent = this.#unsent.get(task);
    if (unsent && unsent.expiresAt > Date.now()) return unsent.outcome;
    if (this.#running.has(task) || this.#writing.has(task)) {
      // Our own task, running or being written: `set` on this pool wakes it, Redis need not be asked.
      return timeoutMs <= 0 ? "pending" : this.#wait(task, timeoutMs, signal, false);
    }
    const first = await this.#read(task);
    if (first !== "pending" || timeoutMs <= 0) return first;
    return this.#wait(task, timeoutMs, signal, true);
  }

  /**
   * An estimate, not a Redis count: tasks this server prepared that are running, plus results
   * it wrote that have not expired (to the second). Results lost to a Redis restart or
   * eviction still count until their expiry; other servers' tasks never do.
   */
  size(): number {
    this.#sweepExpiring();
    return this.#running.size + this.#expiringTotal;
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
      await Promise.race([Promise.all([up(this.#cmd), up(this.#sub)]), late]);
      await this.#catchingUp;
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
    const gone = new AgentServerNotAliveError("result pool closed");
    for (const set of [...this.#waiters.values()]) for (const w of [...set]) w.settle(gone);
    await Promise.all([quit(this.#cmd), quit(this.#sub)]);
  }

  /** Register a waiter and settle it on wake, timeout, abort, disconnect or close. */
  #wait(task: string, timeoutMs: number, signal: AbortSignal | undefined, remote: boolean): Promise<Outcome | "pending"> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return resolve("pending");
      let set = this.#waiters.get(task);
      if (!set) this.#waiters.set(task, (set = new Set()));
      let done = false;
      const waiter: Waiter = {
        remote,
        settle: (r) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          set.delete(waiter);
          if (set.size === 0 && this.#waiters.get(task) === set) this.#waiters.delete(task);
          if (remote) this.#unsubscribe(task);
          if (r instanceof Error) reject(r);
          else resolve(r);
        },
      };
      const onAbort = () => waiter.settle("pending");
      const timer = setTimeout(() => waiter.settle("pending"), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      set.add(waiter);
      if (!remote) return;
      // Subscribed first, read second: a result landing in between arrives as a message.
      this.#subscribe(task)
        .then(() => (done ? undefined : this.#read(task)))
        .then(
          (r) => {
            if (r !== undefined && r !== "pending") waiter.settle(r);
          },
          (e) => waiter.settle(e instanceof AgentServerError ? e : this.#commandError(e, "subscribe")),
        );
    });
  }

  /** GET the entry: its outcome, `"pending"`, or NOT_FOUND. */
  async #read(task: string): Promise<Outcome | "pending"> {
    let raw: Buffer | null;
    try {
      raw = await this.#cmd.getBuffer(this.#key(task));
    } catch (e) {
      throw this.#commandError(e, "get");
    }
    if (raw === null) throw new NotFoundError(`result of task ${task} not found (unknown or expired)`);
    return decodeEntry(raw, task);
  }

  #subscribe(task: string): Promise<unknown> {
    let s = this.#subs.get(task);
    if (!s) {
      s = { waiters: 0, ready: this.#sub.subscribe(this.#channel(task)) };
      this.#subs.set(task, s);
    }
    s.waiters++;
    return s.ready;
  }

  #unsubscribe(task: string): void {
    const s = this.#subs.get(task);
    if (!s || --s.waiters > 0) return;
    this.#subs.delete(task);
    // Ordered after any SUBSCRIBE on the same connection; a failure means the connection
    // (and with it the subscription) is gone anyway.
    if (!this.#closed) this.#sub.unsubscribe(this.#channel(task)).catch(() => {});
  }

  #onMessage(channel: Buffer, message: Buffer): void {
    const task = channel.toString().slice(this.#channelPrefix.length);
    if (!this.#waiters.has(task)) return;
    if (message[0] === TAG_LANDED) {
      // One GET for all of this task's waiters here.
      this.#read(task).then(
        (r) => r !== "pending" && this.#settleAll(task, r),
        (e: unknown) => this.#settleAll(task, e as Error),
      );
      return;
    }
    let r: Outcome | "pending" | Error;
    try {
      r = decodeEntry(message, task);
    } catch (e) {
      r = e as Error;
    }
    if (r !== "pending") this.#settleAll(task, r);
  }

  #wake(task: string, outcome: Outcome): void {
    this.#settleAll(task, outcome);
  }

  #settleAll(task: string, r: Outcome | Error): void {
    const set = this.#waiters.get(task);
    if (!set) return;
    for (const w of [...set]) w.settle(r);
  }

  #failRemoteWaiters(): void {
    const e = new AgentServerNotAliveError(`lost the connection to Redis server at ${this.#shownUrl} while waiting; wait again`);
    for (const set of [...this.#waiters.values()]) for (const w of [...set]) if (w.remote) w.settle(e);
  }

  /**
   * After a reconnect: write what could not be written and restore the markers of running
   * tasks. Both are sent in the "ready" event itself, ahead of anything callers send next.
   */
  async #afterReconnect(): Promise<void> {
    if (this.#closed) return;
    await Promise.all([this.#flushUnsent(), this.#lease()]);
  }

  /** Write outcomes kept while Redis was away (with what is left of their expiry). */
  async #flushUnsent(): Promise<void> {
    const now = Date.now();
    const writes: Promise<unknown>[] = [];
    for (const [task, u] of this.#unsent) {
      const left = u.expiresAt - now;
      if (left <= 0) {
        this.#unsent.delete(task);
        continue;
      }
      writes.push(
        this.#cmd.asSetPublish(this.#key(task), u.entry, left, PUBLISH_WHOLE_MAX, this.#channel(task)).then(
          () => {
            if (this.#unsent.get(task) === u) this.#unsent.delete(task);
          },
          () => {}, // Still failing: kept for the next "ready" or tick.
        ),
      );
    }
    await Promise.all(writes);
  }

  /** Timer: sweep counters, retry kept outcomes, lease running tasks' markers. */
  async #tick(): Promise<void> {
    this.#sweepExpiring();
    if (this.#closed || this.#cmd.status !== "ready") return;
    // A write that timed out on a connection that stayed up gets no "ready" to retry on.
    if (this.#unsent.size > 0) await this.#flushUnsent();
    await this.#lease();
  }

  /** Refresh (or restore) the pending markers of tasks running here. */
  async #lease(): Promise<void> {
    if (this.#closed || this.#running.size === 0 || this.#cmd.status !== "ready") return;
    const keys = [...this.#running].map((t) => this.#key(t));
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < keys.length; i += LEASE_BATCH) {
      const batch = keys.slice(i, i + LEASE_BATCH);
      // A failure means Redis is away: the reconnect runs the lease again.
      calls.push(this.#cmd.asLease(batch.length, ...batch, this.#ttlMs, this.#marker).catch(() => {}));
    }
    await Promise.all(calls);
  }

  #keepUnsent(task: string, u: Unsent): void {
    this.#unsent.set(task, u);
    if (this.#unsent.size > this.#maxUnsent) {
      const oldest = this.#unsent.keys().next();
      if (!oldest.done) this.#unsent.delete(oldest.value);
    }
  }

  #countExpiring(at: number): void {
    const second = Math.ceil(at / 1000);
    this.#expiring.set(second, (this.#expiring.get(second) ?? 0) + 1);
    this.#expiringTotal++;
  }

  #sweepExpiring(): void {
    const now = Date.now();
    // Insertion order is expiry order (one fixed ttl), so stop at the first live bucket.
    for (const [second, n] of this.#expiring) {
      if (second * 1000 > now) break;
      this.#expiring.delete(second);
      this.#expiringTotal -= n;
    }
  }

  #open(): void {
    if (this.#closed) throw new AgentServerNotAliveError("result pool closed");
  }

  #key(task: string): string {
    return this.#keyPrefix + task;
  }

  #channel(task: string): string {
    return this.#channelPrefix + task;
  }

  /**
   * A failed command as an actorscope error. Connection trouble, timeouts and Redis's
   * transient refusals (loading, busy script, failover) are UNAVAILABLE: try again later.
   */
  #commandError(e: unknown, op: string, note = ""): AgentServerError {
    const err = e instanceof Error ? e : new Error(String(e));
    const unavailable = () => new AgentServerNotAliveError(`Redis server at ${this.#shownUrl} is unavailable (${op}: ${err.message})${note}`);
    if (err.name !== "ReplyError") return unavailable();
    const msg = `Redis refused ${op}: ${err.message}${note}`;
    if (/^(LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN)\b/.test(err.message)) return unavailable();
    if (/^OOM\b/.test(err.message)) return new ResourceExhaustedError(msg);
    if (/^(NOPERM|NOAUTH|WRONGPASS)\b/.test(err.message)) return new AgentServerError(msg, { code: "PERMISSION_DENIED" });
    return new AgentServerError(msg, { code: "INTERNAL" });
  }
}

function alreadyExists(task: string): AgentServerError {
  return new AgentServerError(`task ${task} already exists`, { code: "ALREADY_EXISTS" });
}

/** Close a connection politely if it is up, at once otherwise (QUIT would fail or wait). */
async function quit(c: Redis): Promise<void> {
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

/** An outcome as a Redis entry: a tag byte, then the value bytes or the wire error as JSON. */
function encodeOutcome(o: Outcome): Buffer {
  if (o.ok) {
    const b = Buffer.allocUnsafe(1 + o.value.byteLength);
    b[0] = TAG_VALUE;
    b.set(o.value, 1);
    return b;
  }
  return Buffer.concat([Buffer.of(TAG_ERROR), Buffer.from(JSON.stringify(o.error), "utf8")]);
}

/** Read an entry written by `prepare` or `encodeOutcome`; anything else is INTERNAL. */
function decodeEntry(b: Buffer, task: string): Outcome | "pending" {
  switch (b[0]) {
    case TAG_PENDING:
      return "pending";
    case TAG_VALUE:
      // A copy: the reply buffer may be a view into a larger socket buffer.
      return { ok: true, value: new Uint8Array(b.subarray(1)) };
    case TAG_ERROR: {
      let w: Partial<WireError> | null = null;
      try {
        w = JSON.parse(b.subarray(1).toString("utf8")) as Partial<WireError> | null;
      } catch {
        // Malformed: reported below.
      }
      if (typeof w?.code === "string" && typeof w.message === "string") return { ok: false, error: w as WireError };
    }
  }
  throw new AgentServerError(`result of task ${task} is malformed in Redis`, { code: "INTERNAL" });
}

/** The URL as it may be shown: the password (userinfo or `?password=`) replaced by `***`. */
export function redactUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/?#]*)@/i, (_m, scheme: string, info: string) => {
      const colon = info.indexOf(":");
      return colon < 0 ? `${scheme}***@` : `${scheme}${info.slice(0, colon)}:***@`;
    })
    .replace(/([?&]password=)[^&#]*/gi, "$1***");
}

/** Remove the URL's password from a message, in case a lower layer echoed it. */
function scrub(message: string, url: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^:@/?#]*:([^@/?#]+)@/i.exec(url);
  let out = message;
  if (m?.[1]) {
    out = out.split(m[1]).join("***");
    const decoded = safeDecode(m[1]);
    if (decoded !== m[1]) out = out.split(decoded).join("***");
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
