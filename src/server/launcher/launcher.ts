/**
 * `RpcAgentServerLauncher`: starts an independent agent server (gRPC) with the classes it
 * may construct, in this process or in a subprocess, and stops it. AgentScope's launcher,
 * with these deliberate differences:
 * - `launch()` runs the server in this process by default (`inSubprocess: false`): Bun has no
 *   fork, so a subprocess is a fresh `bun` that must re-import the classes' modules; it is
 *   available, but in-process is faster to start and shares the caller's registry.
 * - a non-loopback listener requires a token unless `insecure: true` is given.
 * - `shutdown()` works for both launch modes and drains in-flight calls first.
 * gRPC is loaded inside `launch()`, so importing the package root never loads grpc-js.
 *
 * @example
 * const server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [WebAgent] });
 * await server.launch();
 * const agent = WebAgent.toDist({ host: server.host, port: server.port }, "bob");
 * await server.shutdown();
 *
 * @example
 * await using server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [WebAgent] });
 * await server.launch();
 * // ... shut down (drained) at the end of the scope, even when it ends with an exception
 */
import { allowListPolicy, clearDialPolicy, setDialPolicy } from "../../client/connections.ts";
import { CodecError, ResourceExhaustedError } from "../../core/errors.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import { classTable, type AnyClass } from "../../core/registry.ts";
import { serverTls, type ServerTls } from "../../core/tls.ts";
import type { Address } from "../../core/transport.ts";
import type { GrpcBinding } from "../bindings/grpc/binding.ts";
import { advertisedHost, aliasesOf, bindHostOf, isLoopback, resolveOptions, type LauncherOptions, type ResolvedLauncherOptions } from "./options.ts";
import { launchSubprocess, type ServerSubprocess } from "./subprocess.ts";
import { isolateOptions } from "./isolate.ts";
import type { Servicer } from "../servicer.ts";
import type { CallStats, MetricsServer } from "../metrics.ts";
import type { Registration } from "../registry.ts";
import pkg from "../../../package.json" with { type: "json" };

export type { LauncherOptions } from "./options.ts";

/** What an in-process server is made of. */
interface InProc {
  binding: GrpcBinding;
  servicer: Servicer;
  stats: CallStats;
  metrics?: MetricsServer;
  registration?: Registration;
}

/** Starts and stops one agent server; `await using` shuts it down at the end of the scope. */
export class RpcAgentServerLauncher implements AsyncDisposable {
  /** Host clients use to reach the server. */
  readonly host: string;
  /** Server id, reported by `getServerInfo()`. */
  readonly serverId: string;
  /**
   * The address the listener binds: `host` itself, except that `localMode` binds loopback
   * (`host` when it is a loopback address such as 127.0.0.2, else 127.0.0.1).
   */
  readonly bindHost: string;
  readonly #opts: ResolvedLauncherOptions;
  readonly #token: string | undefined;
  readonly #tls: ServerTls | undefined;
  #port: number;
  #launched = false;
  #inProc: InProc | undefined;
  #metricsPort: number | undefined;
  #sub: ServerSubprocess | undefined;
  #stopping: Promise<void> | undefined;
  #terminated: Promise<void>;
  #markTerminated!: () => void;

