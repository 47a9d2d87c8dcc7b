/**
 * Isolation (`as-server start --isolate`, `RpcAgentServerLauncher({ isolate: true })`): every
 * agent an independent server creates lives in a child server of its own, spawned by this
 * server and supervised exactly like child mode with `toDist({ restart })` — the server is the
 * client of its children (client/supervised-child.ts). An agent's `process.exit`, uncaught
 * exception or `kill -9` ends its child only; the server and its other agents go on, and the
 * agent is re-created with the same oid (from its last snapshot when its class defines
 * `snapshot()`/`restore()`), within the restart budget.
 *
 * The servicer stays the one core: it hands the requests naming an isolated agent to `route`,
 * which forwards them to the agent's supervisor. Async results are settled into the server's
 * own result pool (a drain waits on the child), so waits, references to futures, pipelining
 * and `release` work unchanged; a task lost with a crashed child settles UNAVAILABLE.
 */
import type { TaskInfo } from "./observer.ts";
import type { ChildServerOptions } from "../client/child-server.ts";
import { superviseChild, type SupervisedChild } from "../client/supervised-child.ts";
import type { RestartInfo, RestartPolicy } from "../client/supervisor.ts";
import { decodeValue } from "../core/codec-decode.ts";
import { AgentServerError, NotFoundError, ResourceExhaustedError, errorFromWire, errorToWire } from "../core/errors.ts";
import type { AgentInfo, CallRequest, Request, Response } from "../core/protocol.ts";
import { classInfo, entryOf, type AnyClass, type ClassSurface } from "../core/registry.ts";
import type { Outcome } from "./pool/types.ts";
import { frameBytes, type Frame } from "../core/split-frame.ts";

/** Restart policy of isolated agents when the launcher is given none. */
export const DEFAULT_ISOLATE_RESTART: RestartPolicy = { maxRestarts: 3 };

/** Longest single wait a drain holds on a child before asking again, ms. */
const DRAIN_WAIT_MS = 5_000;

/** What a server that isolates its agents is told of them (logs, metrics). */
export interface IsolationEvents {
  crashed(cls: string, oid: string, why: string): void;
  restarted(cls: string, oid: string, info: RestartInfo): void;
  gaveUp(cls: string, oid: string, why: string): void;
}

/** How to isolate (the launcher's part). */
export interface IsolateOptions {
  /** Restart budget of each agent. Default `DEFAULT_ISOLATE_RESTART`. */
  restart?: RestartPolicy;
  /** Options of each agent's child server (limits, capacity, model configs), read at each creation. */
  child(): ChildServerOptions;
  events?: IsolationEvents;
}

/** What isolation needs of the servicer it serves in. */
export interface IsolationHost {
  serverId: string;
  resolveClass(name: string): AnyClass | undefined;
  maxAgents?: number | undefined;
  /** Register `task` in the server's pool, so waits for it park until `settle`. */
  prepare(task: string): Promise<void>;
  /** The outcome of `task`, into the server's pool. */
  settle(task: string, outcome: Outcome, call: TaskInfo): void;
}

interface Isolated {
  oid: string;
  cls: string;
  surface: ClassSurface;
  sup: SupervisedChild;
}

/** The isolated agents of one server, and the requests that go to them. */
export class Isolation {
  readonly #opts: IsolateOptions;
  readonly #host: IsolationHost;
  readonly #agents = new Map<string, Isolated>();
  /** Async tasks being drained and streams open, by id → their agent (where `cancel`/`next` go). */
  readonly #tasks = new Map<string, Isolated>();

  constructor(opts: IsolateOptions, host: IsolationHost) {
    this.#opts = opts;
    this.#host = host;
  }

  /** Agents held. */
  get size(): number {
    return this.#agents.size;
  }

  /** Class of the isolated agent `oid`, if it is one. */
  cls(oid: string): string | undefined {
    return this.#agents.get(oid)?.cls;
  }

  /** Restart figures of `oid`, if it is an isolated agent. */
  restartInfo(oid: string): RestartInfo | undefined {
    return this.#agents.get(oid)?.sup.conn.supervisor.info();
  }

  /**
   * The answer to `req` when isolation handles it (every `create`; requests naming
   * an isolated agent or one of its tasks and streams), else undefined. Rejections carry the
   * error code (UNAVAILABLE while a crashed agent is past its budget, or in flight at a crash).
   */
  route(req: Request, signal?: AbortSignal): Promise<Response> | undefined {
    switch (req.t) {
      case "create":
        return this.#create(req.oid, req.cls, req.args, req.state);
      case "call": {
        const a = this.#agents.get(req.oid);
        return a && this.#call(a, req, signal);
      }
      case "describe":
      case "memory": {
        const a = this.#agents.get(req.oid);
        return a && this.#send(a, req, signal);
      }
      case "delete": {
        const a = this.#agents.get(req.oid);
        return a && this.#delete(a).then(() => ({ t: "ok" }));
      }
      case "cancel": {
        const a = this.#tasks.get(req.task);
        return a && this.#send(a, req);
      }
      case "next": {
        const a = this.#tasks.get(req.stream);
        return a && this.#next(a, req, signal);
      }
      default:
        return undefined;
    }
  }

