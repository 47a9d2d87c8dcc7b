/**
 * Supervision, client side: a proxy whose object is re-created when its server dies.
 *
 * A `Supervisor` is the transport of a supervised proxy. It forwards requests to the server
 * holding the object now (an *incarnation*); when that server dies it asks its spec for a new
 * one (a new child process, another server of a group), re-creating the object with the same
 * oid and the last snapshot it received, within a restart budget (`RestartPolicy`).
 *
 * What callers see, and why:
 * - Requests in flight at the crash fail UNAVAILABLE (the old link's error): the call may or
 *   may not have run, and running it again silently could do it twice.
 * - Requests made after the crash wait for the new incarnation and go there, in order.
 * - Waits for tasks started on a dead incarnation fail UNAVAILABLE (the result died with it).
 * - Past `maxRestarts` within `withinMs` every request fails UNAVAILABLE saying so.
 * - Snapshots: for a class defining `snapshot()`, `call`/`wait` requests carry `snap: true`
 *   and the snapshot riding a value answer is kept here, in the supervising process.
 */
import { AgentCreationError, AgentServerNotAliveError, errorFromWire } from "../core/errors.ts";
import type { Request, Response } from "../core/protocol.ts";
import type { RequestOptions, Transport, CallbackGrant } from "../core/transport.ts";
import { ServerConnection } from "./connection.ts";
import { remoteState } from "./proxy-state.ts";
import { logChildEvent } from "./child-output.ts";

/** When and how often a crashed object is re-created. */
export interface RestartPolicy {
  /** Restarts allowed within `withinMs`; one more crash in that window and the object stays dead. 0: never restart. */
  maxRestarts: number;
  /** The window restarts are counted in, ms. Default 60 000. */
  withinMs?: number;
  /**
   * Pause before a restart, ms, doubled for each earlier restart still in the window (at most
   * 10 s): a crash loop must not spin a CPU spawning processes. Default 100.
   */
  backoffMs?: number;
}

/** Default `RestartPolicy.withinMs`. */
export const DEFAULT_RESTART_WITHIN_MS = 60_000;
/** Default `RestartPolicy.backoffMs`. */
export const DEFAULT_RESTART_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;
/** Tasks remembered per supervised object, to tell a dead incarnation's task from a live one. */
const MAX_TRACKED_TASKS = 65_536;

/** Check a policy given by a user; throws TypeError naming the bad field. */
export function checkRestartPolicy(p: unknown): asserts p is RestartPolicy {
  if (p === null || typeof p !== "object") throw new TypeError("restart must be a RestartPolicy object: { maxRestarts, withinMs?, backoffMs? }");
  const r = p as Record<string, unknown>;
  if (!Number.isInteger(r.maxRestarts) || (r.maxRestarts as number) < 0) throw new TypeError("restart.maxRestarts must be a non-negative integer");
  for (const k of ["withinMs", "backoffMs"]) {
    if (r[k] !== undefined && (typeof r[k] !== "number" || !((r[k] as number) >= 0))) throw new TypeError(`restart.${k} must be a non-negative number`);
  }
}

/** Restarts of a supervised object, as `restartInfo()` reports them. */
export interface RestartInfo {
  /** Restarts so far (the first creation is not one). */
  restarts: number;
  /** Why the last restart happened (e.g. "child server … exited (signal SIGKILL)"). */
  lastRestartReason?: string;
  /** `Date.now()` of the last restart. */
  lastRestartAt?: number;
  /** Where the object lives now (`child:<id>` or `host:port`); undefined while restarting. */
  where?: string;
  /** Process id of its server, when known (child mode). */
  pid?: number;
  /** Set once the object is dead for good: why (budget spent, stopped, creation failed). */
  dead?: string;
}

/** One place the object lives. */
export interface Incarnation {
  conn: ServerConnection;
  /** Process id of the server, when known. */
  pid?: number;
  /** Release what this incarnation owns (a child process); absent for shared servers. */
  stop?(): Promise<void>;
  /** False once its server is known to have died (checked when it is attached). */
  alive?(): boolean;
}

