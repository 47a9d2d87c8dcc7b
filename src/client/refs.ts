/**
 * References: how proxies, pending AsyncResults and server-held objects travel inside values.
 * A proxy becomes `{ $as: "ref", oid, cls, m, a, at }`, a pending task result
 * `{ $as: "fut", task, at }`, where `at` is the address of the server holding it. Decoding
 * makes a working proxy or AsyncResult again — or, on the server that holds the object or
 * task, the local object or a local wait, so identity survives a round trip.
 */
import { DEFAULTS } from "../core/defaults.ts";
import { AsyncResult, FRESH_GRACE_MS, UNKNOWN_ACCEPTANCE } from "./async-result.ts";
import type { ServerConnection } from "./connection.ts";
import { connectionFor } from "./connections.ts";
import { decodeValue, encodeValue, type RefCodec, type WireRefTag } from "../core/codec.ts";
import { CodecError } from "../core/errors.ts";
import { DEFAULT_LIMITS, type Limits } from "../core/limits.ts";
import { isId, isObjectId } from "../core/ids.ts";
import { makeRemote, remoteState } from "./proxy.ts";
import { IS_DISTRIBUTABLE } from "../core/registry.ts";
import { DEFAULT_RETRY } from "./retry.ts";
import type { Address } from "../core/transport.ts";

/**
 * Thrown while encoding when a value cannot be sent yet: a still-pending result of a *sync*
 * call (it has no server-side reference), or a task its server has not accepted yet (a
 * reference must never reach a server before the task it names exists). The caller awaits
 * `promise` and encodes again.
 */
export class NeedsAwait extends Error {
  constructor(readonly promise: Promise<unknown>) {
    super("a value is not ready to be sent");
  }
}

/**
 * Thrown while encoding a value for a gRPC server when it refers to a child server that has
 * no network address yet: the caller starts that child's loopback listener and encodes again.
 */
export class NeedsListener extends Error {
  constructor(readonly child: string) {
    super(`child server ${child} needs a listener`);
  }
}

/** Network addresses of child servers' loopback listeners, by child id. */
const childListeners = new Map<string, Address>();

/** Record the listener address of a child server. */
export function setChildListener(child: string, a: Address): void {
  childListeners.set(child, a);
}

/** Who is sent to: `ipc` (a child, or the parent) understands child addresses; `net` needs ports. */
export type Destination = "ipc" | "net";

/** Address to put in a reference sent to `dest`. */
function addressFor(a: Address, dest: Destination): Address {
  if (dest === "ipc" || !a.child || a.port !== undefined) return a;
  const net = childListeners.get(a.child);
  if (!net) throw new NeedsListener(a.child);
  return net;
}

/** What a server process plugs in so references to its own objects and tasks resolve locally. */
export interface LocalHooks {
  /** Is `a` this process's own server? */
  isSelf(a: Address): boolean;
  /** Register a local object that is being sent by value and return its reference tag. */
  exportObject(obj: object): WireRefTag;
  /** The local object with this id, if held here. */
  object(oid: string): object | undefined;
  /** A local wait for a task of this server's pool. */
  task(task: string): AsyncResult;
  /** How other processes reach a child address we hand out (issue: routing via parent). */
  publicAddress?(a: Address): Address;
}

const servers = new Set<LocalHooks>();
let limits: Limits = DEFAULT_LIMITS;

/** Register a server running in this process (its objects can then be sent by value). */
export function registerLocalServer(h: LocalHooks): void {
  servers.add(h);
}

/** Forget a server of this process (it shut down). */
export function unregisterLocalServer(h: LocalHooks): void {
  servers.delete(h);
}

/** Does this process serve (a launcher's or a child's server runs here)? */
export function hostsLocalServer(): boolean {
  return servers.size > 0;
}

/** Set the limits used to encode and decode values in this process. */
export function setProcessLimits(l: Limits): void {
  limits = l;
}

/**
 * Change this process's limits (e.g. `maxMessageBytes` for arguments over 32 MiB). Applies to
 * values encoded and decoded from now on and to gRPC connections opened from now on; servers
 * take their own limits from their launcher options.
 *
 * @example
 * configureLimits({ maxMessageBytes: 64 * 1024 * 1024 });
 */
