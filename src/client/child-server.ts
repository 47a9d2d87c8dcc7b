/**
 * Child mode, parent side: spawn a child agent server with `Bun.spawn` and talk to it over
 * Bun IPC. The child imports the module that defines the class, answers a ready handshake
 * within a time limit, dies with its parent, and its exit fails every pending call at once.
 */
import { DEFAULTS } from "../core/defaults.ts";
import type { Subprocess } from "bun";
import { selfCommand, stopProcess } from "./spawn.ts";
import { ChildOutput, logChildEvent, type ChildLabel } from "./child-output.ts";
import { CHILD_CONFIG_ENV_MAX, childEnv, type ChildConfFrame, type ChildConfig, type ChildFatalFrame } from "../core/child-config.ts";
import { ServerConnection } from "./connection.ts";
import { connectionFor, forgetConnection, registerConnection } from "./connections.ts";
import { AgentCreationError, AgentServerNotAliveError, errorToWire, GRPC_STATUS } from "../core/errors.ts";
import type { CallbackCallRequest, CallbackDropRequest, Request, Response } from "../core/protocol.ts";
import { decodeValue } from "../core/codec-decode.ts";
import { runtime } from "./runtime.ts";
import type { Address } from "../core/transport.ts";
import { randomId } from "../core/ids.ts";
import { IpcTransport, type IpcFrame } from "./transports/ipc.ts";
import { answerCallback } from "./callback-answer.ts";
import { forwardToLink } from "./callback-stubs.ts";
import { callbacks } from "./callback-table.ts";
import { warmPool } from "./warm-pool.ts";
import { splitForIpc } from "../wire/ipc-frame.ts";

/** Options of a child server. */
export interface ChildServerOptions {
  /** Modules the child imports before serving (where the class is defined). */
  modules?: string[];
  /** Classes the first module must define (checked by the child before it reports ready). */
  classes?: string[];
  capacity?: number;
  maxQueue?: number;
  /** Items a stream of the child runs ahead of its consumer. Default 32. */
  streamWindow?: number;
  maxPoolSize?: number;
  maxExpireTime?: number;
  maxTimeoutSeconds?: number;
  maxMessageBytes?: number;
  /** How long the child may take to start, ms. Default 15 000. */
  readyTimeoutMs?: number;
  modelConfigs?: unknown;
  /** Tokens the child presents to servers, by `host:port` (see `ChildConfig.tokens`). */
  tokens?: Record<string, string>;
  /** The agent the child is spawned for: tags its output lines and its crash line. */
  agent?: ChildLabel;
  /** Called once when the process has exited: why (as pending calls are told), and whether `stop()` ended it. */
  onExit?: (why: string, stopped: boolean) => void;
}

/**
 * Child servers nested this deep are refused. Real designs nest two or three levels; a chain
 * this long is a module that spawns a child from code the guard does not cover (e.g. after an
 * `await` in an unawaited `main()`), and stopping it here bounds the damage.
 */
export const MAX_CHILD_DEPTH = 8;

/** This process's place in a tree of child servers (0: not a child server). */
let ownDepth = 0;
/** While a child server imports its class's module: which module, for which classes. */
let importing: { module: string; classes: readonly string[] } | undefined;
/** The first `toDist()` refused while importing (reported even if the module caught it). */
let refusedWhileImporting: AgentCreationError | undefined;

/**
 * In a child server: record its nesting depth and, while it imports the module of its class,
 * that module (`importing` undefined once done). Spawning child servers is refused meanwhile:
 * a module whose top level calls `toDist()` would otherwise make every child spawn another.
 */
export function setChildImport(depth: number, now?: { module: string; classes: readonly string[] }): void {
  ownDepth = depth;
  warmPool.depth = depth + 1;
  importing = now;
}

/** The `toDist()` refused while this child server imported its class's module, if any. */
export function refusedDuringImport(): AgentCreationError | undefined {
  return refusedWhileImporting;
}

/** Why this process may not spawn a child server now, or undefined when it may. */
function spawnRefusal(classes: readonly string[]): AgentCreationError | undefined {
  const what = classes.length ? `toDist() of ${classes.join(", ")}` : "toDist()";
  if (importing) {
    const file = importing.module.startsWith("file://") ? Bun.fileURLToPath(importing.module) : importing.module;
    const err = new AgentCreationError(
      `${what} was called while a child server was importing ${file} to load ${importing.classes.join(", ") || "its class"}: ` +
        "the module's top level runs again in every child server, so each would spawn another one. " +
        "Put the script's top-level code under `if (import.meta.main) { ... }`, which runs only in the " +
        "process you started (like Python's `if __name__ == \"__main__\":`), or move the classes into a module of their own.",
      { code: "FAILED_PRECONDITION" },
    );
    refusedWhileImporting ??= err;
    return err;
  }
  if (ownDepth >= MAX_CHILD_DEPTH) {
    return new AgentCreationError(
      `${what} refused: child servers are already nested ${ownDepth} deep. A script whose top level ` +
        "spawns a child server without an `if (import.meta.main) { ... }` guard does this: every child " +
        "re-runs it. Put that code under the guard.",
      { code: "FAILED_PRECONDITION" },
    );
  }
  return undefined;
}

