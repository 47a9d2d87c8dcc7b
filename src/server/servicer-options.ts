/** What a servicer is given by whoever starts it (a launcher, a child server, a test harness). */
import type { AnyClass } from "../core/registry.ts";
import type { Limits } from "../core/limits.ts";
import type { Address } from "../core/transport.ts";
import type { ServicerObserver } from "./observer.ts";
import type { IsolateOptions } from "./isolation.ts";
import type { ResultPool } from "./pool/types.ts";

/** Everything a servicer needs from its launcher. */
export interface ServicerOptions {
  serverId: string;
  /** How other processes reach this server (used in references it hands out; a child's gains a port when it opens a listener). */
  address: Address;
  /** Other names this server answers to (e.g. "localhost" and "127.0.0.1" for a loopback bind). */
  aliases?: string[];
  /** Classes this server may construct, by registered name. */
  resolveClass(name: string): AnyClass | undefined;
  capacity: number;
  /** Async calls that may wait for a slot before new ones are refused. */
  maxQueue: number;
  /** Most objects held; past it `create` (and objects exported by value) fail RESOURCE_EXHAUSTED. Default unbounded. */
  maxAgents?: number;
  pool: ResultPool;
  /** Longest server-side wait for a result, seconds. */
  maxTimeoutSeconds: number;
  limits?: Limits;
  /** Leave remote stacks out of errors sent to callers. */
  hideStacks?: boolean;
  /** Directory `download` may read from; downloads are refused without one. */
  fileDir?: string;
  /** Called after a `stop` request was answered. */
  onStop?(): void;
  /** Model config hooks (LLM agents). */
  setModelConfigs?(configs: unknown): void | Promise<void>;
  /**
   * Items a stream's producer may run ahead of its consumer (default 32): a slow consumer
   * costs this server at most this many items per stream, however slow it is.
   */
  streamWindow?: number;
  /** A stream nobody pulls from for this long is cancelled, seconds (default 7200, like results). */
  streamIdleSeconds?: number;
  /** Metrics, call counts and the event log (server/observer.ts); none by default. */
  observer?: ServicerObserver;
  /** Run every agent created here in a child server of its own, supervised (`--isolate`, isolation.ts). */
  isolate?: IsolateOptions;
}