export function configureLimits(l: Partial<Limits>): Limits {
  for (const [k, v] of Object.entries(l)) {
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new RangeError(`${k} must be a positive integer`);
  }
  limits = { ...limits, ...l };
  return limits;
}

/** The limits in force in this process. */
export function processLimits(): Limits {
  return limits;
}

function addressOut(a: Address): Address {
  for (const s of servers) if (s.publicAddress) return s.publicAddress(a);
  return a;
}

/**
 * A RefCodec. `self` is given when a server decodes what it was sent: references to its own
 * objects and tasks then resolve locally. Clients decode with no `self`, so they always get
 * proxies, even for a server that runs in the same process.
 */
export function makeRefCodec(self?: LocalHooks, dest: Destination = "ipc"): RefCodec {
  return {
    encode(v) {
      if (v instanceof AsyncResult) {
        const s = v.settled;
        if (s?.ok) return { value: s.value };
        const src = v.taskSource;
        if (src) {
          // A call made while its object is being placed: its server, not chosen yet, cannot be named.
          const choosing = src.conn.addressPending;
          if (choosing) throw new NeedsAwait(choosing);
          const tag: WireRefTag = { $as: "fut", task: src.task, at: addressFor(addressOut(src.conn.address), dest) };
          // The receiver reads the result too: ours must not free it for them.
          v.markShared();
          // Not accepted yet: the call may still be on its way to its server. The receiver
          // waits for the task to appear there instead of taking its absence as NOT_FOUND.
          if (!v.isAccepted) tag.fresh = true;
          return { tag };
        }
        if (s && !s.ok) throw s.error;
        throw new NeedsAwait(v.pending ?? v.result());
      }
      if (v instanceof Promise) {
        // A plain promise (e.g. a local agent's reply) is sent as its value once it settles.
        const s = settledPromises.get(v);
        if (!s) throw new NeedsAwait(v);
        if (!s.ok) throw s.error;
        return { value: s.value };
      }
      const st = remoteState(v);
      if (st) {
        // An object must exist on its server before a reference to it reaches another one.
        if (!st.isReady) throw new NeedsAwait(st.ready);
        const tag: WireRefTag = { $as: "ref", oid: st.oid, at: addressFor(addressOut(st.conn.address), dest) };
        if (st.info) {
          tag.cls = st.info.cls;
          tag.m = st.info.methods;
          tag.a = st.info.async;
        }
        return { tag };
      }
      if ((v as Record<symbol, unknown>)[IS_DISTRIBUTABLE]) {
        // A server-held object sent by value travels as a proxy to it.
        const home = self ?? [...servers].find((s) => s.object((v as { oid: string }).oid) === v) ?? first(servers);
        if (home) {
          const tag = home.exportObject(v);
          return { tag: { ...tag, at: addressFor(tag.at as Address, dest) } };
        }
        throw new CodecError(`a local ${v.constructor.name} cannot be sent as a value; send x.toDist() instead`);
      }
      return undefined;
    },
    decode(tag) {
      const at = parseAddress(tag.at);
      if (tag.$as === "fut") {
        if (!isId(tag.task)) throw new CodecError("bad task reference");
        if (self?.isSelf(at)) return self.task(tag.task);
        const conn = connectionFor(at, { fromValue: true });
        const fresh = tag.fresh === true;
        return AsyncResult.fromTask({
          conn,
          task: tag.task,
          accepted: fresh ? UNKNOWN_ACCEPTANCE : Promise.resolve(),
          acceptedNow: !fresh,
          freshUntil: fresh ? performance.now() + FRESH_GRACE_MS : 0,
          decode: (b) => decodeFrom(b, conn),
          maxWaitMs: DEFAULTS.maxTimeoutSeconds * 1000,
          retry: DEFAULT_RETRY,
        });
      }
      if (!isObjectId(tag.oid)) throw new CodecError("bad object reference");
      if (self?.isSelf(at)) {
        const local = self.object(tag.oid);
        if (local) return local;
      }
      const methods = stringList(tag.m);
      const asyncs = stringList(tag.a);
      const conn = connectionFor(at, { fromValue: true });
      const info =
        methods && typeof tag.cls === "string"
          ? { cls: tag.cls, methods, async: asyncs ?? [], methodSet: new Set(methods), asyncSet: new Set(asyncs ?? []) }
          : undefined;
      return makeRemote({
        oid: tag.oid,
        conn,
        ready: Promise.resolve(),
        isReady: true,
        info,
        retry: DEFAULT_RETRY,
        maxWaitMs: DEFAULTS.maxTimeoutSeconds * 1000,
        host: conn.where.host,
        port: conn.where.port,
      });
    },
  };
}

