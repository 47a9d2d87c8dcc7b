/**
 * Bounded concurrency for async calls: at most `limit` run at once, up to `maxQueue` wait
 * in FIFO order, and anything beyond is refused at once with RESOURCE_EXHAUSTED (so a flood
 * of calls fails fast instead of growing memory). A queued call whose deadline passes
 * before it starts is dropped without running (DEADLINE_EXCEEDED).
 */
import { DeadlineExceededError, ResourceExhaustedError } from "../rpc/errors.ts";

interface Waiter {
  start(): void;
  deadlineAt?: number;
  fail(e: Error): void;
}

/** A semaphore with a bounded FIFO queue. */
export class Capacity {
  readonly limit: number;
  readonly maxQueue: number;
  #running = 0;
  readonly #queue: Waiter[] = [];
  #head = 0;

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
    return this.#queue.length - this.#head;
  }

  /** Throws RESOURCE_EXHAUSTED if a call submitted now would be refused. */
  admit(): void {
    if (this.#running >= this.limit && this.queued >= this.maxQueue) {
      throw new ResourceExhaustedError(`server busy: ${this.limit} calls running and ${this.maxQueue} queued`);
    }
  }

  /** Run `fn` when a slot is free. Call `admit()` first to refuse synchronously. */
  run<T>(fn: () => Promise<T>, deadlineAt?: number): Promise<T> {
    if (this.#running < this.limit) return this.#go(fn);
    try {
      this.admit();
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<T>((resolve, reject) => {
      const w: Waiter = {
        start: () => this.#go(fn).then(resolve, reject),
        fail: reject,
      };
      if (deadlineAt !== undefined) w.deadlineAt = deadlineAt;
      this.#queue.push(w);
    });
  }

  async #go<T>(fn: () => Promise<T>): Promise<T> {
    this.#running++;
    try {
      return await fn();
    } finally {
      this.#running--;
      this.#next();
    }
  }

  #next(): void {
    while (this.#running < this.limit && this.#head < this.#queue.length) {
      const w = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as Waiter;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#head = 0;
      }
      if (w.deadlineAt !== undefined && w.deadlineAt <= performance.now()) {
        w.fail(new DeadlineExceededError("call expired in the queue before it could start"));
        continue;
      }
      w.start();
    }
  }
}
