/**
 * References: how proxies, pending AsyncResults and server-held objects travel inside values.
 * A proxy becomes `{ $as: "ref", oid, cls, m, a, at }`, a pending task result
 * `{ $as: "fut", task, at }`, where `at` is the address of the server holding it. Decoding
 * makes a working proxy or AsyncResult again — or, on the server that holds the object or
 * task, the local object or a local wait, so identity survives a round trip.
 */
import { AsyncResult } from "./async-result.ts";
import type { ServerConnection } from "./connection.ts";
import { connectionFor } from "./connections.ts";
import { decodeValue, encodeValue, type RefCodec, type WireRefTag } from "./codec.ts";
import { CodecError } from "./errors.ts";
import { DEFAULT_LIMITS, type Limits } from "./limits.ts";
import { isId } from "./protocol.ts";
import { makeRemote, remoteState } from "./proxy.ts";
import { IS_DISTRIBUTABLE } from "./registry.ts";
import { DEFAULT_RETRY } from "./retry.ts";
import type { Address } from "./transport.ts";

/** Thrown while encoding when an argument is a still-pending result of a *sync* call. */
export class NeedsAwait extends Error {}

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

/** Set the limits used to encode and decode values in this process. */
export function setProcessLimits(l: Limits): void {
  limits = l;
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
export function makeRefCodec(self?: LocalHooks): RefCodec {
  return {
    encode(v) {
      if (v instanceof AsyncResult) {
        const s = v.settled;
        if (s?.ok) return { value: s.value };
        const src = v.taskSource;
        if (src) return { tag: { $as: "fut", task: src.task, at: addressOut(src.conn.address) } };
        if (s && !s.ok) throw s.error;
        throw new NeedsAwait("argument is a pending result");
      }
      const st = remoteState(v);
      if (st) {
        const tag: WireRefTag = { $as: "ref", oid: st.oid, at: addressOut(st.conn.address) };
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
        if (home) return { tag: home.exportObject(v) };
        throw new CodecError(`a local ${v.constructor.name} cannot be sent as a value; send x.toDist() instead`);
      }
      return undefined;
    },
    decode(tag) {
      const at = parseAddress(tag.at);
      if (tag.$as === "fut") {
        if (!isId(tag.task)) throw new CodecError("bad task reference");
        if (self?.isSelf(at)) return self.task(tag.task);
        const conn = connectionFor(at);
        return AsyncResult.fromTask({
          conn,
          task: tag.task,
          accepted: Promise.resolve(),
          decode: (b) => decodeFrom(b, conn),
          maxWaitMs: 5000,
          retry: DEFAULT_RETRY,
        });
      }
      if (!isId(tag.oid)) throw new CodecError("bad object reference");
      if (self?.isSelf(at)) {
        const local = self.object(tag.oid);
        if (local) return local;
      }
      const methods = stringList(tag.m);
      const asyncs = stringList(tag.a);
      const conn = connectionFor(at);
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
        maxWaitMs: 5000,
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

/** The RefCodec of client code in this process. */
export const clientRefs: RefCodec = makeRefCodec();

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
  return out;
}

/** Encode a call's argument array with this process's references. */
export function encodeArgs(args: unknown[]): Uint8Array {
  return encodeValue(args, clientRefs, limits);
}

/** Encode any value with this process's references. */
export function encodeWithRefs(v: unknown): Uint8Array {
  return encodeValue(v, clientRefs, limits);
}

/** Decode a value that came from `_conn` (kept for relative addresses). */
export function decodeFrom(bytes: Uint8Array, _conn?: ServerConnection): unknown {
  return decodeValue(bytes, clientRefs, limits);
}
