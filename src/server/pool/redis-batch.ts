/**
 * Per-tick batching of the Redis pool's commands. Every command costs ioredis tens of
 * microseconds of this server's CPU, more than Redis spends running it: measured on this
 * machine, 8,000 single-key script calls took 210–290 ms (425–650 ms with ioredis's own
 * auto-pipelining), the same writes as 16 calls of 512 keys 60–150 ms. So the prepares and
 * the writes issued in one turn of the event loop go to Redis as one script call per batch.
 */

/** Limits of one batch. */
export interface BatchLimits<I> {
  /** Most items per call (keeps one script run short: Redis runs nothing else meanwhile). */
  maxItems: number;
  /** Most payload bytes per call, by `bytesOf` (a large item still goes, alone). */
  maxBytes?: number;
  bytesOf?: (item: I) => number;
}

interface Pending<I, R> {
  item: I;
  resolve(r: R): void;
  reject(e: unknown): void;
}

/**
 * Collects items pushed during one turn of the event loop and hands them to `run` in
 * batches; each push settles with its own result, or with its batch's failure.
 */
export class TickBatcher<I, R> {
  readonly #run: (items: I[]) => Promise<R[]>;
  readonly #limits: BatchLimits<I>;
  #queue: Pending<I, R>[] = [];

  constructor(run: (items: I[]) => Promise<R[]>, limits: BatchLimits<I>) {
    this.#run = run;
    this.#limits = limits;
  }

  push(item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      // setImmediate, not a microtask: requests that arrived in the same poll of the event
      // loop (one gRPC batch, one IPC frame, many timers) join the same batch.
      if (this.#queue.length === 0) setImmediate(() => this.#flush());
      this.#queue.push({ item, resolve, reject });
    });
  }

  #flush(): void {
    const queue = this.#queue;
    this.#queue = [];
    const { maxItems, maxBytes = Infinity, bytesOf } = this.#limits;
    let batch: Pending<I, R>[] = [];
    let bytes = 0;
    for (const p of queue) {
      const b = bytesOf ? bytesOf(p.item) : 0;
      if (batch.length > 0 && (batch.length >= maxItems || bytes + b > maxBytes)) {
        this.#send(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(p);
      bytes += b;
    }
    if (batch.length > 0) this.#send(batch);
  }

  #send(batch: Pending<I, R>[]): void {
    let sent: Promise<R[]>;
    try {
      sent = this.#run(batch.map((p) => p.item));
    } catch (e) {
      sent = Promise.reject(e);
    }
    sent.then(
      (results) => batch.forEach((p, i) => p.resolve(results[i]!)),
      (e: unknown) => batch.forEach((p) => p.reject(e)),
    );
  }
}

/**
 * SUBSCRIBE and UNSUBSCRIBE of one tick, in the order they were asked for, each run of the
 * same kind as one command (ioredis sends a connection's commands in order, so a channel
 * dropped and taken again in one tick ends up subscribed).
 */
export class ChannelBatcher {
  readonly #send: (subscribe: boolean, channels: string[]) => Promise<unknown>;
  #ops: Array<{ subscribe: boolean; channel: string; done?: PromiseWithResolvers<void> }> = [];

  constructor(send: (subscribe: boolean, channels: string[]) => Promise<unknown>) {
    this.#send = send;
  }

  /** Resolves once Redis confirmed the subscription. */
  subscribe(channel: string): Promise<void> {
    const done = Promise.withResolvers<void>();
    this.#push({ subscribe: true, channel, done });
    return done.promise;
  }

  /** Fire and forget: a failure means the connection, and the subscription with it, is gone. */
  unsubscribe(channel: string): void {
    this.#push({ subscribe: false, channel });
  }

  #push(op: { subscribe: boolean; channel: string; done?: PromiseWithResolvers<void> }): void {
    if (this.#ops.length === 0) setImmediate(() => this.#flush());
    this.#ops.push(op);
  }

  #flush(): void {
    const ops = this.#ops;
    this.#ops = [];
    for (let i = 0; i < ops.length; ) {
      const kind = ops[i]!.subscribe;
      let j = i;
      while (j < ops.length && ops[j]!.subscribe === kind && j - i < 4096) j++;
      const run = ops.slice(i, j);
      const sent = this.#send(kind, run.map((o) => o.channel));
      sent.then(
        () => run.forEach((o) => o.done?.resolve()),
        (e: unknown) => run.forEach((o) => o.done?.reject(e)),
      );
      i = j;
    }
  }
}
