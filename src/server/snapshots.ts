/**
 * Supervision, server side: snapshots ride the answers a supervising client asked them on
 * (`snap` on `call` / `wait`), and a re-created object gets its last one back (`state` on
 * `create`). Only requests that ask, for objects whose class defines `snapshot()`, cost
 * anything: everything else passes through `answer` untouched.
 */
import { AgentServerError } from "../core/errors.ts";
import type { Request, Response } from "../core/protocol.ts";
import { classInfo } from "../core/registry.ts";

/** What the snapshot logic needs of the servicer holding the objects. */
export interface SnapshotHost {
  /** The object held under `oid`, if any. */
  object(oid: string): object | undefined;
  /** Forget the object under `oid` (a `restore` that threw leaves nothing half made). */
  remove(oid: string): void;
  encode(v: unknown): Uint8Array;
  decode(b: Uint8Array): unknown;
}

/**
 * Async tasks remembered at most: a client that never waits for its tasks cannot grow the
 * table past this (the oldest entries go first, and their results then carry no snapshot).
 */
const MAX_TRACKED_TASKS = 65_536;

type Snapshotting = { snapshot(): unknown; restore?(state: unknown): unknown };

/** Snapshots on answers, restores on creates. */
export class Snapshots {
  readonly #host: SnapshotHost;
  /** Async tasks of snapshotting objects whose result has not been delivered yet: task → oid. */
  readonly #tasks = new Map<string, string>();

  constructor(host: SnapshotHost) {
    this.#host = host;
  }

  /** Does this request involve snapshots at all? (Cheap check, so other requests skip `answer`.) */
  static wanted(req: Request): boolean {
    return req.t === "create" ? req.state !== undefined : (req.t === "call" || req.t === "wait") && req.snap === true;
  }

  /** `res`, with the snapshot the request asked for, or the restore a create carried done. */
  async answer(req: Request, res: Response): Promise<Response> {
    if (req.t === "create") return req.state === undefined || res.t !== "ok" ? res : this.#restore(req.oid, req.cls, req.state);
    if (req.t === "call") {
      if (res.t === "task") {
        if (typeof (this.#host.object(req.oid) as Partial<Snapshotting> | undefined)?.snapshot === "function") this.#track(res.task, req.oid);
        return res;
      }
      // Attribute reads change nothing: only methods carry a snapshot.
      const obj = this.#host.object(req.oid);
      if (res.t !== "value" || !obj || !classInfo(obj.constructor).methodSet.has(req.name)) return res;
      return this.#with(res, obj);
    }
    if (req.t === "wait" && res.t !== "pending") {
      const oid = this.#tasks.get(req.task);
      if (oid === undefined) return res;
      this.#tasks.delete(req.task);
      const obj = this.#host.object(oid);
      return res.t === "value" && obj ? this.#with(res, obj) : res;
    }
    return res;
  }

  /** Tasks remembered (for leak checks). */
  get tracked(): number {
    return this.#tasks.size;
  }

  #track(task: string, oid: string): void {
    if (this.#tasks.size >= MAX_TRACKED_TASKS) {
      const oldest = this.#tasks.keys().next().value;
      if (oldest !== undefined) this.#tasks.delete(oldest);
    }
    this.#tasks.set(task, oid);
  }

  /** The value answer with the object's snapshot; a snapshot() that throws or cannot travel leaves the answer bare (the client keeps its previous one). */
  #with(res: Extract<Response, { t: "value" }>, obj: object): Response {
    const snapshot = (obj as Partial<Snapshotting>).snapshot;
    if (typeof snapshot !== "function") return res;
    try {
      return { t: "value", value: res.value, snap: this.#host.encode(snapshot.call(obj)) };
    } catch (e) {
      console.warn(`actorscope: snapshot() of ${classInfo(obj.constructor).cls} failed, the previous snapshot stays: ${(e as Error)?.message ?? e}`);
      return res;
    }
  }

  async #restore(oid: string, cls: string, state: Uint8Array): Promise<Response> {
    const obj = this.#host.object(oid) as Partial<Snapshotting> | undefined;
    try {
      if (typeof obj?.restore !== "function") throw new AgentServerError(`class ${cls} has no restore(state) method to take its snapshot`, { code: "FAILED_PRECONDITION" });
      await obj.restore(this.#host.decode(state));
      return { t: "ok" };
    } catch (e) {
      this.#host.remove(oid);
      const code = e instanceof AgentServerError ? e.code : "INVALID_ARGUMENT";
      return { t: "error", error: { code, message: `restore of ${cls} ${oid} failed: ${(e as Error)?.message ?? String(e)}` } };
    }
  }
}
