/**
 * The Redis pool's waiters. A *local* waiter waits for a task running in this process and is
 * woken by `set` directly. A *remote* waiter waits for a task running elsewhere: it subscribes
 * to the task's channel (one subscription per task, shared by its waiters, on the pool's one
 * subscriber connection), then reads the key, so a result landing in between arrives as a
 * message and is never missed.
 *
 * When the subscriber connection drops, every subscription goes with it (a publish may have
 * been missed): remote waiters are *parked*, not failed, and re-armed (subscribe, then read)
 * as soon as both connections are back. A waiter whose time runs out answers "pending" (the
 * caller asks again), or UNAVAILABLE if Redis has been away longer than a blip.
 */
import type Redis from "ioredis";
import { NotFoundError } from "../../core/errors.ts";
import { ChannelBatcher } from "./redis-batch.ts";
import { RECONNECT_MAX_MS, commandError, isTransient } from "./redis-connection.ts";
import { TAG_LANDED, decodeEntry } from "./redis-entry.ts";
import type { Outcome } from "./types.ts";

/** What the waiters need from their pool. */
export interface WaitHost {
  /** The subscriber connection. */
  readonly sub: Redis;
  readonly channelPrefix: string;
  readonly shownUrl: string;
  /** GET the task's entry: its outcome, "pending", NOT_FOUND, or UNAVAILABLE. */
  read(task: string): Promise<Outcome | "pending">;
  /** The outcome if this server holds it in memory (a read, unless `keep`). */
  fromMemory(task: string, keep: boolean): Outcome | undefined;
  /** Is the task running in this process (so `set` here will wake its waiters)? */
  runningHere(task: string): boolean;
  /** Are both connections up? */
  bothUp(): boolean;
  /** UNAVAILABLE if Redis has been away longer than a blip, else undefined. */
  outageError(op: string): Error | undefined;
}

type Result = Outcome | "pending" | Error;

interface Waiter {
  task: string;
  settle(r: Result): void;
  remote: boolean;
  /** This read does not count as reading (the reader hands references to the result on). */
  keep: boolean;
  /** Waiting for both connections to be back before (re-)subscribing. */
  parked: boolean;
  /** The subscription this waiter counts in, while it has one. */
  sub: Subscription | undefined;
  /** Bumped on every (re-)arming, so a stale subscribe-then-read cannot touch a newer one. */
  gen: number;
  /**
   * Armed again after Redis came back: a NOT_FOUND then may only mean that the task's server
   * has not restored its marker yet, so the waiter stays subscribed until its time runs out.
   */
  rearmed: boolean;
  done: boolean;
}

interface Subscription {
  waiters: number;
  ready: Promise<unknown>;
}

/** Every waiter of one pool, by task. */
export class RedisWaiters {
  readonly #host: WaitHost;
  readonly #byTask = new Map<string, Set<Waiter>>();
  readonly #subs = new Map<string, Subscription>();
  readonly #channels: ChannelBatcher;
  #closed = false;