/** What a supervisor needs to know to re-create its object. */
export interface SupervisorSpec {
  oid: string;
  cls: string;
  policy: RestartPolicy;
  /** The class defines `snapshot()`: ask for snapshots and keep them. */
  snapshots: boolean;
  /** Create the object (with `state`, the last snapshot, if any) somewhere new; resolves with where. */
  respawn(state: Uint8Array | undefined, why: string | undefined): Promise<Incarnation>;
  /**
   * A request failed UNAVAILABLE on `inc`: is its server gone? (Group mode probes it; child
   * mode learns of a death from the process exit instead and leaves this out.)
   */
  isGone?(inc: Incarnation): Promise<boolean>;
  /** Told of each crash, restart and final death (a server that supervises logs and counts them). */
  events?: SupervisionEvents;
}

/** What a supervisor reports as it happens; each hook must be cheap and must not throw. */
export interface SupervisionEvents {
  /** The object's server died (`why`); a restart follows unless the budget is spent. */
  crashed(why: string): void;
  /** The object is up again (`info.restarts` counts this one). */
  restarted(info: RestartInfo): void;
  /** The object is dead for good: budget spent, or it could not be created. */
  gaveUp(why: string): void;
}

/** The transport of a supervised proxy (see the module comment). */
export class Supervisor implements Transport {
  readonly #spec: SupervisorSpec;
  #current: Incarnation | undefined;
  #gen = 0;
  #up = Promise.withResolvers<void>();
  #dead: Error | undefined;
  #last: Uint8Array | undefined;
  /** Task → incarnation number it was started on. */
  readonly #tasks = new Map<string, number>();
  /** `performance.now()` of the restarts still in the window. */
  #recent: number[] = [];
  #info: RestartInfo = { restarts: 0 };
  /** Woken at every crash (see `nextRestart`). */
  #waiters: Array<() => void> = [];
  onBroken?: (err: Error) => void;
  /** Set by the connection: the incarnation's address changed. */
  onMove?: (inc: Incarnation) => void;

  constructor(spec: SupervisorSpec) {
    this.#spec = spec;
    this.#up.promise.catch(() => {});
  }

  /** Callbacks go to the current incarnation's server. */
  callbackRoute(): CallbackGrant | undefined {
    return this.#current?.conn.transport.callbackRoute?.();
  }

