/**
 * In-memory transport (tests): a client `Transport` wired straight to a servicer in the same
 * process, so proxies, references and pipelining can be tested without spawning anything.
 * It takes the path a real transport takes, only shorter: requests and answers are
 * structured-cloned (no object identity crosses), delivered on a later microtask (never
 * inside the caller's own stack), deadlines and cancellation reject the caller at once and
 * abort the request's server-side signal, and a broken link rejects everything pending.
 *
 * Fault hooks, as Cap'n Web's test transport has them: `fence()` holds answers,
 * `fenceRequests()` holds requests, `breakLink()` makes the peer die, `count()` says how many
 * requests of a kind were sent. It imports no server code: the peer is anything with the
 * servicer's `handle()`.
 */
import { AgentServerNotAliveError, CancelledError, CodecError, DeadlineExceededError } from "../../core/errors.ts";
import type { Request, Response } from "../../core/protocol.ts";
import type { CallbackGrant, RequestOptions, Transport } from "../../core/transport.ts";
import { withJoinedFrames } from "../../core/split-frame.ts";

/** What the transport talks to: `Servicer.handle`, which never rejects. */
export interface MemoryPeer {
  handle(raw: unknown, signal?: AbortSignal, gone?: AbortSignal): Promise<Response>;
}

/** Options of a `MemoryTransport`. */
export interface MemoryTransportOptions {
  /** Host shown in the transport's own errors (the connection's `where.host`). Default "memory". */
  label?: string;
  /**
   * Makes the AbortControllers whose signals the peer is handed (one per request, and the
   * connection's `gone`): a test harness passes one that counts listeners left on them.
   */
  controller?: () => AbortController;
}

interface Pending {
  resolve(r: Response): void;
  reject(e: Error): void;
  cleanup?: () => void;
}

/** A client transport whose server is a `MemoryPeer` in this process. */
export class MemoryTransport implements Transport {
  onBroken?: (err: Error) => void;
  /** Called whenever pending or serving counts change (a harness waits on it to drain). */
  onChange?: () => void;
  readonly #peer: MemoryPeer;
  readonly #where: { host: string; port: undefined };
  readonly #controller: () => AbortController;
  /** Requests waiting for an answer, by request number. */
  readonly #pending = new Map<number, Pending>();
  /** Requests the peer is handling now, with the controller of their server-side signal. */
  readonly #serving = new Map<number, AbortController>();
  /** Aborted when the link goes down: the peer drops queued calls of a client that left. */
  readonly #gone: AbortController;
  readonly #sent = new Map<string, number>();
  /** Answers held by `fence()` (delivered in order on release). */
  #answerFences = 0;
  #heldAnswers: Array<() => void> = [];
  /** Request fences: matching requests are held until that fence is released. */
  readonly #requestFences = new Set<{ match(r: Request): boolean; held: Array<() => void> }>();
  readonly #servedWaiters = new Set<{ kind: string; resolve(): void }>();
  /** Requests whose caller gave up before they reached the peer: aborted as soon as they do. */
  readonly #abandoned = new Set<number>();
  #next = 1;
  #broken: Error | undefined;

  constructor(peer: MemoryPeer, opts: MemoryTransportOptions = {}) {
    this.#peer = peer;
    this.#where = { host: opts.label ?? "memory", port: undefined };
    this.#controller = opts.controller ?? (() => new AbortController());
    this.#gone = this.#controller();
  }

  /** Requests sent and not answered yet (held ones included). */
  get pending(): number {
    return this.#pending.size;
  }

  /** Requests the peer is still handling (a caller that gave up does not end them). */
  get serving(): number {
    return this.#serving.size;
  }