function first<T>(s: Set<T>): T | undefined {
  for (const x of s) return x;
  return undefined;
}

/** The RefCodec of client code in this process (values sent to child servers, over IPC). */
export const clientRefs: RefCodec = makeRefCodec();
/** The RefCodec for values sent to gRPC servers: child addresses become listener addresses. */
export const netRefs: RefCodec = makeRefCodec(undefined, "net");

function stringList(v: unknown): string[] | undefined {
  if (!Array.isArray(v) || v.length > 10_000 || !v.every((x) => typeof x === "string")) return undefined;
  return v as string[];
}

function parseAddress(v: unknown): Address {
  if (v === null || typeof v !== "object") throw new CodecError("bad reference address");
  const a = v as Record<string, unknown>;
  if (typeof a.host !== "string") throw new CodecError("bad reference address");
  const out: Address = { host: a.host };
  if (a.port !== undefined) {
    if (typeof a.port !== "number" || !Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new CodecError("bad reference port");
    out.port = a.port;
  }
  if (a.child !== undefined) {
    if (typeof a.child !== "string" || a.child.length > 64) throw new CodecError("bad reference child id");
    out.child = a.child;
  }
  if (a.key !== undefined) {
    if (typeof a.key !== "string" || a.key.length > 128) throw new CodecError("bad reference key");
    out.key = a.key;
  }
  return out;
}

/** Encode a call's argument array with this process's references, for `dest`. */
export function encodeArgs(args: unknown[], dest: Destination = "ipc"): Uint8Array {
  return encodeValue(args, dest === "net" ? netRefs : clientRefs, limits);
}

/** Outcomes of plain promises awaited while encoding, so the next attempt can read them. */
const settledPromises = new WeakMap<Promise<unknown>, { ok: true; value: unknown } | { ok: false; error: unknown }>();

async function settle(p: Promise<unknown>): Promise<void> {
  try {
    settledPromises.set(p, { ok: true, value: await p });
  } catch (error) {
    settledPromises.set(p, { ok: false, error });
    throw error;
  }
}

/** Hook that starts a child server's loopback listener (installed by child-server / child run). */
let listenHook: ((child: string) => Promise<Address>) | undefined;

/** Install how this process asks a child server to listen on loopback. */
export function setListenHook(h: typeof listenHook): void {
  listenHook = h;
}

/** Make sure `child` has a loopback listener, and remember its address. */
export async function ensureChildListener(child: string): Promise<void> {
  if (childListeners.has(child)) return;
  if (!listenHook) throw new CodecError(`child server ${child} cannot be reached from a network server`);
  childListeners.set(child, await listenHook(child));
}

/**
 * Encode `args` for a connection, waiting first for whatever the encoding needs: pending
 * sync results (awaited here) and child listeners (started here).
 */
export async function encodeArgsWhenReady(args: unknown[], dest: Destination): Promise<Uint8Array> {
  for (let i = 0; ; i++) {
    try {
      return encodeArgs(args, dest);
    } catch (e) {
      if (i > 64) throw e;
      if (e instanceof NeedsAwait) await settle(e.promise);
      else if (e instanceof NeedsListener) await ensureChildListener(e.child);
      else throw e;
    }
  }
}

/** Encode any value with this process's references. */
export function encodeWithRefs(v: unknown): Uint8Array {
  return encodeValue(v, clientRefs, limits);
}

/** Decode a value that came from `_conn` (kept for relative addresses). */
export function decodeFrom(bytes: Uint8Array, _conn?: ServerConnection): unknown {
  return decodeValue(bytes, clientRefs, limits);
}
