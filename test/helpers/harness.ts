/**
 * Test harness: a real `Servicer` behind an in-memory transport, registered as a child-like
 * server so that proxies, references and pipelining to it work exactly as they do to a
 * spawned child — without a process. Disposing it checks for leaks, as Cap'n Web's
 * `checkAllDisposed` does: once in-flight work has drained, the object table, running tasks,
 * result pool, requests and abort listeners must be back where they started, or dispose
 * throws naming what was left.
 *
 * @example
 * await using h = await memoryServer({ classes: [Cell] });
 * await using c = h.toDist(Cell, 1);
 * expect(await c.add(2)).toBe(3);
 */
import { ServerConnection } from "../../src/client/connection.ts";
import { forgetConnection, registerConnection } from "../../src/client/connections.ts";
import { makeRemote } from "../../src/client/proxy.ts";
import { type Remote } from "../../src/client/proxy-state.ts";
import { encodeArgsWhenReady } from "../../src/client/ref-encode.ts";
import { DEFAULT_RETRY } from "../../src/client/retry.ts";
import { MemoryTransport } from "../../src/client/transports/memory.ts";
import { randomId } from "../../src/core/ids.ts";
import { classInfo, classTable } from "../../src/core/registry.ts";
import type { Address } from "../../src/core/transport.ts";
import { LocalPool } from "../../src/server/pool/local.ts";
import type { Outcome, ResultPool } from "../../src/server/pool/types.ts";
import { Servicer } from "../../src/server/servicer.ts";
import type { ServicerOptions } from "../../src/server/servicer-options.ts";

/** Options of `memoryServer`: the classes it may create, and any servicer option. */
export interface MemoryServerOptions extends Partial<Omit<ServicerOptions, "pool" | "resolveClass" | "address" | "serverId">> {
  /** `@dist` classes the server may create. */
  classes: Function[];
  /** Result pool size (default 8192). */
  maxPoolSize?: number;
  /** Longest wait for in-flight work to drain at dispose before what is left counts as leaked, ms. Default 1000. */
  drainMs?: number;
  /**
   * Finished results nobody read may be left (fire-and-forget calls, a deadline that passed):
   * in real use their owner's AsyncResult releases them when collected, which a test cannot
   * wait for deterministically.
   */
  allowUnread?: boolean;
}

/** Counts abort listeners added to signals the harness handed out and not removed since. */
class ListenerTracker {
  readonly #live = new Map<AbortSignal, Map<unknown, { once: boolean }>>();

  /** An AbortController whose signal's listeners are counted. */
  controller(): AbortController {
    const c = new AbortController();
    const s = c.signal;
    const add = s.addEventListener.bind(s);
    const remove = s.removeEventListener.bind(s);
    const live = this.#live;
    s.addEventListener = ((...args: Parameters<typeof add>) => {
      add(...args);
      const [type, fn, opts] = args;
      if (type !== "abort" || !fn) return;
      let set = live.get(s);
      if (!set) live.set(s, (set = new Map()));
      set.set(fn, { once: typeof opts === "object" && opts.once === true });
    }) as AbortSignal["addEventListener"];
    s.removeEventListener = ((...args: Parameters<typeof remove>) => {
      remove(...args);
      const [type, fn] = args;
      const set = live.get(s);
      if (type !== "abort" || !fn || !set) return;
      set.delete(fn);
      if (set.size === 0) live.delete(s);
    }) as AbortSignal["removeEventListener"];
    return c;
  }

  /** Listeners still attached (a `once` listener of an aborted signal has run and is gone). */
  count(): number {
    let n = 0;
    for (const [s, set] of this.#live) for (const l of set.values()) if (!(l.once && s.aborted)) n++;
    return n;
  }
}

/** A `ResultPool` wrapper that knows which tasks are unfinished, unread, and who is waiting. */
class WatchedPool implements ResultPool {
  readonly inner: LocalPool;
  /** Prepared, not finished. */
  readonly unfinished = new Set<string>();
  /** Finished, never handed to a reader nor released. */
  readonly unread = new Set<string>();
  /** Released by their owner while still running: nobody will read them. */
  readonly #released = new Set<string>();
  /** `get` calls in progress. */
  gets = 0;
  onChange?: () => void;

  constructor(inner: LocalPool) {
    this.inner = inner;
  }

  async prepare(task: string, started?: boolean): Promise<void> {
    await this.inner.prepare(task, started);
    this.unfinished.add(task);
  }