  /** Create the object the first time; rejects (and the supervisor is dead) if that fails. */
  start(): Promise<void> {
    this.#spec.respawn(undefined, undefined).then(
      (inc) => this.#attach(inc),
      (e) => this.#die(e instanceof Error ? e : new AgentCreationError(String(e))),
    );
    return this.#up.promise;
  }

  /** Resolves when the object is up (now, or after the restart under way); rejects once dead. */
  get up(): Promise<void> {
    return this.#up.promise;
  }

  /**
   * Settles at the next change of incarnation after a crash: resolves once the object is up
   * again, rejects if it is dead for good instead. (For tests and tools that must not poll.)
   */
  nextRestart(): Promise<RestartInfo> {
    const n = this.#info.restarts;
    const step = (): Promise<RestartInfo> =>
      this.#up.promise.then(() => (this.#info.restarts > n ? this.info() : new Promise<void>((r) => this.#waiters.push(r)).then(step)));
    return step();
  }

  /** The last snapshot received (codec frame), if any. */
  get lastSnapshot(): Uint8Array | undefined {
    return this.#last;
  }

  /** What has happened so far. */
  info(): RestartInfo {
    const i = { ...this.#info };
    if (this.#current) {
      i.where = this.#current.conn.where.port === undefined ? this.#current.conn.where.host : `${this.#current.conn.where.host}:${this.#current.conn.where.port}`;
      if (this.#current.pid !== undefined) i.pid = this.#current.pid;
    }
    if (this.#dead) i.dead = this.#dead.message;
    return i;
  }

  /** Why requests fail for good, if they do. */
  get dead(): Error | undefined {
    return this.#dead;
  }

  /** The incarnation now serving, if any. */
  get current(): Incarnation | undefined {
    return this.#current;
  }

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    if (this.#dead) return Promise.reject(this.#dead);
    if (req.t === "wait" || req.t === "cancel" || req.t === "release") {
      const gen = this.#tasks.get(req.task);
      if (gen !== undefined && gen !== this.#gen) {
        if (req.t !== "wait") return Promise.resolve({ t: "ok" });
        return Promise.reject(new AgentServerNotAliveError(`task ${req.task} of ${this.#spec.cls} ${this.#spec.oid} was lost with its server (${this.#info.lastRestartReason ?? "it died"}); the call may have run. The object was restarted: call again if that is safe`));
      }
    }
    const inc = this.#current;
    if (!inc) return this.#up.promise.then(() => this.request(req, opts));
    return this.#forward(inc, req, opts);
  }

  #forward(inc: Incarnation, req: Request, opts: RequestOptions | undefined): Promise<Response> {
    let sent: Request = req;
    if (req.t === "call") {
      if (req.task !== undefined) this.#track(req.task);
      if (this.#spec.snapshots) sent = { ...req, snap: true };
    } else if (req.t === "wait" && this.#spec.snapshots) sent = { ...req, snap: true };
    return inc.conn.transport.request(sent, opts).then(
      (res) => {
        if (res.t === "value" && res.snap !== undefined) {
          this.#last = res.snap;
          delete res.snap;
        }
        if (req.t === "wait" && res.t !== "pending") this.#tasks.delete(req.task);
        else if (req.t === "call" && req.task !== undefined && res.t === "value") this.#tasks.delete(req.task);
        return res;
      },
      (e) => this.#failed(inc, req, opts, e),
    );
  }

  async #failed(inc: Incarnation, req: Request, opts: RequestOptions | undefined, e: unknown): Promise<Response> {
    if (inc !== this.#current || !this.#spec.isGone || (e as { code?: string })?.code !== "UNAVAILABLE") throw e;
    if (!(await this.#spec.isGone(inc))) throw e;
    this.crashed(inc, (e as Error).message);
    // The request never reached the server (no connection): it ran nowhere, so it may go to the new place.
    if (/is not reachable: (connection failed|no connection within)/.test((e as Error).message)) return this.request(req, opts);
    throw e;
  }

  #track(task: string): void {
    if (this.#tasks.size >= MAX_TRACKED_TASKS) {
      const oldest = this.#tasks.keys().next().value;
      if (oldest !== undefined) this.#tasks.delete(oldest);
    }
    this.#tasks.set(task, this.#gen);
  }

  /** The server of `inc` died (`why`): restart within the budget, or die. Idempotent per incarnation. */
  crashed(inc: Incarnation, why: string): void {
    if (inc !== this.#current || this.#dead) return;
    this.#current = undefined;
    this.#gen++;
    this.#up = Promise.withResolvers<void>();
    this.#up.promise.catch(() => {});
    for (const w of this.#waiters.splice(0)) w();
    void inc.stop?.().catch(() => {});
    this.#spec.events?.crashed(why);
    this.#restart(why);
  }

  #restart(why: string): void {
    const { maxRestarts, withinMs = DEFAULT_RESTART_WITHIN_MS, backoffMs = DEFAULT_RESTART_BACKOFF_MS } = this.#spec.policy;
    const now = performance.now();
    this.#recent = this.#recent.filter((t) => now - t < withinMs);
    const what = `${this.#spec.cls} ${this.#spec.oid}`;
    if (this.#recent.length >= maxRestarts) {
      const msg = `${what} is not restarted: its restart budget is spent (${maxRestarts} restart${maxRestarts === 1 ? "" : "s"} within ${withinMs} ms); last failure: ${why}`;
      logChildEvent("agent.dead", msg, this.#label(), this.#current?.pid, { reason: why });
      this.#spec.events?.gaveUp(msg);
      this.#die(new AgentServerNotAliveError(msg));
      return;
    }
    const pause = Math.min(MAX_BACKOFF_MS, backoffMs * 2 ** this.#recent.length);
    this.#recent.push(now);
    logChildEvent("agent.restarting", `restarting ${what} (restart ${this.#info.restarts + 1}, in ${Math.round(pause)} ms${this.#last ? ", from its last snapshot" : ", from its constructor arguments"}): ${why}`, this.#label(), undefined, { reason: why });
    const go = () =>
      this.#spec.respawn(this.#last, why).then(
        (inc) => {
          if (this.#dead) return void inc.stop?.().catch(() => {});
          this.#info = { restarts: this.#info.restarts + 1, lastRestartReason: why, lastRestartAt: Date.now() };
          logChildEvent("agent.restarted", `restarted ${what} on ${inc.conn.where.host}${inc.conn.where.port === undefined ? "" : `:${inc.conn.where.port}`}${inc.pid === undefined ? "" : ` (pid ${inc.pid})`}`, this.#label(), inc.pid, { restarts: this.#info.restarts }, "info");
          this.#attach(inc);
          this.#spec.events?.restarted(this.info());
        },
        (e) => {
          if (!this.#dead) this.#restart(`restart failed: ${(e as Error)?.message ?? e} (after: ${why})`);
        },
      );
    if (pause > 0) setTimeout(go, pause);
    else void go();
  }

  #label(): { cls: string; oid: string } {
    return { cls: this.#spec.cls, oid: this.#spec.oid };
  }

  #attach(inc: Incarnation): void {
    this.#current = inc;
    this.onMove?.(inc);
    this.#up.resolve();
    // Its server died between creating the object and now (its exit was not ours to act on yet).
    if (inc.alive && !inc.alive()) this.crashed(inc, "its server exited right after the object was created");
  }

  #die(err: Error): void {
    if (this.#dead) return;
    this.#dead = err;
    this.#up.reject(err);
    for (const w of this.#waiters.splice(0)) w();
    this.onBroken?.(err);
  }

  /** Stop supervising and release the incarnation (its child process); later requests fail UNAVAILABLE. */
  async stop(why = `${this.#spec.cls} ${this.#spec.oid} was stopped`): Promise<void> {
    const inc = this.#current;
    this.#current = undefined;
    this.#die(new AgentServerNotAliveError(why));
    await inc?.stop?.();
  }

  abort(reason: Error): void {
    this.#die(reason);
  }
}

/** The connection of a supervised proxy: its address follows the object from place to place. */
export class SupervisedConnection extends ServerConnection {
  readonly supervisor: Supervisor;

  constructor(sup: Supervisor, tentative: ServerConnection["address"]) {
    super(sup, tentative);
    this.supervisor = sup;
    sup.onMove = (inc) => this.moveTo(inc.conn.address);
  }

  /** While the object is being (re-)created, references naming it wait for its new place. */
  override get addressPending(): Promise<void> | undefined {
    return this.supervisor.current || this.supervisor.dead ? undefined : this.supervisor.up;
  }

  override get broken(): Error | undefined {
    return this.supervisor.dead;
  }
}

/**
 * Restarts of a supervised proxy (`toDist({ restart })`, or placed by a `ServerGroup` with
 * `restart`): how many, why the last, where it lives now; undefined for other proxies.
 *
 * @example
 * const a = new Counter().toDist({ restart: { maxRestarts: 3 } });
 * restartInfo(a); // { restarts: 0, where: "child:…", pid: 4242 }
 */
export function restartInfo(remote: unknown): RestartInfo | undefined {
  const conn = remoteState(remote)?.conn;
  return conn instanceof SupervisedConnection ? conn.supervisor.info() : undefined;
}

/** Create `cls` under `oid` on `conn`, restoring `state` if given; failures are AgentCreationError. */
export async function createAt(conn: ServerConnection, oid: string, cls: string, args: Uint8Array, state: Uint8Array | undefined): Promise<void> {
  if (state === undefined) return conn.create(oid, cls, args);
  const res = await conn.send({ t: "create", oid, cls, args, state });
  if (res.t === "error") {
    const e = errorFromWire(res.error, conn.where);
    if (e.code === "UNAVAILABLE") throw e;
    throw new AgentCreationError(e.message, { ...conn.where, code: res.error.code, cause: e });
  }
}
