/**
 * Stubs: what a `{ $as: "cb" }` tag decodes to in a process that does not own the callback.
 * A function stub is `(...args) => Promise`, an object stub a proxy of its methods; each call
 * goes back to the owner by the tag's route (callback-table.ts) and settles once: with the
 * return value, the owner's error (AgentCallError), or UNAVAILABLE / NOT_FOUND at once when
 * the owner or its link is gone. A stub dropped (`[Symbol.dispose]`) or garbage collected tells
 * the owner, which then forgets the handouts.
 */
import { AgentServerNotAliveError, CodecError, NotFoundError, errorFromWire } from "../core/errors.ts";
import { isId } from "../core/ids.ts";
import type { CallbackCallRequest, CallbackDropRequest, Response } from "../core/protocol.ts";
import type { Address } from "../core/transport.ts";
import { STUB, callbacks, type CallbackRoute, type StubRecord } from "./callback-table.ts";
import { connectionFor } from "./connections.ts";
import { encodeArgsWhenReady } from "./ref-encode.ts";
import { runtime } from "./runtime.ts";
import type { Frame } from "../core/split-frame.ts";

/** How long a stub waits for its caller's callback stream to open (the call carrying it may arrive first). */
const LINK_OPEN_WAIT_MS = 5_000;
const WHERE = { host: "callback", port: undefined };

const finalizer = new FinalizationRegistry<StubRecord>((rec) => {
  const live = callbacks.stubs.get(rec.id);
  if (live && live.deref() === undefined) callbacks.stubs.delete(rec.id);
  if (!rec.dead) void send(rec, { t: "cbdrop", id: rec.id, n: rec.received }).catch(() => {});
});

/**
 * Decode a callback tag: the original when this process owns it, the stub it already holds,
 * or a new stub. `decode` reads the values the owner answers.
 */
export function decodeCallback(tag: Record<string, unknown>, decode: (b: Frame) => unknown): unknown {
  const id = tag.id;
  if (!isId(id)) throw new CodecError("bad callback reference");
  const local = callbacks.local(id);
  if (local) return local;
  if (tag.home === true) throw new CodecError("a callback stub can only be sent back to the process it came from");
  const held = callbacks.stubs.get(id)?.deref() as Record<symbol, StubRecord> | undefined;
  if (held && !held[STUB]!.dead) {
    held[STUB]!.received++;
    return held;
  }
  const rec: StubRecord = { id, route: routeOf(tag), methods: methodList(tag.m), received: 1, dead: undefined };
  const stub = rec.methods ? objectStub(rec, decode) : functionStub(rec, decode);
  callbacks.stubs.set(id, new WeakRef(stub));
  finalizer.register(stub, rec, rec);
  if ("via" in rec.route) {
    const v = rec.route.via;
    if (callbacks.closedLinks.has(v)) rec.dead = gone();
    else {
      const set = callbacks.linkStubs.get(v) ?? new Set();
      set.add(rec);
      callbacks.linkStubs.set(v, set);
    }
  }
  return stub;
}

function functionStub(rec: StubRecord, decode: (b: Frame) => unknown): object {
  const f = (...args: unknown[]) => invoke(rec, undefined, args, decode);
  mark(f, rec);
  return f;
}

function objectStub(rec: StubRecord, decode: (b: Frame) => unknown): object {
  const methods = new Set(rec.methods);
  const target: Record<string, unknown> = {};
  for (const m of methods) target[m] = (...args: unknown[]) => invoke(rec, m, args, decode);
  mark(target, rec);
  // Not a thenable, and nothing but the methods the owner exposed.
  Object.freeze(target);
  return target;
}

function mark(stub: object, rec: StubRecord): void {
  Object.defineProperty(stub, STUB, { value: rec });
  Object.defineProperty(stub, Symbol.dispose, {
    value: () => {
      if (rec.dead) return;
      rec.dead = new NotFoundError("this callback stub was disposed", WHERE);
      finalizer.unregister(rec);
      if (callbacks.stubs.get(rec.id)?.deref() === stub) callbacks.stubs.delete(rec.id);
      void send(rec, { t: "cbdrop", id: rec.id, n: rec.received }).catch(() => {});
    },
  });
}

async function invoke(rec: StubRecord, m: string | undefined, args: unknown[], decode: (b: Frame) => unknown): Promise<unknown> {
  if (rec.dead) throw rec.dead;
  const bytes = await encodeArgsWhenReady(args, "via" in rec.route ? "net" : "ipc");
  const req: CallbackCallRequest = m === undefined ? { t: "cbcall", id: rec.id, args: bytes } : { t: "cbcall", id: rec.id, m, args: bytes };
  const res = await send(rec, req);
  if (res.t === "value") return decode(res.value);
  if (res.t === "error") throw errorFromWire(res.error, WHERE);
  throw new CodecError(`unexpected answer ${res.t} to a callback`);
}

/** Send a callback request to the stub's owner by its route. */
async function send(rec: StubRecord, req: CallbackCallRequest | CallbackDropRequest): Promise<Response> {
  const r = rec.route;
  if ("via" in r) {
    // An isolated agent's child got the reference through its server (the parent), whose
    // inbound link it is: the parent forwards the call down that link.
    const parent = runtime.parent;
    if (parent && !callbacks.links.has(r.via) && !callbacks.closedLinks.has(r.via)) return parent.callParent({ ...req, via: r.via });
    return overLink(r.via, req, rec);
  }
  if ("at" in r) return connectionFor(r.at).send(req);
  const parent = runtime.parent;
  if (!parent) throw new AgentServerNotAliveError("this callback's owner cannot be reached from this process", WHERE);
  return parent.callParent(req);
}

/** Send over this process's inbound link `via`, waiting a moment for it to open (the call carrying the reference may come first). */
async function overLink(via: string, req: CallbackCallRequest | CallbackDropRequest, rec?: StubRecord): Promise<Response> {
  if (!callbacks.links.has(via)) await callbacks.whenLink(via, LINK_OPEN_WAIT_MS);
  const link = callbacks.links.get(via);
  if (!link) {
    const e = gone();
    if (rec) rec.dead ??= e;
    throw e;
  }
  return link.call(req);
}

/**
 * A child's callback request naming `via`: forward it down this process's inbound link of that
 * id (the child is an isolated agent of this server). Never rejects.
 */
export async function forwardToLink(req: CallbackCallRequest | CallbackDropRequest): Promise<Response> {
  const via = req.via;
  if (!isId(via)) return { t: "error", error: { code: "INVALID_ARGUMENT", message: "bad callback link" } };
  const { via: _v, ...rest } = req;
  try {
    return await overLink(via, rest as CallbackCallRequest | CallbackDropRequest);
  } catch (e) {
    return { t: "error", error: { code: "UNAVAILABLE", message: (e as Error).message } };
  }
}

function gone(): Error {
  return new AgentServerNotAliveError("the caller that handed out this callback is gone (its connection closed)", WHERE);
}

function routeOf(tag: Record<string, unknown>): CallbackRoute {
  if (tag.via !== undefined) {
    if (!isId(tag.via)) throw new CodecError("bad callback link");
    return { via: tag.via };
  }
  if (tag.at !== undefined) {
    const a = tag.at as Record<string, unknown> | null;
    if (a === null || typeof a !== "object" || typeof a.child !== "string" || a.child.length > 64) throw new CodecError("bad callback address");
    return { at: { host: "localhost", child: a.child } satisfies Address };
  }
  return {};
}

function methodList(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > 1000 || !v.every((x) => typeof x === "string" && x.length <= 256)) throw new CodecError("bad callback method list");
  return v as string[];
}
