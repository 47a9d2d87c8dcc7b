/**
 * `callback()`: hand a function or an object of this process to a server by reference. The
 * handle passes as an argument at any depth; the server gets a stub whose calls run the
 * original here and resolve with its return value. Only what is wrapped is exposed: a plain
 * function is never sent, and of an object only its methods are callable, nothing else.
 * The machinery (ids, handouts, routes, stubs) is in callback-table.ts.
 */
import { CodecError } from "../core/errors.ts";
import { randomId } from "../core/ids.ts";
import { HANDLE, releaseOwn, type OwnCallback } from "./callback-table.ts";

/** What a stub of `T` offers on the server: every call returns a promise. */
export type Stubbed<T> = T extends (...args: infer A) => infer R
  ? (...args: A) => Promise<Awaited<R>>
  : { readonly [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never };

/** The handle's own members (on top of the callable surface of the wrapped value). */
export interface CallbackHandle extends Disposable {
  /** Stop exposing the callback: every stub of it fails NOT_FOUND from now on, and its id is never reused. */
  release(): void;
  /** Has `release()` been called? */
  readonly released: boolean;
}

/**
 * A callback handle: callable here like the wrapped value (each call returns a promise), and
 * sent as a reference when passed to a remote method or constructor.
 */
export type Callback<T> = Stubbed<T> & CallbackHandle;

/**
 * Wrap a function or an object so that a server can call it back. Pass the handle as an
 * argument (at any depth, also inside a Msg's metadata); on the server a function arrives as
 * `(...args) => Promise<R>` and an object as a proxy whose methods return promises. Arguments
 * and return values travel as codec values; an error thrown here rejects the server's call
 * with AgentCallError. It works in child mode (over the IPC link) and with independent servers
 * (over a stream this process opened: no listening port needed).
 *
 * Lifetime: until `release()` (or the end of a `using` block), this process's exit, or the loss
 * of the connection it was sent over; a stub called after that fails NOT_FOUND / UNAVAILABLE at
 * once. Stubs the server drops or garbage-collects are forgotten here too. A callback never
 * keeps this process alive on its own.
 *
 * @example
 * using progress = callback((done: number, total: number) => bar.update(done / total));
 * await crawler.crawl(url, progress);
 */
export function callback<T extends object>(target: T): Callback<T> {
  if (target === null || (typeof target !== "function" && typeof target !== "object")) {
    throw new TypeError("callback() takes a function or an object");
  }
  if ((target as Record<symbol, unknown>)[HANDLE]) return target as unknown as Callback<T>;
  const own: OwnCallback = { id: randomId(), target, methods: typeof target === "function" ? undefined : methodsOf(target), released: false };
  const handle = typeof target === "function" ? functionHandle(own, target as (...a: unknown[]) => unknown) : objectHandle(own, target);
  Object.defineProperties(handle, {
    [HANDLE]: { value: own },
    release: { value: () => releaseOwn(own) },
    released: { get: () => own.released },
    [Symbol.dispose]: { value: () => releaseOwn(own) },
  });
  return handle as unknown as Callback<T>;
}

function functionHandle(own: OwnCallback, fn: (...a: unknown[]) => unknown): object {
  return async (...args: unknown[]) => {
    if (own.released) throw new CodecError("this callback was released");
    return fn(...args);
  };
}

function objectHandle(own: OwnCallback, obj: object): object {
  const h: Record<string, unknown> = {};
  for (const m of own.methods ?? []) {
    h[m] = async (...args: unknown[]) => {
      if (own.released) throw new CodecError("this callback was released");
      return (obj as Record<string, (...a: unknown[]) => unknown>)[m]!(...args);
    };
  }
  return h;
}

/**
 * The methods of `obj` a server may call: functions on the object and its class chain (not
 * Object.prototype's), except the constructor and `_`-prefixed names.
 */
function methodsOf(obj: object): ReadonlySet<string> {
  const out = new Set<string>();
  for (let p: object | null = obj; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (k === "constructor" || k.startsWith("_") || out.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(p, k);
      if (d && typeof d.value === "function") out.add(k);
    }
  }
  return out;
}
