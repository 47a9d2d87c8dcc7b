/**
 * References, encoding side: how proxies, pending AsyncResults, promises and server-held
 * objects travel inside values. A proxy becomes `{ $as: "ref", oid, cls, m, a, at }`, a
 * pending task result `{ $as: "fut", task, at }`, a RemoteStream `{ $as: "stream", id, at }`, where `at` is the address of the server
 * holding it (a child's listener address for network destinations). What cannot be sent yet
 * throws `NeedsAwait` / `NeedsListener`, and `encodeArgsWhenReady` waits and tries again.
 * The decoding side (which builds proxies) is in proxy.ts.
 */
import { AsyncResult } from "./async-result.ts";
import { callbacks } from "./callback-table.ts";
import { encodeFrame, encodeValue, type Frame, type RefCodec, type WireRefTag } from "../core/codec.ts";
import { CodecError } from "../core/errors.ts";
import type { Limits } from "../core/limits.ts";
import { IS_DISTRIBUTABLE } from "../core/registry.ts";
import type { Address, Transport } from "../core/transport.ts";
import { remoteState } from "./proxy-state.ts";
import { RemoteStream } from "./remote-stream.ts";
import { runtime, type LocalHooks } from "./runtime.ts";

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

/** Who is sent to: `ipc` (a child, or the parent) understands child addresses; `net` needs ports. */
export type Destination = "ipc" | "net";

/** Address to put in a reference sent to `dest`. */
function addressFor(a: Address, dest: Destination): Address {
  if (dest === "ipc" || !a.child || a.port !== undefined) return a;
  const net = runtime.childListeners.get(a.child);
  if (!net) throw new NeedsListener(a.child);
  return net;
}

function addressOut(a: Address): Address {
  for (const s of runtime.localServers) if (s.publicAddress) return s.publicAddress(a);
  return a;
}

function first<T>(s: Set<T>): T | undefined {
  for (const x of s) return x;
  return undefined;
}

/**
 * The reference tag (or plain value) `v` travels as, or undefined for an ordinary value.
 * `self` is the server doing the encoding, if any: its own objects are exported from it.
 */
export function encodeRef(v: unknown, self: LocalHooks | undefined, dest: Destination): { tag: WireRefTag } | { value: unknown } | undefined {
    if (v instanceof AsyncResult) {
      const s = v.settled;
      if (s?.ok) return { value: s.value };
      const src = v.taskSource;
      if (src) {
        // A call made while its object is being placed: its server, not chosen yet, cannot be named.
        const choosing = src.conn.addressPending;
        if (choosing) throw new NeedsAwait(choosing);
        // Sent solo and not answered yet: its server will not keep an inline value for others,
        // so this reference waits for the answer (and then carries the value, or a task kept).
        if (src.sealed && !v.isAccepted) throw new NeedsAwait(src.accepted);
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
    if (v instanceof RemoteStream) {
      // The receiver pulls from the producing server itself; it must exist there first.
      if (!v.isAccepted) throw new NeedsAwait(v.accepted);
      const choosing = v.conn.addressPending;
      if (choosing) throw new NeedsAwait(choosing);
      const at = addressFor(addressOut(v.conn.address), dest);
      v.handOff();
      return { tag: { $as: "stream", id: v.id, at } };
    }
    if (v instanceof Promise) {
      // A plain promise (e.g. a local agent's reply) is sent as its value once it settles.
      const s = runtime.settled.get(v);
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
    const cb = callbacks.exportTag(v as object, sending);
    if (cb) return { tag: cb };
    if ((v as Record<symbol, unknown>)[IS_DISTRIBUTABLE]) {
      // A server-held object sent by value travels as a proxy to it.
      const home = self ?? [...runtime.localServers].find((s) => s.object((v as { oid: string }).oid) === v) ?? first(runtime.localServers);
      if (home) {
        const tag = home.exportObject(v as object);
        return { tag: { ...tag, at: addressFor(tag.at as Address, dest) } };
      }
      throw new CodecError(`a local ${(v as object).constructor.name} cannot be sent as a value; send x.toDist() instead`);
    }
    return undefined;
}

/** The codec for values this process sends to `dest` (decoding is never asked of it). */
function sendCodec(dest: Destination): RefCodec {
  return {
    encode: (v) => encodeRef(v, undefined, dest),
    decode: () => {
      throw new CodecError("this codec only encodes");
    },
  };
}
const toIpc = sendCodec("ipc");
const toNet = sendCodec("net");

/**
 * The transport the value being encoded goes over (set only while `encodeArgs` runs: encoding
 * is synchronous). Its callback route is asked for only when a callback is met: a gRPC route
 * opens the Callbacks stream, which calls without callbacks must never do. Undefined: no
 * callback may be sent.
 */
let sending: Transport | undefined;

/**
 * Encode a call's argument array (or any value) with this process's references, for `dest`.
 * `to` is the transport it goes over (callbacks in it are handed to that link).
 */
export function encodeArgs(args: unknown, dest: Destination = "ipc", to?: Transport): Uint8Array {
  return encodeFor(encodeValue, args, dest, to);
}

/**
 * `encodeArgs` for a request whose arguments are not read again once it is sent (a sync
 * call): large binary leaves stay the caller's arrays, written into the message as it is sent
 * (a `SplitFrame`, see split-frame.ts), not copied into a frame first.
 */
export function encodeArgsFrame(args: unknown, dest: Destination = "ipc", to?: Transport): Frame {
  return encodeFor(encodeFrame, args, dest, to);
}

function encodeFor<F extends Frame>(encode: (v: unknown, refs: RefCodec, limits: Limits) => F, args: unknown, dest: Destination, to: Transport | undefined): F {
  const prev = sending;
  sending = to;
  try {
    return encode(args, dest === "net" ? toNet : toIpc, runtime.limits);
  } finally {
    sending = prev;
  }
}

/** Encode any value with this process's references (for a child server or the parent). */
export function encodeWithRefs(v: unknown): Uint8Array {
  return encodeValue(v, toIpc, runtime.limits);
}

async function settle(p: Promise<unknown>): Promise<void> {
  try {
    runtime.settled.set(p, { ok: true, value: await p });
  } catch (error) {
    runtime.settled.set(p, { ok: false, error });
    throw error;
  }
}

/** Make sure `child` has a loopback listener, and remember its address. */
export async function ensureChildListener(child: string): Promise<void> {
  if (runtime.childListeners.has(child)) return;
  runtime.childListeners.set(child, await runtime.listen(child));
}

/**
 * Encode `args` (or any value) for a connection, waiting first for whatever the encoding
 * needs: pending sync results (awaited here) and child listeners (started here).
 */
export async function encodeArgsWhenReady(args: unknown, dest: Destination, to?: Transport): Promise<Uint8Array> {
  for (let i = 0; ; i++) {
    try {
      return encodeArgs(args, dest, to);
    } catch (e) {
      if (i > 64) throw e;
      if (e instanceof NeedsAwait) await settle(e.promise);
      else if (e instanceof NeedsListener) await ensureChildListener(e.child);
      else throw e;
    }
  }
}
