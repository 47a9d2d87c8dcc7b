/**
 * The Redis pool's commands on task keys, each batched: markers reserved (SET NX), entries
 * read (MGET), written and published, markers leased, released keys deleted. Batches go as one script
 * call per `SCRIPT_BATCH` keys (see `redis-batch.ts` for why).
 */
import { TickBatcher } from "./redis-batch.ts";
import { SCRIPT_BATCH, WRITE_BATCH_BYTES, type CommandConnection } from "./redis-connection.ts";
import { PUBLISH_WHOLE_MAX } from "./redis-entry.ts";

/** One entry to write: "S" sets it, "N" restores it only where Redis lost the key. */
export interface Write {
  task: string;
  entry: Buffer;
  expiresAt: number;
  mode: "S" | "N";
}

/** Naming and batched commands of one pool's keys. */
export class RedisKeys {
  readonly #cmd: CommandConnection;
  readonly #keyPrefix: string;
  readonly #channelPrefix: string;
  readonly #marker: string;
  readonly #ttlMs: number;
  readonly #maxToDelete: number;
  readonly #prepares: TickBatcher<string, number>;
  readonly #writes: TickBatcher<Write, unknown>;
  readonly #reads: TickBatcher<string, Buffer | null>;
  /** Released tasks whose keys are to be deleted: on the next tick, or once Redis is back. */
  readonly #toDelete = new Set<string>();
  #deleteScheduled = false;

  constructor(cmd: CommandConnection, opts: { prefix: string; marker: string; ttlMs: number; maxToDelete: number }) {
    this.#cmd = cmd;
    this.#keyPrefix = `${opts.prefix}r:`;
    this.#channelPrefix = `${opts.prefix}d:`;
    this.#marker = opts.marker;
    this.#ttlMs = opts.ttlMs;
    this.#maxToDelete = opts.maxToDelete;
    this.#prepares = new TickBatcher((tasks) => cmd.asPrepare(tasks.length, ...tasks.map((t) => this.key(t)), this.#marker, this.#ttlMs), { maxItems: SCRIPT_BATCH });
    this.#writes = new TickBatcher((ws) => this.#writeMany(ws), { maxItems: SCRIPT_BATCH, maxBytes: WRITE_BATCH_BYTES, bytesOf: (w) => w.entry.byteLength });
    this.#reads = new TickBatcher((tasks) => cmd.mgetBuffer(...tasks.map((t) => this.key(t))), { maxItems: SCRIPT_BATCH });
  }

  get channelPrefix(): string {
    return this.#channelPrefix;
  }

  key(task: string): string {
    return this.#keyPrefix + task;
  }

  /** SET NX of the task's pending marker: true if reserved, false if the id is taken. */
  async reserve(task: string): Promise<boolean> {
    return (await this.#prepares.push(task)) === 1;
  }

  /** GET the task's entry (null if none), batched with the other reads of this tick (MGET). */
  read(task: string): Promise<Buffer | null> {
    return this.#reads.push(task);
  }

  /** Write (and publish) an entry, batched with the other writes of this tick. */
  async write(w: Write): Promise<void> {
    await this.#writes.push(w);
  }

  /** Refresh (or restore) the pending markers of `tasks` (running here). */
  async lease(tasks: Iterable<string>): Promise<void> {
    if (this.#cmd.status !== "ready") return;
    await this.#batched([...tasks], (keys) => this.#cmd.asLease(keys.length, ...keys, this.#ttlMs, this.#marker));
  }

  /** Delete `task`'s key soon (released): batched with the other releases of this tick. */
  deleteSoon(task: string): void {
    this.#toDelete.add(task);
    // Past the bound the oldest are left to expire: deleting is an optimisation, not a duty.
    if (this.#toDelete.size > this.#maxToDelete) this.#toDelete.delete(this.#toDelete.values().next().value!);
    if (this.#deleteScheduled || this.#cmd.status !== "ready") return;
    this.#deleteScheduled = true;
    setImmediate(() => {
      this.#deleteScheduled = false;
      void this.flushDeletes();
    });
  }

  /** Delete the released keys not deleted yet (kept for later if Redis is away). */
  async flushDeletes(): Promise<void> {
    if (this.#toDelete.size === 0 || this.#cmd.status !== "ready") return;
    const tasks = [...this.#toDelete];
    this.#toDelete.clear();
    await this.#batched(tasks, (keys) => this.#cmd.asRelease(keys.length, ...keys, this.#marker), (failed) => {
      for (const t of failed) this.#toDelete.add(t);
    });
  }

  /** One script call writing (and publishing) a batch of entries. */
  async #writeMany(ws: Write[]): Promise<unknown[]> {
    const now = Date.now();
    await this.#cmd.asWrite(
      ws.length,
      ...ws.map((w) => this.key(w.task)),
      ...ws.map((w) => w.entry),
      ...ws.map((w) => Math.max(1, w.expiresAt - now)),
      ...ws.map((w) => this.#channelPrefix + w.task),
      ...ws.map((w) => w.mode),
      PUBLISH_WHOLE_MAX,
    );
    return ws;
  }

  /** Run a keys script over `tasks` in batches; `onFail` gets the tasks of a failed batch. */
  async #batched(tasks: string[], run: (keys: string[]) => Promise<unknown>, onFail?: (tasks: string[]) => void): Promise<void> {
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < tasks.length; i += SCRIPT_BATCH) {
      const part = tasks.slice(i, i + SCRIPT_BATCH);
      // A failure means Redis is away: the reconnect runs this again.
      calls.push(run(part.map((t) => this.key(t))).catch(() => onFail?.(part)));
    }
    await Promise.all(calls);
  }
}
