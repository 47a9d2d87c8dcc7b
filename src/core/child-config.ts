import type { ErrorCode } from "./errors.ts";
import { SERVER_START_ENV, dropAddedStartEnv, withStartEnv } from "./server-env.ts";

/** Environment variable carrying the child's JSON config (removed by the child on start). */
export const CHILD_CONFIG_ENV = "AS_CHILD_CONFIG";

/** What a parent tells a child server at spawn (JSON in `AS_CHILD_CONFIG`). */
export interface ChildConfig {
  /** Server id the parent gave the child. */
  id: string;
  /** Token of the child's loopback listener, if it is ever asked to open one. */
  key: string;
  /** Modules to import before serving (the module defining the class). */
  modules?: string[];
  /**
   * Classes the parent will create, which importing `modules[0]` must register. Checked at
   * start, so a class the module does not define at its top level (one declared inside a
   * function) fails the start with a message saying so, not a bare NOT_FOUND later.
   */
  classes?: string[];
  /** How deeply this child is nested: 1 for a child of an ordinary process, 2 for its child… */
  depth?: number;
  capacity: number;
  maxQueue: number;
  /** Items a stream runs ahead of its consumer. */
  streamWindow?: number;
  maxPoolSize: number;
  maxExpireTime: number;
  maxTimeoutSeconds: number;
  maxMessageBytes?: number;
  /** The parent's model configs, inherited by the child. */
  modelConfigs?: unknown;
  /**
   * Tokens to present to servers, by `host:port`: an `--isolate` server gives its own, so its
   * agents can dial it back for the futures and proxies of other agents they are passed.
   */
  tokens?: Record<string, string>;
}

/**
 * What a child posts instead of `ready` when it cannot serve: its class's module called
 * `toDist()` while being imported, or does not define the class. The parent fails the
 * start with this message and code, then kills the child.
 */
export interface ChildFatalFrame {
  k: "fatal";
  message: string;
  code?: ErrorCode;
}

/**
 * Prefix of `AS_CHILD_CONFIG` for a spare child (a warm pool's, see client/warm-pool.ts),
 * followed by a `SpareConfig` as JSON: it loads the runtime, posts `ChildSpareFrame`, and
 * waits for a `ChildConfFrame` naming what it becomes.
 */
export const CHILD_SPARE = "spare:";

/** What a spare child is told at spawn. */
export interface SpareConfig {
  /** Its nesting depth, as a `ChildConfig` would say. */
  depth: number;
  /** Class modules to import while waiting (those of children that started before). */
  modules: string[];
}

/** A spare child has loaded the runtime and waits for its config (child → parent). */
export interface ChildSpareFrame {
  k: "spare";
  pid: number;
  /** The class modules it imported. */
  modules: string[];
  /**
   * A few bytes, so both ends have carried a binary value over the channel before the first
   * real (binary) frames. With it and a GC before waiting, a spare's toDist() → first answer went
   * from ~14 to ~8 ms (median of 15, load average ~3).
   */
  probe?: Uint8Array;
}

/** The config of the child server a spare becomes (parent → child): a `ChildConfig` as JSON. */
export interface ChildConfFrame {
  k: "conf";
  json: string;
  /** See `ChildSpareFrame.probe`. */
  probe?: Uint8Array;
}

/**
 * Largest config passed in the environment. Linux refuses a spawn whose single environment
 * string exceeds 128 KiB (E2BIG): a parent with many model configs would fail to start any
 * child. Larger configs go on the child's stdin instead (`AS_CHILD_CONFIG=-`).
 */
export const CHILD_CONFIG_ENV_MAX = 64 * 1024;

/**
 * Settings a child server starts with: a server's (`server-env.ts`), and Bun's transpiler on
 * the main thread. Bun transpiles imported modules on its thread pool by default; on the main
 * thread a child's start costs ~10 ms less CPU (~1,350 → ~1,060 page faults: the pool threads'
 * fresh heaps), which is what 5 children starting at once on 2 cores wait for. Read at start;
 * removed from the child's `process.env` then (see `takeChildConfig`), so processes it spawns
 * do not inherit them.
 */
const CHILD_START_ENV: Readonly<Record<string, string>> = { ...SERVER_START_ENV, BUN_FEATURE_FLAG_DISABLE_ASYNC_TRANSPILER: "1" };

/** The environment of a child server or spare: this process's, its config, and `CHILD_START_ENV`. */
export function childEnv(config: string): Record<string, string | undefined> {
  return { ...withStartEnv(process.env, CHILD_START_ENV), [CHILD_CONFIG_ENV]: config };
}

/**
 * Read the config — from the environment, or from the first line of stdin when it says `-` —
 * and remove the variable (and the start-up settings the parent added), so processes the
 * child spawns do not inherit them.
 */
export async function takeChildConfig(): Promise<string | undefined> {
  const json = process.env[CHILD_CONFIG_ENV];
  delete process.env[CHILD_CONFIG_ENV];
  dropAddedStartEnv(CHILD_START_ENV);
  if (json !== "-") return json;
  let text = "";
  const dec = new TextDecoder();
  for await (const chunk of Bun.stdin.stream()) {
    text += dec.decode(chunk, { stream: true });
    const nl = text.indexOf("\n");
    if (nl >= 0) return text.slice(0, nl);
  }
  return text || undefined;
}
