/**
 * The reference codec of a server, and this process's settings for values: limits, the
 * servers running here, child listener addresses. A server decodes what it was sent with
 * `makeRefCodec(self)`: references to its own objects and tasks resolve to the local object
 * or a local wait, so identity survives a round trip; everything else becomes a proxy or an
 * AsyncResult (proxy.ts), and encoding is ref-encode.ts's.
 */
import type { RefCodec } from "../core/codec.ts";
import type { Limits } from "../core/limits.ts";
import type { Address } from "../core/transport.ts";
import { decodeRef } from "./proxy.ts";
import { encodeRef, type Destination } from "./ref-encode.ts";
import { runtime, type LocalHooks } from "./runtime.ts";

/** Record the listener address of a child server. */
export function setChildListener(child: string, a: Address): void {
  runtime.childListeners.set(child, a);
}

/** Register a server running in this process (its objects can then be sent by value). */
export function registerLocalServer(h: LocalHooks): void {
  runtime.localServers.add(h);
}

/** Forget a server of this process (it shut down). */
export function unregisterLocalServer(h: LocalHooks): void {
  runtime.localServers.delete(h);
}

/** Set the limits used to encode and decode values in this process. */
export function setProcessLimits(l: Limits): void {
  runtime.limits = l;
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
  runtime.limits = { ...runtime.limits, ...l };
  return runtime.limits;
}

/** The limits in force in this process. */
export function processLimits(): Limits {
  return runtime.limits;
}

/**
 * A RefCodec. `self` is given when a server decodes what it was sent: references to its own
 * objects and tasks then resolve locally. Clients decode with no `self`, so they always get
 * proxies, even for a server that runs in the same process.
 */
export function makeRefCodec(self?: LocalHooks, dest: Destination = "ipc"): RefCodec {
  return {
    encode: (v) => encodeRef(v, self, dest),
    decode: (tag) => decodeRef(tag, self),
  };
}