  constructor(host: WaitHost) {
    this.#host = host;
    this.#channels = new ChannelBatcher((subscribe, channels) => (subscribe ? host.sub.subscribe(...channels) : host.sub.unsubscribe(...channels)));
    host.sub.on("messageBuffer", (channel: Buffer, message: Buffer) => this.#onMessage(channel, message));
  }

  /** Are there waiters for `task`, and does any of them read it (not just keep it)? */
  readers(task: string): { any: boolean; reading: boolean } {
    const set = this.#byTask.get(task);
    if (!set) return { any: false, reading: false };
    let reading = false;
    for (const w of set) reading ||= !w.keep;
    return { any: set.size > 0, reading };
  }

  /** Wait up to `timeoutMs` for `task` (remote: through Redis; local: for `settleAll`). */
  wait(task: string, timeoutMs: number, signal: AbortSignal | undefined, remote: boolean, keep: boolean): Promise<Outcome | "pending"> {
    return new Promise((resolve, reject) => {
      let set = this.#byTask.get(task);
      if (!set) this.#byTask.set(task, (set = new Set()));
      const waiters = set;
      const w: Waiter = {
        task,
        remote,
        keep,
        parked: false,
        sub: undefined,
        gen: 0,
        rearmed: false,
        done: false,
        settle: (r) => {
          if (w.done) return;
          w.done = true;
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          waiters.delete(w);
          if (waiters.size === 0 && this.#byTask.get(task) === waiters) this.#byTask.delete(task);
          this.#dropSub(w);
          if (r instanceof Error) reject(r);
          else resolve(r);
        },
      };
      const onAbort = () => w.settle("pending");
      const timer = setTimeout(() => w.settle((w.parked && this.#host.outageError("wait")) || "pending"), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      waiters.add(w);
      if (remote) this.#arm(w);
    });
  }

  /** Settle every waiter of `task` (an outcome, "pending" to make them ask again, or an error). */
  settleAll(task: string, r: Result): void {
    const set = this.#byTask.get(task);
    if (!set) return;
    for (const w of [...set]) w.settle(r);
  }

  /** The subscriber connection dropped, and every subscription with it: park remote waiters. */
  park(): void {
    this.#subs.clear();
    for (const set of this.#byTask.values()) {
      for (const w of set) {
        if (!w.remote) continue;
        w.sub = undefined;
        w.gen++;
        w.parked = true;
      }
    }
  }

  /** Both connections are back: subscribe and re-read for every parked waiter. */
  rearm(): void {
    for (const set of [...this.#byTask.values()]) {
      for (const w of [...set]) {
        if (!w.parked) continue;
        w.rearmed = true;
        this.#arm(w);
      }
    }
  }

  /** Settle every waiter with `error` (the pool is closing). */
  close(error: Error): void {
    this.#closed = true;
    for (const set of [...this.#byTask.values()]) for (const w of [...set]) w.settle(error);
  }

  #arm(w: Waiter): void {
    if (w.done) return;
    const held = this.#host.fromMemory(w.task, w.keep);
    if (held) return w.settle(held);
    w.parked = false;
    // Prepared here meanwhile: `set` wakes it.
    if (this.#host.runningHere(w.task)) return;
    if (!this.#host.bothUp()) {
      w.parked = true;
      return;
    }
    const gen = ++w.gen;
    this.#dropSub(w);
    const s = this.#subscribe(w.task);
    w.sub = s;
    s.ready
      .then(() => (w.done || w.gen !== gen ? undefined : this.#host.read(w.task)))
      .then(
        (r) => {
          if (r !== undefined && r !== "pending") w.settle(r);
        },
        (e: unknown) => {
          if (w.done || w.gen !== gen) return;
          if (e instanceof NotFoundError && (w.rearmed || this.#host.runningHere(w.task) || this.#host.fromMemory(w.task, true))) return;
          if (!isTransient(e)) return w.settle(commandError(e, this.#host.shownUrl, "subscribe"));
          // Redis went away under us (or is still loading): armed again once it is back, or
          // shortly if the connections never noticed (a reply that timed out).
          this.#dropSub(w);
          w.parked = true;
          if (this.#host.bothUp()) setTimeout(() => w.parked && this.#arm(w), RECONNECT_MAX_MS).unref();
        },
      );
  }

  #subscribe(task: string): Subscription {
    let s = this.#subs.get(task);
    if (!s) {
      s = { waiters: 0, ready: this.#channels.subscribe(this.#host.channelPrefix + task) };
      s.ready.catch(() => {}); // each waiter handles the failure
      this.#subs.set(task, s);
    }
    s.waiters++;
    return s;
  }

  #dropSub(w: Waiter): void {
    const s = w.sub;
    if (!s) return;
    w.sub = undefined;
    if (--s.waiters > 0 || this.#subs.get(w.task) !== s) return;
    this.#subs.delete(w.task);
    // Ordered after any SUBSCRIBE on the same connection; when the connection is down the
    // subscription went with it.
    if (!this.#closed && this.#host.sub.status === "ready") this.#channels.unsubscribe(this.#host.channelPrefix + w.task);
  }

  #onMessage(channel: Buffer, message: Buffer): void {
    const task = channel.toString().slice(this.#host.channelPrefix.length);
    if (!this.#byTask.has(task)) return;
    if (message[0] === TAG_LANDED) {
      // One GET for all of this task's waiters here. Redis going away meanwhile parks them.
      this.#host.read(task).then(
        (r) => r !== "pending" && this.settleAll(task, r),
        (e: unknown) => !isTransient(e) && this.settleAll(task, e as Error),
      );
      return;
    }
    let r: Result;
    try {
      r = decodeEntry(message, task);
    } catch (e) {
      r = e as Error;
    }
    if (r !== "pending") this.settleAll(task, r);
  }
}
