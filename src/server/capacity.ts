/**
 * Bounded concurrency for async calls: at most `limit` run at once, up to `maxQueue` wait
 * in FIFO order, and anything beyond is refused at once with RESOURCE_EXHAUSTED (so a flood
 * of calls fails fast instead of growing memory). A queued call whose deadline passes
 * before it starts is dropped without running (DEADLINE_EXCEEDED).
 *
 * A running call that waits on another server's result (a pipelined reference, a call to
 * another agent) gives its slot up meanwhile (`Slot.suspend`) and takes one again, ahead of
 * queued calls, when the result is in: otherwise chains of agents awaiting each other across
 * servers would fill every slot with waiters and deadlock (Ray frees an actor's resources in
 * `ray.get` for the same reason).
 */
import { CancelledError, DeadlineExceededError, ResourceExhaustedError } from "../core/errors.ts";

interface Waiter {
  start(): void;
  deadlineAt?: number;
  fail(e: Error): void;
  /** Its caller went away while it was queued: skipped when its turn comes. */
  dropped?: true;
}

function callerGone(): CancelledError {
  return new CancelledError("dropped before it started: the caller's connection closed");
}

/** The slot of one running call (see `Capacity.run`). */
export class Slot {
  /** The call holds its slot now. */
  #held = true;
  /** Waits in progress that gave the slot up. */
  #waiting = 0;
  #closed = false;
  #regaining: Promise<void> | undefined;
  readonly #cap: Capacity;

  constructor(cap: Capacity) {
    this.#cap = cap;
  }

  /**
   * The call starts waiting on something outside this server: its slot goes to another call
   * until the returned `resume` has been awaited (call it once the wait is over).
   */
  suspend(): () => Promise<void> {
    if (this.#closed) return resolved;
    this.#waiting++;
    if (this.#held) {
      this.#held = false;
      this.#cap.free();
    }
    let done = false;
    return () => {
      if (done) return resolved();
      done = true;
      this.#waiting--;
      return this.#regain();
    };
  }

  #regain(): Promise<void> {
    if (this.#held || this.#closed) return resolved();
    if (this.#waiting > 0) return this.#regaining ?? resolved();
    this.#regaining ??= this.#cap.reacquire().then(() => {
      this.#regaining = undefined;
      // Another wait began meanwhile, or the call ended: hand the slot straight back.
      if (this.#closed || this.#waiting > 0) this.#cap.free();
      else this.#held = true;
    });
    return this.#regaining;
  }

  /** The call ended; true if it still held its slot (the caller frees it). */
  close(): boolean {
    this.#closed = true;
    return this.#held;
  }
}

function resolved(): Promise<void> {
  return Promise.resolve();
}

/** A semaphore with a bounded FIFO queue. */
export class Capacity {
  readonly limit: number;
  readonly maxQueue: number;
  #running = 0;
  readonly #queue: Waiter[] = [];
  #head = 0;
  /** Queued calls dropped (their caller went away) and not yet skipped past. */
  #dropped = 0;
  /** Suspended calls taking a slot back: served before the queue. */
  readonly #resuming: Array<() => void> = [];

  constructor(limit: number, maxQueue: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError("capacity must be a positive integer");
    this.limit = limit;
    this.maxQueue = maxQueue;
  }

  /** Calls running now. */
  get running(): number {
    return this.#running;
  }

  /** Calls waiting for a slot. */
  get queued(): number {
    return this.#queue.length - this.#head - this.#dropped;
  }

  /** Throws RESOURCE_EXHAUSTED if a call submitted now would be refused. */
  admit(): void {
    if (this.#running >= this.limit && this.queued >= this.maxQueue) {
      throw new ResourceExhaustedError(`server busy: ${this.limit} calls running and ${this.maxQueue} queued`);
    }
  }

  /** Give one slot back (a suspended call, or one whose regained slot is not needed). */
  free(): void {
    this.#running--;
    this.#next();
  }

  /** Take a slot for a suspended call, ahead of every queued call. */
  reacquire(): Promise<void> {
    if (this.#running < this.limit && this.#resuming.length === 0) {
      this.#running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#resuming.push(resolve));
  }

  /**
   * A slot now, if one is free and no call waits for one (taking it jumps no queue); release
   * it with `release` when the call ends. Undefined: go through `run`.
   */
  tryTake(): Slot | undefined {
    if (this.#running >= this.limit || this.#resuming.length > 0 || this.#head < this.#queue.length) return undefined;
    this.#running++;
    return new Slot(this);
  }

  /** The call that took `slot` (`tryTake`) ended. */
  release(slot: Slot): void {
    if (slot.close()) {
      this.#running--;
      this.#next();
    }
  }

  /** Run `fn` when a slot is free. Call `admit()` first to refuse synchronously. */
  run<T>(fn: (slot: Slot) => Promise<T>, deadlineAt?: number, gone?: AbortSignal): Promise<T> {
    if (this.#running < this.limit) return this.#go(fn);
    try {
      this.admit();
    } catch (e) {
      return Promise.reject(e);
    }
    if (gone?.aborted) return Promise.reject(callerGone());
    return new Promise<T>((resolve, reject) => {
      const onGone = () => {
        // Still queued: it never runs. (A started call keeps going.)
        if (w.dropped !== undefined) return;
        w.dropped = true;
        this.#dropped++;
        reject(callerGone());
      };
      const w: Waiter = {
        start: () => {
          gone?.removeEventListener("abort", onGone);
          this.#go(fn).then(resolve, reject);
        },
        fail: (e) => {
          gone?.removeEventListener("abort", onGone);
          reject(e);
        },
      };
      if (deadlineAt !== undefined) w.deadlineAt = deadlineAt;
      gone?.addEventListener("abort", onGone, { once: true });
      this.#queue.push(w);
    });
  }

  async #go<T>(fn: (slot: Slot) => Promise<T>): Promise<T> {
    this.#running++;
    const slot = new Slot(this);
    try {
      return await fn(slot);
    } finally {
      this.release(slot);
    }
  }

  #next(): void {
    while (this.#running < this.limit && this.#resuming.length > 0) {
      this.#running++;
      this.#resuming.shift()!();
    }
    while (this.#running < this.limit && this.#head < this.#queue.length) {
      const w = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as Waiter;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#head = 0;
      }
      if (w.dropped) {
        this.#dropped--;
        continue;
      }
      if (w.deadlineAt !== undefined && w.deadlineAt <= performance.now()) {
        w.fail(new DeadlineExceededError("call expired in the queue before it could start"));
        continue;
      }
      w.start();
    }
  }
}