  constructor(opts: LauncherOptions = {}) {
    const o = resolveOptions(opts);
    this.#opts = o;
    this.host = o.host;
    this.#port = o.port ?? 0;
    this.#token = opts.token || process.env.AS_SERVER_TOKEN || undefined;
    this.bindHost = bindHostOf(o.host, o.localMode);
    // Read now: a missing or unreadable certificate is a fatal misconfiguration, never plaintext.
    this.#tls = serverTls(o);
    if (!isLoopback(this.bindHost) && !this.#token && !this.#tls?.clientCa && !o.insecure) {
      throw new Error(
        `refusing to listen on non-loopback ${this.bindHost} without a token: set token (or AS_SERVER_TOKEN), require client certificates (tlsClientCa), use localMode, or pass insecure: true`,
      );
    }
    this.serverId = opts.serverId ?? RpcAgentServerLauncher.generateServerId(o.host, this.#port);
    this.#terminated = new Promise((r) => (this.#markTerminated = r));
  }

  /** The port of `/metrics` (after `launch()`, when `metricsPort` was given), else undefined. */
  get metricsPort(): number | undefined {
    return this.#metricsPort;
  }

  /** The port the server listens on (0 until `launch()` bound a free one). */
  get port(): number {
    return this.#port;
  }

  /**
   * Start the server; resolves once it accepts calls. In-process by default; with
   * `inSubprocess: true` a `bun` subprocess runs it (its classes must be `@dist` classes
   * defined in files, which the subprocess imports).
   */
  async launch(opts: { inSubprocess?: boolean } = {}): Promise<void> {
    if (this.#launched) throw new Error("this launcher was already launched");
    this.#launched = true;
    try {
      if (opts.inSubprocess) await this.#launchSubprocess();
      else await this.#launchHere();
    } catch (e) {
      this.#markTerminated();
      throw e;
    }
  }

  /**
   * Resolves when the server has stopped: `shutdown()`, a remote `stop`, or the subprocess
   * exiting. Resolves at once for a launcher that was never launched.
   */
  waitUntilTerminate(): Promise<void> {
    return this.#launched ? this.#terminated : Promise.resolve();
  }

  /**
   * Stop: new calls fail UNAVAILABLE, in-flight calls get `shutdownGraceMs` to finish, then
   * the pool and objects are released (a subprocess gets SIGTERM). Idempotent.
   */
  shutdown(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /**
   * `shutdown()`, for `await using`: the server stops accepting calls (its port refuses
   * connections), drains, and a subprocess exits. Resolves at once for a launcher never launched.
   *
   * @example
   * {
   *   await using server = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [WebAgent] });
   *   await server.launch();
   *   await WebAgent.toDist({ host: server.host, port: server.port }, "bob").reply(msg);
   * } // server shut down here
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  /** A new server id: 8 random characters of [A-Za-z0-9] (crypto; `host`/`port` kept for AgentScope's signature). */
  static generateServerId(_host: string, _port: number): string {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let id = "";
    const buf = new Uint8Array(16);
    while (id.length < 8) {
      crypto.getRandomValues(buf);
      // 248 = 4 × 62: rejecting larger bytes keeps every character equally likely.
      for (const b of buf) if (b < 248 && id.length < 8) id += alphabet[b % 62];
    }
    return id;
  }

  async #launchHere(): Promise<void> {
    const o = this.#opts;
    const [{ Servicer }, { createPool }, { bindGrpc }, { applyModelConfigs }, { CallStats }, { eventLog }, { observers }] = await Promise.all([
      import("../servicer.ts"),
      import("../pool/create.ts"),
      import("../bindings/grpc/binding.ts"),
      import("../../models/init.ts"),
      import("../metrics.ts"),
      import("../event-log.ts"),
      import("../observer.ts"),
    ]);
    const stats = new CallStats();
    const classes = await this.#classTable();
    if (o.modelConfigs !== undefined) applyModelConfigs(o.modelConfigs);
    const pool = await createPool({ poolType: o.poolType, redisUrl: o.redisUrl, maxPoolSize: o.maxPoolSize, maxExpireTime: o.maxExpireTime, serverId: this.serverId });
    // The port is known only after binding; the servicer reads its address by reference.
    const address: Address = { host: advertisedHost(o.host, o.localMode), port: this.#port };
    // Addresses named in values this server receives are dialled only if allowed.
    setDialPolicy(this, allowListPolicy(o.allowPeers));
    const servicer = new Servicer({
      serverId: this.serverId,
      address,
      aliases: aliasesOf(o.host, this.bindHost),
      resolveClass: (name) => classes.get(name),
      capacity: o.capacity,
      maxQueue: o.maxQueue,
      maxAgents: o.maxAgents,
      ...(o.streamWindow === undefined ? {} : { streamWindow: o.streamWindow }),
      pool,
      maxTimeoutSeconds: o.maxTimeoutSeconds,
      limits: { ...DEFAULT_LIMITS, maxMessageBytes: o.maxMessageBytes },
      ...(o.hideStacks ? { hideStacks: true } : {}),
      ...(o.fileDir ? { fileDir: o.fileDir } : {}),
      observer: observers([stats, eventLog(this.serverId)]),
      ...(o.isolate ? { isolate: await isolateOptions(o, this.serverId, stats, () => this.#selfTokens(address)) } : {}),
      // After the answer to `stop` went out.
      onStop: () => void setTimeout(() => void this.shutdown(), 0),
      setModelConfigs: (c) => {
        try {
          applyModelConfigs(c, { fromPeer: true });
        } catch (e) {
          // Past the documented bounds (store.ts) the caller learns it is a limit, not bad data.
          if ((e as { code?: unknown }).code === "RESOURCE_EXHAUSTED") throw new ResourceExhaustedError((e as Error).message);
          throw new CodecError(`bad model configs: ${(e as Error).message}`);
        }
      },
    });
    try {
      const binding = await bindGrpc({ servicer, bindHost: this.bindHost, port: this.#port, token: this.#token, maxMessageBytes: o.maxMessageBytes, tls: this.#tls });
      address.port = this.#port = binding.port;
      this.#inProc = { binding, servicer, stats };
    } catch (e) {
      stats.close();
      await servicer.close();
      clearDialPolicy(this);
      throw e;
    }
    try {
      await this.#observability(this.#inProc, address);
    } catch (e) {
      await this.#stop();
      throw e;
    }
  }

  /** Metrics endpoint and registry record, once the server accepts calls. */
  async #observability(p: InProc, address: Address): Promise<void> {
    const o = this.#opts;
    const { servicer, stats } = p;
    if (o.metricsPort !== undefined) {
      const { serveMetrics } = await import("../metrics.ts");
      const registry = await stats.enablePrometheus({
        running: () => servicer.capacity.running,
        queued: () => servicer.capacity.queued,
        agents: () => servicer.size,
        poolResults: () => servicer.opts.pool.size(),
      });
      p.metrics = serveMetrics(registry, this.bindHost, o.metricsPort);
      this.#metricsPort = p.metrics.port;
    }
    if (o.registry !== undefined) {
      const { Registration } = await import("../registry.ts");
      const tls = this.#tls !== undefined;
      const tokenRequired = !!this.#token || !!this.#tls?.clientCa;
      p.registration = await Registration.start({
        url: o.registry,
        serverId: this.serverId,
        record: () => {
          const info = servicer.serverInfo();
          return {
            id: this.serverId,
            host: address.host,
            port: this.#port,
            pid: process.pid,
            version: pkg.version,
            capacity: info.capacity,
            agents: info.size,
            pending: info.pending,
            startedAt: stats.startedAt,
            lastSeen: Date.now(),
            calls: stats.calls,
            errors: stats.errors,
            ...stats.rates(),
            rss: process.memoryUsage.rss(),
            restarts: stats.restarts,
            tls,
            tokenRequired,
            ...(this.#metricsPort === undefined ? {} : { metricsPort: this.#metricsPort }),
          };
        },
      });
    }
  }

  /** This server's token under each name it answers to, for its isolated agents to dial it back with. */
  #selfTokens(address: Address): Record<string, string> | undefined {
    const token = this.#token;
    if (!token) return undefined;
    return Object.fromEntries([address.host, ...aliasesOf(this.#opts.host, this.bindHost)].map((h) => [`${h}:${this.#port}`, token]));
  }

  /** Name → class: this launcher's own table; a client can never add to it. */
  async #classTable(): Promise<Map<string, AnyClass>> {
    const table = new Map<string, AnyClass>();
    // The built-in DialogAgent is always served (AgentScope servers could create it too).
    const { DialogAgent } = await import("../../agent/dialog-agent.ts");
    table.set("DialogAgent", DialogAgent);
    const custom = [...(this.#opts.customAgentClasses ?? [])];
    if (this.#opts.agentDir) {
      const { loadAgentsFromDir } = await import("../class-loader.ts");
      custom.push(...(await loadAgentsFromDir(this.#opts.agentDir)));
    }
    for (const c of custom) if (typeof c !== "function") throw new TypeError("customAgentClasses must hold classes");
    // Two different classes of one name are an error naming both, never "the last one wins".
    for (const [name, cls] of classTable(custom)) table.set(name, cls);
    return table;
  }

  async #launchSubprocess(): Promise<void> {
    const o = this.#opts;
    const sub = await launchSubprocess(
      {
        host: o.host,
        port: this.#port,
        serverId: this.serverId,
        capacity: o.capacity,
        poolType: o.poolType,
        redisUrl: o.redisUrl,
        maxPoolSize: o.maxPoolSize,
        maxExpireTime: o.maxExpireTime,
        maxTimeoutSeconds: o.maxTimeoutSeconds,
        localMode: o.localMode,
        maxMessageBytes: o.maxMessageBytes,
        maxQueue: o.maxQueue,
        maxAgents: o.maxAgents,
        shutdownGraceMs: o.shutdownGraceMs,
        ...(o.streamWindow === undefined ? {} : { streamWindow: o.streamWindow }),
        ...(o.allowPeers === undefined ? {} : { allowPeers: o.allowPeers }),
        ...(o.agentDir === undefined ? {} : { agentDir: o.agentDir }),
        ...(o.insecure ? { insecure: true } : {}),
        ...(o.hideStacks ? { hideStacks: true } : {}),
        ...(o.fileDir === undefined ? {} : { fileDir: o.fileDir }),
        ...(o.modelConfigs === undefined ? {} : { modelConfigs: o.modelConfigs }),
        ...(o.registry === undefined ? {} : { registry: o.registry }),
        ...(o.metricsPort === undefined ? {} : { metricsPort: o.metricsPort }),
        ...(o.isolate ? { isolate: true } : {}),
        ...(o.restart === undefined ? {} : { restart: o.restart }),
        customAgentClasses: o.customAgentClasses ?? [],
      },
      // The token and TLS material go through the environment, never the command line.
      this.#token,
      this.#tls,
    );
    this.#sub = sub;
    this.#port = sub.port;
    this.#metricsPort = sub.metricsPort;
    sub.exited.then(() => this.#markTerminated());
  }

  async #stop(): Promise<void> {
    if (this.#sub) {
      await this.#sub.stop(this.#opts.shutdownGraceMs + 2000);
    } else if (this.#inProc) {
      const p = this.#inProc;
      // Out of the registry first: no client is sent here while the server drains.
      await p.registration?.stop();
      await p.binding.shutdown(this.#opts.shutdownGraceMs);
      await p.servicer.close();
      await p.metrics?.stop();
      p.stats.close();
      clearDialPolicy(this);
    }
    this.#markTerminated();
  }
}