  /** Requests and answers held by fences not released yet. */
  get held(): number {
    let n = this.#heldAnswers.length;
    for (const f of this.#requestFences) n += f.held.length;
    return n;
  }

  /** Requests of kind `kind` sent so far (all kinds without one). */
  count(kind?: Request["t"]): number {
    if (kind !== undefined) return this.#sent.get(kind) ?? 0;
    let n = 0;
    for (const v of this.#sent.values()) n += v;
    return n;
  }


  /** Same process: a callback sent here is found in this process's own table. */
  callbackRoute(): CallbackGrant {
    return { route: {}, key: "local" };
  }

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    if (this.#broken) return Promise.reject(this.#broken);
    this.#sent.set(req.t, (this.#sent.get(req.t) ?? 0) + 1);
    if (opts?.signal?.aborted) return Promise.reject(new CancelledError("request aborted", this.#where));
    // What the peer gets is a copy, as after a real wire: mutating either side changes nothing.
    let wire: Request;
    try {
      // A split frame is joined: it is read now, as a real transport writes it within the call.
      wire = structuredClone(withJoinedFrames(req));
    } catch (e) {
      return Promise.reject(new CodecError(`request cannot be sent: ${(e as Error).message}`, this.#where));
    }
    const i = this.#next++;
    return new Promise<Response>((resolve, reject) => {
      const p: Pending = { resolve, reject };
      const cleanups: Array<() => void> = [];
      if (opts?.timeoutMs !== undefined) {
        const ms = opts.timeoutMs;
        const t = setTimeout(() => this.#giveUp(i, new DeadlineExceededError(`no answer within ${ms} ms`, this.#where)), ms);
        cleanups.push(() => clearTimeout(t));
      }
      const s = opts?.signal;
      if (s) {
        const onAbort = () => this.#giveUp(i, new CancelledError("request aborted", this.#where));
        s.addEventListener("abort", onAbort, { once: true });
        cleanups.push(() => s.removeEventListener("abort", onAbort));
      }
      if (cleanups.length > 0) p.cleanup = () => cleanups.forEach((c) => c());
      this.#pending.set(i, p);
      this.onChange?.();
      const fence = [...this.#requestFences].find((f) => f.match(wire));
      if (fence) fence.held.push(() => this.#serve(i, wire));
      else queueMicrotask(() => this.#serve(i, wire));
    });
  }

  /**
   * Hold every answer until the returned function is called; held answers are then delivered
   * in the order they were produced. Lets a test act while calls are known to be unanswered.
   */
  fence(): () => void {
    this.#answerFences++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.#answerFences > 0) return;
      const held = this.#heldAnswers;
      this.#heldAnswers = [];
      for (const deliver of held) deliver();
    };
  }

  /**
   * Hold requests matching `match` (all without one) until the returned function is called:
   * they reach the peer in order on release. Other requests overtake them, as a wait on a
   * gRPC session stream can overtake the call it waits for.
   */
  fenceRequests(match: (req: Request) => boolean = () => true): () => void {
    const f = { match, held: [] as Array<() => void> };
    this.#requestFences.add(f);
    return () => {
      if (!this.#requestFences.delete(f)) return;
      for (const serve of f.held) serve();
    };
  }

  /** Resolves when the next request of kind `kind` reaches the peer. */
  served(kind: Request["t"]): Promise<void> {
    return new Promise((resolve) => this.#servedWaiters.add({ kind, resolve }));
  }

  /** The peer dies: everything pending rejects UNAVAILABLE (or `err`) at once. */
  breakLink(err: Error = new AgentServerNotAliveError("in-memory server gone (link broken)", this.#where)): void {
    this.abort(err);
  }

  abort(reason: Error): void {
    if (this.#broken) return;
    this.#broken = reason;
    const all = [...this.#pending.values()];
    this.#pending.clear();
    // Whatever was held never arrives; whatever runs on the peer is told its caller left.
    this.#heldAnswers = [];
    for (const f of this.#requestFences) f.held = [];
    this.#abandoned.clear();
    for (const c of this.#serving.values()) c.abort();
    this.#gone.abort();
    for (const p of all) {
      p.cleanup?.();
      p.reject(reason);
    }
    this.onChange?.();
    this.onBroken?.(reason);
  }

  /**
   * Hand a request to the peer. One whose caller gave up on the way still arrives, and its
   * cancel right behind it, as on a real wire: the peer may have acted on it (an async call
   * becomes a task), which a test must be able to see.
   */
  #serve(i: number, wire: Request): void {
    if (this.#broken) return;
    const ctl = this.#controller();
    this.#serving.set(i, ctl);
    if (this.#abandoned.delete(i)) queueMicrotask(() => ctl.abort());
    for (const w of [...this.#servedWaiters]) {
      if (w.kind !== wire.t) continue;
      this.#servedWaiters.delete(w);
      w.resolve();
    }
    this.#peer.handle(wire, ctl.signal, this.#gone.signal).then((res) => {
      this.#serving.delete(i);
      if (!this.#broken) this.#answer(i, res);
      this.onChange?.();
    });
  }

  #answer(i: number, res: Response): void {
    let wire: Response;
    try {
      wire = structuredClone(withJoinedFrames(res));
    } catch (e) {
      // A real wire would fail to encode this too; the caller must not hang.
      wire = { t: "error", error: { code: "INTERNAL", message: `answer cannot be sent: ${(e as Error).message}` } };
    }
    const deliver = () => this.#settle(i)?.resolve(wire);
    if (this.#answerFences > 0) this.#heldAnswers.push(deliver);
    else queueMicrotask(deliver);
  }

  /** The caller stopped waiting (deadline, cancel): reject it now and tell the peer. */
  #giveUp(i: number, err: Error): void {
    const p = this.#settle(i);
    if (!p) return;
    p.reject(err);
    // The cancel travels like a frame: the peer learns of it on a later turn, or as soon as
    // the request itself arrives if it has not yet.
    const ctl = this.#serving.get(i);
    if (ctl) queueMicrotask(() => ctl.abort());
    else this.#abandoned.add(i);
  }

  #settle(i: number): Pending | undefined {
    const p = this.#pending.get(i);
    if (!p) return undefined;
    this.#pending.delete(i);
    p.cleanup?.();
    this.onChange?.();
    return p;
  }
}