  async set(task: string, outcome: Outcome): Promise<void> {
    if (this.unfinished.delete(task) && !this.#released.delete(task)) this.unread.add(task);
    await this.inner.set(task, outcome);
    this.onChange?.();
  }

  async get(task: string, timeoutMs: number, signal?: AbortSignal, keep?: boolean): Promise<Outcome | "pending"> {
    this.gets++;
    try {
      const o = await this.inner.get(task, timeoutMs, signal, keep);
      if (o !== "pending") this.unread.delete(task);
      return o;
    } finally {
      this.gets--;
      this.onChange?.();
    }
  }

  async release(task: string): Promise<void> {
    this.unread.delete(task);
    if (this.unfinished.has(task)) this.#released.add(task);
    await this.inner.release(task);
  }

  size(): number {
    return this.inner.size();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Thrown by a harness's dispose when something was left behind. */
export class LeakError extends Error {
  constructor(readonly leaks: string[]) {
    super(`leak check failed: ${leaks.join("; ")}`);
  }
}

/** A servicer on an in-memory transport (see the module doc). */
export interface MemoryServer extends AsyncDisposable {
  readonly servicer: Servicer;
  readonly transport: MemoryTransport;
  readonly conn: ServerConnection;
  readonly address: Address;
  /** Create an object of `cls` on this server; disposing the proxy deletes it. */
  toDist<T, A extends unknown[]>(cls: new (...args: A) => T, ...args: A): Remote<T>;
  /** An AbortController whose listeners the leak check counts (use it for `withOptions({ signal })`). */
  controller(): AbortController;
  /** What would be reported as leaked now, without draining first. */
  leaks(): string[];
}

let serial = 0;

/** Start a servicer on an in-memory transport (see the module doc). */
export async function memoryServer(opts: MemoryServerOptions): Promise<MemoryServer> {
  const { classes, maxPoolSize, drainMs = 1000, allowUnread = false, ...rest } = opts;
  const id = `mem${++serial}-${randomId().slice(0, 8)}`;
  const address: Address = { host: "memory", child: id };
  const table = classTable(classes);
  const pool = new WatchedPool(new LocalPool({ maxPoolSize: maxPoolSize ?? 8192, maxExpireTime: 7200 }));
  const servicer = new Servicer({
    capacity: 32,
    maxQueue: 65_536,
    maxTimeoutSeconds: 5,
    ...rest,
    serverId: id,
    address,
    resolveClass: (name) => table.get(name),
    pool,
  });
  const listeners = new ListenerTracker();
  const transport = new MemoryTransport(servicer, { label: `child:${id}`, controller: () => listeners.controller() });
  const conn = new ServerConnection(transport, address);
  // A child-like address: references to this server's objects and tasks, decoded anywhere in
  // this process, find this connection the way they find a spawned child's.
  registerConnection(conn);
  const baseline = { objects: servicer.size };
  const maxWaitMs = (rest.maxTimeoutSeconds ?? 5) * 1000;

  const leaks = (): string[] => {
    const out: string[] = [];
    const say = (n: number, what: string) => {
      if (n > 0) out.push(`${n} ${what}`);
    };
    say(servicer.size - baseline.objects, "object(s) left in the object table");
    say(pool.unfinished.size, "task(s) never finished");
    say(servicer.openStreams, "stream(s) never finished nor cancelled");
    say(servicer.capacity.running + servicer.capacity.queued, "call(s) still running or queued");
    say(pool.gets, "wait(s) still parked in the result pool");
    if (!allowUnread) say(pool.unread.size, "result(s) finished but never read nor released");
    say(transport.pending, "request(s) never answered");
    say(transport.serving, "request(s) still being handled by the server");
    say(transport.held, "request(s) or answer(s) held by a fence never released");
    say(listeners.count(), "abort listener(s) never removed");
    return out;
  };
  // In flight: settles by itself, given turns of the event loop.
  const busy = () =>
    transport.pending + transport.serving + pool.unfinished.size + pool.gets + servicer.capacity.running + servicer.capacity.queued > 0;

  let wake: (() => void) | undefined;
  transport.onChange = pool.onChange = () => wake?.();
  const drain = async (): Promise<void> => {
    const until = performance.now() + drainMs;
    for (;;) {
      // Let answers, cancels and releases already on their way land first.
      await new Promise<void>((r) => setImmediate(r));
      const left = until - performance.now();
      if (!busy() || left <= 0) return;
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
      wake = undefined;
    }
  };

  let disposed = false;
  return {
    servicer,
    transport,
    conn,
    address,
    toDist<T, A extends unknown[]>(cls: new (...args: A) => T, ...args: A): Remote<T> {
      const info = classInfo(cls);
      const oid = randomId();
      const ready = encodeArgsWhenReady(args, "ipc").then((payload) => conn.create(oid, info.cls, payload));
      return makeRemote<T>({ oid, conn, ready, info, created: true, retry: DEFAULT_RETRY, maxWaitMs, host: conn.where.host, port: undefined });
    },
    controller: () => listeners.controller(),
    leaks,
    async [Symbol.asyncDispose](): Promise<void> {
      if (disposed) return;
      disposed = true;
      let found: string[];
      try {
        await drain();
        found = leaks();
      } finally {
        forgetConnection(conn);
        transport.abort(new Error(`in-memory server ${id} disposed`));
        await servicer.close();
      }
      if (found.length > 0) throw new LeakError(found);
    },
  };
}
