/**
 * What a proxy is, as data: its state (`RemoteState`, behind the `REMOTE` symbol), the options
 * its calls carry, and the types users see (`Remote<T>`, `RemoteHandle`). A leaf module: the
 * codec's encoder recognises proxies through it without importing the proxy machinery.
 */
import type { AsyncResult } from "./async-result.ts";
import type { RemoteStream } from "./remote-stream.ts";
import type { ServerConnection } from "./connection.ts";
import type { Distributable } from "./distributable.ts";
import type { ClassInfo } from "../core/protocol.ts";
import type { RetryStrategy } from "./retry.ts";

/** Each argument may also be the pending result of another call, a promise, or a proxy in place of an object. */
export type Pipelined<A extends readonly unknown[]> = { [I in keyof A]: Sendable<A[I]> };

/** What may be passed where a `V` is expected. */
export type Sendable<V> = V | Arrived<V> | AsyncResult<V> | AsyncResult<Arrived<V>> | PromiseLike<V>;

/** Members every proxy has, whatever the remote class. */
export interface RemoteHandle {
  /** The object's id on its server (the same as the local object's). */
  readonly oid: string;
  /** The server's host (`"child:<id>"` for a child server). */
  readonly host: string;
  /** The server's port; `undefined` for a child server. */
  readonly port: number | undefined;
  /** Remove the object from its server. Calls made afterwards fail with NOT_FOUND. */
  delete(): Promise<void>;
  /** Stop the child server this proxy started (no-op for other proxies). */
  stop(): Promise<void>;
  /** Release what this proxy created: its child server, or its object on an independent server. */
  [Symbol.asyncDispose](): Promise<void>;
}

type RemoteKey<T, K> = K extends string
  ? K extends `_${string}` | "oid" | "toDist" | keyof RemoteHandle
    ? never
    : T[K & keyof T] extends never ? never : K
  : never;

/** A value as it arrives from a server: server-held objects (Distributables) come as proxies. */
export type Arrived<V> = V extends Distributable ? Remote<V> : V extends Array<infer E> ? Array<Arrived<E>> : V;

/**
 * The remote view of `T`: methods return AsyncResults, stream methods (returning an
 * AsyncGenerator / AsyncIterable) RemoteStreams, fields read as AsyncResults.
 */
export type Remote<T> = {
  readonly [K in keyof T as RemoteKey<T, K>]: T[K] extends (...args: infer A) => infer R
    ? (...args: Pipelined<A>) => Returned<R>
    : AsyncResult<Arrived<Awaited<T[K]>>>;
} & RemoteHandle;

/** What a remote call of a method returning `R` gives: a RemoteStream for AsyncIterables (not `any`/`never`), else an AsyncResult. */
export type Returned<R> = 0 extends 1 & R
  ? AsyncResult<R>
  : [R] extends [never]
    ? AsyncResult<never>
    : [R] extends [AsyncIterable<infer Y>]
      ? RemoteStream<Arrived<Y>>
      : AsyncResult<Arrived<Awaited<R>>>;

/** Internal state behind a proxy. */
export interface RemoteState {
  oid: string;
  /** The server holding the object (known at once, even while a child is still starting). */
  conn: ServerConnection;
  /** Resolves once the object exists on its server; rejects with why it could not be made. */
  ready: Promise<void>;
  /** Set once `ready` resolved: lets calls skip a microtask. */
  isReady?: boolean;
  info?: ClassInfo & { asyncSet?: ReadonlySet<string>; methodSet?: ReadonlySet<string> };
  /** The child server this proxy spawned, if it did. */
  owner?: { stop(): Promise<void> };
  /** True when this proxy created its object on an independent server (dispose deletes it). */
  created?: boolean;
  deleted?: boolean;
  retry: RetryStrategy;
  maxWaitMs: number;
  host: string;
  port: number | undefined;
  /** Options every call through this proxy uses (see `withOptions`). */
  callOpts?: CallOptions;
}

/** Symbol under which a proxy exposes its state (never a remote name: symbols are local). */
export const REMOTE = Symbol.for("actorscope.remote");

/** The state of a proxy, or undefined for anything else. */
export function remoteState(v: unknown): RemoteState | undefined {
  if ((typeof v !== "object" && typeof v !== "function") || v === null) return undefined;
  return (v as Record<symbol, RemoteState | undefined>)[REMOTE];
}

/** Options of calls made through a proxy (see `withOptions`). */
export interface CallOptions {
  /**
   * Deadline of each call, ms: a sync call or attribute read fails with DEADLINE_EXCEEDED if
   * it has not answered by then; an async call's result likewise, and the server drops the
   * call if it could not even start in time.
   */
  timeoutMs?: number;
  /** Cancels calls: their AsyncResults reject with CANCELLED and the server's `currentCall().signal` aborts. */
  signal?: AbortSignal;
  /**
   * When a server's result pool is full of results nobody has read yet, it refuses new async
   * calls for a moment (RESOURCE_EXHAUSTED with a retry hint). With backpressure on (the
   * default) the call is resubmitted after a short, growing pause until it is accepted, its
   * deadline passes, or `BACKPRESSURE_MAX_MS` runs out; off, the refusal is the call's error.
   */
  backpressure?: boolean;
  /**
   * Async calls: the server answers a task that succeeds within a short hold (50 ms) with its
   * value right away — one round trip, no wait, and the result is read at once so it never
   * fills the server's pool (the default, like Ray's small results returned with the task's
   * reply). `false`: the call is answered with its task id at once, whatever the task takes,
   * and the result stays unread on the server until it is read (a wait) or released.
   */
  inline?: boolean;
}