  /** Stop every isolated agent and its child. */
  async deleteAll(): Promise<void> {
    await Promise.all([...this.#agents.values()].map((a) => this.#delete(a)));
  }

  /** On server close: the children go with it. */
  close(): Promise<void> {
    return this.deleteAll();
  }

  #send(a: Isolated, req: Request, signal?: AbortSignal): Promise<Response> {
    return a.sup.conn.transport.request(req, signal ? { signal } : undefined);
  }

  async #create(oid: string, cls: string, args: Uint8Array, state: Uint8Array | undefined): Promise<Response> {
    const C = this.#host.resolveClass(cls);
    if (!C) throw new NotFoundError(`class ${cls} is not registered on server ${this.#host.serverId}`);
    if (this.#agents.has(oid)) throw new AgentServerError(`object ${oid} already exists`, { code: "ALREADY_EXISTS" });
    const max = this.#host.maxAgents;
    if (max !== undefined && this.#agents.size >= max) throw new ResourceExhaustedError(`server ${this.#host.serverId} holds its maximum of ${max} objects (maxAgents)`);
    const entry = entryOf(C as unknown as Function) ?? { cls: C, name: cls };
    // A class with no module file is built into this program (DialogAgent): the child has it.
    const child = { ...this.#opts.child(), modules: entry.module ? [entry.module] : [], classes: entry.module ? [entry.name] : [] };
    const ev = this.#opts.events;
    const sup = superviseChild(entry, oid, async () => args, child, this.#opts.restart ?? DEFAULT_ISOLATE_RESTART, {
      ...(state === undefined ? {} : { state }),
      ...(ev && {
        events: {
          crashed: (why) => ev.crashed(cls, oid, why),
          restarted: (info) => ev.restarted(cls, oid, info),
          gaveUp: (why) => ev.gaveUp(cls, oid, why),
        },
      }),
    });
    const a: Isolated = { oid, cls, surface: classInfo(C as unknown as Function), sup };
    // Held from now: calls made while the child starts wait for it (the supervisor queues them).
    this.#agents.set(oid, a);
    try {
      await sup.ready;
    } catch (e) {
      this.#agents.delete(oid);
      await sup.owner.stop();
      throw e;
    }
    return { t: "ok" };
  }

  async #call(a: Isolated, req: CallRequest, signal?: AbortSignal): Promise<Response> {
    // No hold on the child: this server's pool must learn every task, for references to it.
    const { holdMs: _hold, ...forwarded } = req;
    const res = await this.#send(a, forwarded, signal);
    const isAsync = a.surface.asyncSet.has(req.name);
    if (res.t === "error" && req.task !== undefined && (isAsync || a.surface.streamSet.has(req.name))) {
      // Thrown, so the servicer remembers the refusal for waits and references of this task.
      // (A momentary refusal stays one: errorFromWire keeps RESOURCE_EXHAUSTED's retryAfterMs.)
      throw errorFromWire(res.error, a.sup.conn.where);
    }
    if (res.t !== "task") {
      // A supervising client of this server (group mode) asked for the snapshot: the agent's supervisor has it.
      const snap = req.snap ? a.sup.conn.supervisor.lastSnapshot : undefined;
      return snap && res.t === "value" ? { ...res, snap } : res;
    }
    this.#tasks.set(res.task, a);
    if (isAsync) {
      await this.#host.prepare(res.task);
      void this.#drain(a, res.task, { cls: a.cls, method: req.name, since: performance.now() });
    }
    return res;
  }

  /** Wait for `task` on the agent's child and settle its outcome here; a crash settles it UNAVAILABLE. */
  async #drain(a: Isolated, task: string, call: TaskInfo): Promise<void> {
    let o: Outcome | undefined;
    try {
      while (o === undefined) {
        const r = await this.#send(a, { t: "wait", task, timeoutMs: DRAIN_WAIT_MS });
        if (r.t === "value") o = { ok: true, value: frameBytes(r.value) };
        else if (r.t === "error") o = { ok: false, error: r.error };
        else if (r.t !== "pending") o = { ok: false, error: { code: "INTERNAL", message: `child server of ${a.cls} ${a.oid} answered a wait with ${r.t}` } };
      }
    } catch (e) {
      o = { ok: false, error: errorToWire(e) };
    }
    this.#tasks.delete(task);
    this.#host.settle(task, o, call);
  }

  async #next(a: Isolated, req: Extract<Request, { t: "next" }>, signal?: AbortSignal): Promise<Response> {
    try {
      const res = await this.#send(a, req, signal);
      if (res.t === "error" || (res.t === "value" && lastBatch(res.value))) this.#tasks.delete(req.stream);
      return res;
    } catch (e) {
      this.#tasks.delete(req.stream);
      throw e;
    }
  }

  async #delete(a: Isolated): Promise<void> {
    this.#agents.delete(a.oid);
    for (const [t, x] of this.#tasks) if (x === a) this.#tasks.delete(t);
    await a.sup.owner.stop();
  }

  /** The `list` entries of the isolated agents: each child's own entry (name, prompt, model), with its restarts. */
  async list(): Promise<AgentInfo[]> {
    const list = await Promise.all(
      [...this.#agents.values()].map(async (a): Promise<AgentInfo> => {
        let e: AgentInfo = { id: a.oid, cls: a.cls };
        try {
          const r = await a.sup.conn.transport.request({ t: "list" }, { signal: AbortSignal.timeout(2000) });
          const mine = r.t === "value" ? (decodeValue(r.value) as AgentInfo[]).find((x) => x.id === a.oid) : undefined;
          if (mine) e = mine;
        } catch {
          // Restarting, or dead for good: its id, class and restarts are still worth showing.
        }
        const info = a.sup.conn.supervisor.info();
        e.restarts = info.restarts;
        if (info.lastRestartReason !== undefined) e.lastRestartReason = info.lastRestartReason;
        if (info.dead !== undefined) e.dead = info.dead;
        return e;
      }),
    );
    return list;
  }
}

/** Is this `next` answer the stream's last batch? (Its entry can go.) Items holding references cannot be decoded here: then not known. */
function lastBatch(frame: Frame): boolean {
  try {
    return (decodeValue(frame) as { end?: true } | null)?.end === true;
  } catch {
    return false;
  }
}