/** A child agent server and the IPC link to it. */
export class ChildServer {
  readonly id: string;
  readonly conn: ServerConnection;
  /** Resolves when the child accepts calls; rejects with AgentServerNotAliveError. */
  readonly ready: Promise<void>;
  readonly #proc: Subprocess;
  readonly #transport: IpcTransport;
  #out: ChildOutput;
  #stopping: Promise<void> | undefined;
  #listening: Promise<Address> | undefined;
  #exited = false;

  /**
   * Spawn the child. Throws AgentCreationError (FAILED_PRECONDITION) at once, spawning
   * nothing, inside a child server that is still importing its class's module (a script
   * without the `if (import.meta.main)` guard) or nested `MAX_CHILD_DEPTH` deep.
   */
  constructor(opts: ChildServerOptions = {}) {
    const refusal = spawnRefusal(opts.classes ?? []);
    if (refusal) throw refusal;
    this.id = randomId();
    this.#out = new ChildOutput(opts.agent ?? {});
    const conf: ChildConfig = {
      id: this.id,
      key: randomId(),
      depth: ownDepth + 1,
      modules: opts.modules ?? [],
      capacity: opts.capacity ?? DEFAULTS.capacity,
      maxQueue: opts.maxQueue ?? DEFAULTS.maxQueue,
      maxPoolSize: opts.maxPoolSize ?? DEFAULTS.maxPoolSize,
      maxExpireTime: opts.maxExpireTime ?? DEFAULTS.maxExpireTime,
      maxTimeoutSeconds: opts.maxTimeoutSeconds ?? DEFAULTS.maxTimeoutSeconds,
    };
    if (opts.streamWindow !== undefined) conf.streamWindow = opts.streamWindow;
    if (opts.classes?.length) conf.classes = opts.classes;
    if (opts.maxMessageBytes) conf.maxMessageBytes = opts.maxMessageBytes;
    if (opts.modelConfigs !== undefined) conf.modelConfigs = opts.modelConfigs;
    if (opts.tokens !== undefined) conf.tokens = opts.tokens;

    let proc: Subprocess | undefined;
    let started = false;
    // A spare takes frames as soon as it has its config (it holds them until it serves), so
    // the first create need not wait for its ready: one round trip less on a warm toDist().
    let direct = false;
    const early: IpcFrame[] = [];
    // Keep the parent alive only while it waits for this child. Going idle is acted on 20 ms
    // later, so back-to-back calls do not toggle ref/unref on every call.
    let busy = false;
    let reffed = false;
    let idleCheck: Timer | undefined;
    this.#transport = new IpcTransport(
      {
        // Frames wait until the child is serving: relayed requests can come before its ready.
        send: (f) => {
          if (started || direct) proc!.send(f);
          else early.push(f);
        },
        busy: () => {
          busy = true;
          if (!reffed) {
            reffed = true;
            proc?.ref();
          }
        },
        idle: () => {
          busy = false;
          idleCheck ??= setTimeout(() => {
            idleCheck = undefined;
            if (!busy && reffed) {
              reffed = false;
              proc?.unref();
            }
          }, 20);
        },
      },
      `child:${this.id}`,
    );
    this.conn = new ServerConnection(this.#transport, { host: "localhost", child: this.id });

    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise<void>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    this.ready.catch(() => {});

    const ipc = (msg: IpcFrame): void => {
      if (msg?.k === "ready") {
        started = true;
        clearTimeout(timer);
        for (const f of early.splice(0)) proc!.send(f);
        readyResolve();
        if (conf.modules?.length) warmPool.learn(conf.modules);
      } else if (msg?.k === "fatal" && !started) {
        // The child explains why it cannot serve (a mistake in the class's module); its
        // message beats the exit code and stderr tail the exit would report.
        const f = msg as ChildFatalFrame;
        clearTimeout(timer);
        const code = typeof f.code === "string" && Object.hasOwn(GRPC_STATUS, f.code) ? f.code : "FAILED_PRECONDITION";
        readyReject(new AgentCreationError(String(f.message).slice(0, 4096), { code, host: `child:${this.id}` }));
        proc!.kill("SIGKILL");
      } else if (msg?.k === "q") this.#relay(msg);
      else this.#transport.deliver(msg);
    };
    const onExit = (pid: number, code: number | null, signal: unknown): void => {
      this.#exited = true;
      callbacks.dropLink(`child:${this.id}`);
      runtime.spawned.delete(this.id);
      clearTimeout(timer);
      forgetConnection(this.conn);
      const how = signal ? `signal ${signal}` : `code ${code}`;
      const tail = this.#out.text;
      const err = new AgentServerNotAliveError(
        started
          ? this.#stopping
            ? `child server ${this.id} was stopped`
            : `child server ${this.id} exited (${how})${tail ? `: ${this.#out.lastLines()}` : ""}`
          : `child server failed to start (${how})${tail ? `: ${tail}` : ""}`,
        { host: `child:${this.id}` },
      );
      readyReject(err);
      this.#transport.abort(err);
      if (started && !this.#stopping) {
        const a = opts.agent ?? {};
        const reason = `exited (${how})`;
        logChildEvent("child.crashed", `child server of ${a.cls ?? "?"} ${a.oid ?? "?"} (pid ${pid}) ${reason}`, a, pid, { reason });
      }
      if (started) opts.onExit?.(err.message, !!this.#stopping);
    };

    const json = JSON.stringify(conf);
    // A warm pool's spare (already started, runtime loaded) becomes this child: its config
    // goes over IPC, and its output is tagged with this child's agent from now on. Otherwise spawn one.
    const spare = warmPool.take(conf.modules?.[0]);
    if (spare) {
      this.#out = spare.out;
      this.#out.relabel(opts.agent ?? {});
      proc = spare.adopt({ ipc: (m) => ipc(m as IpcFrame), exit: (code, signal) => onExit(spare.proc.pid, code, signal) });
      proc.send({ k: "conf", json, probe: new Uint8Array(64) } satisfies ChildConfFrame as never);
      direct = true;
    } else {
      // The config travels in the environment (or on stdin when too large for one environment
      // string), not argv: it may hold API keys and the listener token, and any local user can
      // read a command line.
      const small = json.length <= CHILD_CONFIG_ENV_MAX;
      proc = Bun.spawn(selfCommand("child"), {
        env: childEnv(small ? json : "-"),
        stdio: [small ? "ignore" : "pipe", "pipe", "pipe"],
        serialization: "advanced",
        ipc,
        onExit: (p, code, signal) => onExit(p.pid, code, signal),
      });
      if (!small) {
        const stdin = proc.stdin as import("bun").FileSink;
        stdin.write(`${json}\n`);
        void Promise.resolve(stdin.end()).catch(() => {});
      }
      proc.unref();
      this.#out.pid = proc.pid;
      void this.#out.pump(proc.stdout as ReadableStream<Uint8Array>, "stdout");
      void this.#out.pump(proc.stderr as ReadableStream<Uint8Array>, "stderr");
    }
    this.#proc = proc;

    const readyMs = opts.readyTimeoutMs ?? DEFAULTS.readyTimeoutMs;
    const timer = setTimeout(() => {
      readyReject(new AgentServerNotAliveError(`child server did not start within ${readyMs} ms${this.#out.text ? `: ${this.#out.text}` : ""}`, { host: `child:${this.id}` }));
      proc!.kill("SIGKILL");
    }, readyMs);
    // The handshake must not keep the parent alive on its own, but calls waiting on it do.
    this.ready.then(() => {}, () => {});

    registerConnection(this.conn);
    runtime.addSpawned(this.id, this);
  }

  /** The child's process id. */
  get pid(): number {
    return this.#proc.pid;
  }

  /** Post any frame on the IPC channel, unchecked. For tests of hostile input only. */
  rawSend(frame: unknown): void {
    this.#proc.send(frame as IpcFrame);
  }

  /** Has the child process ended? */
  get exited(): boolean {
    return this.#exited;
  }

  /**
   * Open the child's loopback gRPC listener (once) so independent servers on this machine can
   * reach its objects and results; resolves with its address (including its token).
   */
  listen(): Promise<Address> {
    this.#listening ??= this.ready
      .then(() => this.conn.value({ t: "listen" }))
      .then((bytes) => decodeValue(bytes) as Address);
    return this.#listening;
  }

  /** Stop the child (SIGTERM, then SIGKILL after 2 s) and wait until it has exited. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      if (!this.#exited) await stopProcess(this.#proc, 2000);
      runtime.spawned.delete(this.id);
    })();
    return this.#stopping;
  }

  /** Answer a request the child wants relayed to another server (a sibling, or further up). */
  #relay(f: Extract<IpcFrame, { k: "q" }>): void {
    const answer = (r: Response) => {
      try {
        this.#proc.send({ k: "a", i: f.i, r: splitForIpc(r) } satisfies IpcFrame);
      } catch {
        // The child is gone.
      }
    };
    const t = (f.r as { t?: unknown } | undefined)?.t;
    if (!f.to && (t === "cbcall" || t === "cbdrop")) {
      // A callback this process handed to the child (or relays to it), called back; or, with
      // `via`, one a caller handed this server for an isolated agent: forwarded to that caller.
      const r = f.r as CallbackCallRequest | CallbackDropRequest;
      void (r.via === undefined ? answerCallback(r, `child:${this.id}`) : forwardToLink(r)).then(answer);
      return;
    }
    if (!f.to || typeof f.to !== "object") {
      answer({ t: "error", error: { code: "INVALID_ARGUMENT", message: "relay request without a target" } });
      return;
    }
    let conn: ServerConnection;
    try {
      conn = connectionFor(f.to);
    } catch (e) {
      answer({ t: "error", error: errorToWire(e) });
      return;
    }
    conn.send(f.r).then(answer, (e) => answer({ t: "error", error: errorToWire(e) }));
  }
}


/** Child servers still running in this process. */
export function liveChildren(): number {
  return runtime.spawned.size;
}
