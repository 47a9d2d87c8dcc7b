/**
 * The one owner of this process's state as a peer of agent servers: its connections and the
 * credentials configured for them, the child servers it spawned, the loopback listeners of
 * child servers, the servers running in this process, its limits, and — in a child server —
 * how it reaches its parent. Created once per process (`runtime`); a child server configures
 * its parent link once at start-up (`configureChild`). Nothing is wired at import time.
 *
 * The state lives here; the behaviour lives in the modules that use it (connections.ts,
 * ref-encode.ts, proxy.ts, child-server.ts), which all read this one object.
 */
import { AgentServerNotAliveError } from "../core/errors.ts";
import { DEFAULT_LIMITS, type Limits } from "../core/limits.ts";
import type { ClientTls } from "../core/tls.ts";
import type { Address } from "../core/transport.ts";
import type { Request, Response } from "../core/protocol.ts";
import type { AsyncResult } from "./async-result.ts";
import type { ServerConnection } from "./connection.ts";
import type { WireRefTag } from "../core/codec.ts";

/** What a server running in this process plugs in so references to its own objects and tasks resolve locally. */
export interface LocalHooks {
  /** Is `a` this process's own server? */
  isSelf(a: Address): boolean;
  /** Register a local object that is being sent by value and return its reference tag. */
  exportObject(obj: object): WireRefTag;
  /** The local object with this id, if held here. */
  object(oid: string): object | undefined;
  /** A local wait for a task of this server's pool. */
  task(task: string): AsyncResult;
  /** The items of one of this server's streams, pulled locally (undefined if unknown here). */
  stream?(id: string): AsyncIterable<unknown> | undefined;
  /** How other processes reach a child address we hand out. */
  publicAddress?(a: Address): Address;
}

/** A child server spawned by this process, as the runtime needs it. */
export interface SpawnedChild {
  /** Open the child's loopback listener (once) and resolve with its address. */
  listen(): Promise<Address>;
  /** Stop it and wait until it exited. */
  stop(): Promise<void>;
}

/** How a child server reaches what it did not spawn: through its parent. */
export interface ParentLink {
  /** The connection to a child server elsewhere in the tree (relayed by the parent). */
  route(a: Address): ServerConnection | undefined;
  /** Ask the parent to have child `child` (maybe this one) open its loopback listener. */
  listen(child: string): Promise<Address>;
  /** Send a callback request to the parent itself (it owns, or relays, the callback). */
  callParent(req: Request): Promise<Response>;
}

/**
 * Which peers this process may dial for addresses named in values it decodes (see
 * connections.ts `allowListPolicy`). Undefined: any.
 */
export type DialPolicy = (host: string, port: number) => boolean;

/** This process's state as a peer of agent servers. */
export class Runtime {
  /** Child servers this process spawned or routes to, by "child:<id>". */
  readonly children = new Map<string, ServerConnection>();
  /** Child servers this process spawned and that still run, by id. */
  readonly spawned = new Map<string, SpawnedChild>();
  /** gRPC connections by "host:port#token#tls", least recently used first (bounded in connections.ts). */
  readonly connections = new Map<string, ServerConnection>();
  /** Tokens configured by the user for a peer, by "host:port"; `*` for any server. Never written by decoding. */
  readonly tokens = new Map<string, string>();
  /** TLS configured by the user for a peer, by "host:port" (`null`: plaintext); `*` for any server. */
  readonly tls = new Map<string, ClientTls | null>();
  /** TLS from `AS_TLS_*`, read once. */
  envTls: { tls: ClientTls | undefined } | undefined;
  /** Network addresses of child servers' loopback listeners, by child id. */
  readonly childListeners = new Map<string, Address>();
  /** Servers running in this process (their objects can be sent by value). */
  readonly localServers = new Set<LocalHooks>();
  /** Limits values are encoded and decoded with in this process. */
  limits: Limits = DEFAULT_LIMITS;
  /** Outcomes of plain promises awaited while encoding, so the next attempt can read them. */
  readonly settled = new WeakMap<Promise<unknown>, { ok: true; value: unknown } | { ok: false; error: unknown }>();
  /**
   * The dial policies of the servers running in this process, by the server that set it
   * (undefined: that server may dial anything). None: a plain client, which dials anything.
   */
  readonly dialPolicies = new Map<object, DialPolicy | undefined>();

  /** May this process dial `host:port` for an address named in a value? Any running server's policy allowing it is enough. */
  mayDial(host: string, port: number): boolean {
    if (this.dialPolicies.size === 0) return true;
    for (const p of this.dialPolicies.values()) if (!p || p(host, port)) return true;
    return false;
  }
  #parent: ParentLink | undefined;
  #exitHook = false;

  /** In a child server: its link to the parent, configured once at start-up. */
  get parent(): ParentLink | undefined {
    return this.#parent;
  }

  /** Called once by a child server's start-up. */
  configureChild(link: ParentLink): void {
    if (this.#parent) throw new Error("this process's parent link is already configured");
    this.#parent = link;
  }

  /** Does this process serve (a launcher's or a child's server runs here)? */
  get hostsServer(): boolean {
    return this.localServers.size > 0;
  }

  /** Have child `child` open its loopback listener: ours directly, anyone else's through our parent. */
  listen(child: string): Promise<Address> {
    const own = this.spawned.get(child);
    if (own) return own.listen();
    if (this.#parent) return this.#parent.listen(child);
    return Promise.reject(new AgentServerNotAliveError(`child server ${child} is not reachable from this process`, { host: `child:${child}` }));
  }

  /** Track a spawned child; the first one installs the exit hook that stops them all with this process. */
  addSpawned(id: string, c: SpawnedChild): void {
    this.spawned.set(id, c);
    if (this.#exitHook) return;
    this.#exitHook = true;
    // Children also exit on IPC disconnect; this makes it immediate on a normal parent exit.
    process.on("exit", () => {
      for (const s of this.spawned.values()) {
        try {
          void s.stop();
        } catch {
          // Already gone.
        }
      }
    });
  }
}

/** This process's runtime. */
export const runtime = new Runtime();
