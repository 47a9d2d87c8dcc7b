/**
 * This process's callbacks, as data: what it exported (its own `callback()`s and the stubs it
 * relays), to whom (counted handouts per link), the stubs it holds of other processes'
 * callbacks, and the inbound links servers call back over. A leaf: encoding (ref-encode.ts),
 * stubs (callback-stubs.ts) and answering (callback-answer.ts) all read this one table.
 *
 * Security: an id is 128 random bits, handed only to the link it was sent over; a call from a
 * link the callback was never handed to is answered NOT_FOUND exactly like a released one.
 */
import { CodecError } from "../core/errors.ts";
import type { CallbackGrant, CallbackRoute } from "../core/transport.ts";

export type { CallbackGrant, CallbackRoute };

/** On a `callback()` handle: its record. */
export const HANDLE = Symbol("actorscope.callback");
/** On a stub of another process's callback: its record. */
export const STUB = Symbol("actorscope.callbackStub");

/** A `callback()` made in this process. */
export interface OwnCallback {
  readonly id: string;
  readonly target: object;
  /** Methods a server may call (objects); undefined for a function. */
  readonly methods: ReadonlySet<string> | undefined;
  released: boolean;
}

/** A stub's record: what it calls and how. */
export interface StubRecord {
  readonly id: string;
  readonly route: CallbackRoute;
  readonly methods: readonly string[] | undefined;
  /** Times this process received it (sent back with the drop, so the owner's count is exact). */
  received: number;
  /** Set once it can no longer be called (disposed, or its link closed). */
  dead: Error | undefined;
}

interface Exported {
  /** The function or object called (a stub when this process relays another's callback). */
  readonly target: object;
  readonly methods: ReadonlySet<string> | undefined;
  readonly own: OwnCallback | undefined;
  /** Handouts not yet dropped, per link key. */
  readonly grants: Map<string, number>;
}

/** What a server's callback link does (server side of a caller's Callbacks stream). */
export interface InboundLink {
  call(req: { t: "cbcall"; id: string; m?: string; args: Uint8Array } | { t: "cbdrop"; id: string; n: number }): Promise<import("../core/protocol.ts").Response>;
}

/** The callback table of this process. */
export class CallbackTable {
  readonly exported = new Map<string, Exported>();
  /** Stubs held here, by id (weakly: a stub nobody holds is dropped and reported). */
  readonly stubs = new Map<string, WeakRef<object>>();
  /** Inbound links by id, and those that closed (so stubs over them fail at once). */
  readonly links = new Map<string, InboundLink>();
  readonly closedLinks = new Set<string>();
  /** Stubs that call back over each inbound link (failed together when it closes). */
  readonly linkStubs = new Map<string, Set<StubRecord>>();
  readonly #linkWaiters = new Map<string, Array<() => void>>();

  /** Record a handout of `v` (a handle or a stub) over the link `via` (a transport); its tag. */
  exportTag(v: object, via: { callbackRoute?(): CallbackGrant | undefined } | undefined): { $as: "cb"; [k: string]: unknown } | undefined {
    const own = (v as Record<symbol, OwnCallback | undefined>)[HANDLE];
    const stub = own ? undefined : (v as Record<symbol, StubRecord | undefined>)[STUB];
    if (!own && !stub) return undefined;
    const id = own ? own.id : stub!.id;
    // Asked only now: a route may open a stream (gRPC), which values without callbacks never need.
    const grant = via?.callbackRoute?.();
    if (!grant) {
      // A stub going back where it came from needs no route: its owner finds the original.
      if (stub) return { $as: "cb", id, home: true };
      throw new CodecError(
        "a callback travels only as an argument of a remote call or constructor, from the caller to the server " +
          "(not in a result, and not to a constructor of an object a ServerGroup places: pass it to a method once placed)",
      );
    }
    if (own?.released) throw new CodecError("this callback was released and cannot be sent again");
    if (stub?.dead) throw stub.dead;
    let e = this.exported.get(id);
    if (!e) {
      e = own
        ? { target: own.target, methods: own.methods, own, grants: new Map() }
        : { target: v, methods: stub!.methods ? new Set(stub!.methods) : undefined, own: undefined, grants: new Map() };
      this.exported.set(id, e);
    }
    e.grants.set(grant.key, (e.grants.get(grant.key) ?? 0) + 1);
    const tag: { $as: "cb"; [k: string]: unknown } = { $as: "cb", id, ...grant.route };
    if (e.methods) tag.m = [...e.methods];
    return tag;
  }

  /** The callable this process exported as `id` to `key`, or undefined (never handed there, released, dropped). */
  target(id: string, key: string): { target: object; methods: ReadonlySet<string> | undefined } | undefined {
    const e = this.exported.get(id);
    if (!e || (key !== "local" && !e.grants.has(key))) return undefined;
    return e;
  }

  /** The original of a callback this process exported (for a tag coming home), if it did. */
  local(id: string): object | undefined {
    const e = this.exported.get(id);
    return e ? (e.own ? e.own.target : e.target) : undefined;
  }

  /** The holder at `key` dropped `n` handouts of `id`. */
  drop(id: string, key: string, n: number): void {
    const e = this.exported.get(id);
    const had = e?.grants.get(key);
    if (!e || had === undefined) return;
    if (had - n > 0) e.grants.set(key, had - n);
    else e.grants.delete(key);
    if (e.grants.size === 0) this.exported.delete(id);
  }

  /** The link `key` is gone: whatever was handed over it is dropped. */
  dropLink(key: string): void {
    for (const [id, e] of this.exported) {
      if (e.grants.delete(key) && e.grants.size === 0) this.exported.delete(id);
    }
  }

  /** The owner released `own`: forget it everywhere. */
  release(own: OwnCallback): void {
    own.released = true;
    this.exported.delete(own.id);
  }

  /** A server's inbound link `id` opened. False if that id is taken or was used before. */
  openLink(id: string, link: InboundLink): boolean {
    if (this.links.has(id) || this.closedLinks.has(id)) return false;
    this.links.set(id, link);
    for (const w of this.#linkWaiters.get(id) ?? []) w();
    this.#linkWaiters.delete(id);
    return true;
  }

  /** Inbound link `id` closed: its stubs fail with `why` from now on. */
  closeLink(id: string, why: Error): void {
    if (!this.links.delete(id)) return;
    this.closedLinks.add(id);
    // Remember closed ids for a while only (they are random: the set just makes failures fast).
    if (this.closedLinks.size > 10_000) for (const x of this.closedLinks) { this.closedLinks.delete(x); break; }
    for (const s of this.linkStubs.get(id) ?? []) s.dead ??= why;
    this.linkStubs.delete(id);
  }

  /** Resolves once inbound link `id` is open, or after `ms` (the caller then checks again). */
  whenLink(id: string, ms: number): Promise<void> {
    if (this.links.has(id) || this.closedLinks.has(id)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      const list = this.#linkWaiters.get(id) ?? [];
      list.push(() => {
        clearTimeout(t);
        resolve();
      });
      this.#linkWaiters.set(id, list);
    });
  }
}

/** This process's callback table. */
export const callbacks = new CallbackTable();

/** `release()` of a handle. */
export function releaseOwn(own: OwnCallback): void {
  callbacks.release(own);
}

/** How many callbacks this process exports now (its own and relayed). For tests and stats. */
export function exportedCallbacks(): number {
  return callbacks.exported.size;
}
