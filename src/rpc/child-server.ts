/**
 * Child mode, parent side: spawn a child agent server with `Bun.spawn` and talk to it over
 * Bun IPC. The child imports the module that defines the class, answers a ready handshake
 * within a time limit, dies with its parent, and its exit fails every pending call at once.
 */
import type { Subprocess } from "bun";
import { fileURLToPath } from "node:url";
import { CHILD_CONFIG_ENV, type ChildConfig } from "./child-config.ts";
import { ServerConnection } from "./connection.ts";
import { connectionFor, forgetConnection, registerConnection } from "./connections.ts";
import { AgentServerNotAliveError, errorToWire } from "./errors.ts";
import type { Request, Response } from "./protocol.ts";
import { decodeValue } from "./codec.ts";
import { setListenHook } from "./refs.ts";
import type { Address } from "./transport.ts";
import { randomId } from "./protocol.ts";
import { IpcTransport, type IpcFrame } from "./transports/ipc.ts";

/** Options of a child server. */
export interface ChildServerOptions {
  /** Modules the child imports before serving (where the class is defined). */
  modules?: string[];
  capacity?: number;
  maxQueue?: number;
  maxPoolSize?: number;
  maxExpireTime?: number;
  maxTimeoutSeconds?: number;
  maxMessageBytes?: number;
  /** How long the child may take to start, ms. Default 15 000. */
  readyTimeoutMs?: number;
  modelConfigs?: unknown;
}

const TAIL_BYTES = 4096;
const live = new Set<ChildServer>();
const byId = new Map<string, ChildServer>();
let upstreamListen: ((child: string) => Promise<Address>) | undefined;

/** In a child process: how to ask a sibling (through the parent) to open its listener. */
export function setUpstreamListen(f: typeof upstreamListen): void {
  upstreamListen = f;
}

setListenHook((child) => {
  const c = byId.get(child);
  if (c) return c.listen();
  if (upstreamListen) return upstreamListen(child);
  return Promise.reject(new AgentServerNotAliveError(`child server ${child} is not reachable from this process`, { host: `child:${child}` }));
});
let exitHookInstalled = false;

/** The command that starts a child server: the compiled binary itself, or bun + the entry file. */
export function childCommand(): string[] {
  const compiled = import.meta.path.startsWith("/$bunfs/") || import.meta.url.startsWith("file:///$bunfs/");
  if (compiled) return [process.execPath, "__child"];
  return [process.execPath, fileURLToPath(new URL("../server/child/main.ts", import.meta.url))];
}

/** A child agent server and the IPC link to it. */
export class ChildServer {
  readonly id: string;
  readonly conn: ServerConnection;
  /** Resolves when the child accepts calls; rejects with AgentServerNotAliveError. */
  readonly ready: Promise<void>;
  readonly #proc: Subprocess;
  readonly #transport: IpcTransport;
  #tail = "";
  #stopping: Promise<void> | undefined;
  #listening: Promise<Address> | undefined;
  #exited = false;

  constructor(opts: ChildServerOptions = {}) {
    this.id = randomId();
    const conf: ChildConfig = {
      id: this.id,
      key: randomId(),
      modules: opts.modules ?? [],
      capacity: opts.capacity ?? 32,
      maxQueue: opts.maxQueue ?? 65_536,
      maxPoolSize: opts.maxPoolSize ?? 8192,
      maxExpireTime: opts.maxExpireTime ?? 7200,
      maxTimeoutSeconds: opts.maxTimeoutSeconds ?? 5,
    };
    if (opts.maxMessageBytes) conf.maxMessageBytes = opts.maxMessageBytes;
    if (opts.modelConfigs !== undefined) conf.modelConfigs = opts.modelConfigs;

    let proc: Subprocess | undefined;
    let started = false;
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
          if (started) proc!.send(f);
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

    // The config travels in the environment, not argv: it may hold API keys and the listener
    // token, and any local user can read a command line.
    proc = Bun.spawn(childCommand(), {
      env: { ...process.env, [CHILD_CONFIG_ENV]: JSON.stringify(conf) },
      stdio: ["ignore", "inherit", "pipe"],
      serialization: "advanced",
      ipc: (msg: IpcFrame) => {
        if (msg?.k === "ready") {
          started = true;
          clearTimeout(timer);
          for (const f of early.splice(0)) proc!.send(f);
          readyResolve();
        } else if (msg?.k === "q") this.#relay(msg);
        else this.#transport.deliver(msg);
      },
      onExit: (_p, code, signal) => {
        this.#exited = true;
        live.delete(this);
        byId.delete(this.id);
        clearTimeout(timer);
        forgetConnection(this.conn);
        const how = signal ? `signal ${signal}` : `code ${code}`;
        const tail = this.#tail.trim();
        const err = new AgentServerNotAliveError(
          started
            ? this.#stopping
              ? `child server ${this.id} was stopped`
              : `child server ${this.id} exited (${how})${tail ? `: ${lastLines(tail)}` : ""}`
            : `child server failed to start (${how})${tail ? `: ${tail}` : ""}`,
          { host: `child:${this.id}` },
        );
        readyReject(err);
        this.#transport.abort(err);
      },
    });
    this.#proc = proc;
    proc.unref();
    this.#pumpStderr(proc.stderr as ReadableStream<Uint8Array>);

    const readyMs = opts.readyTimeoutMs ?? 15_000;
    const timer = setTimeout(() => {
      readyReject(new AgentServerNotAliveError(`child server did not start within ${readyMs} ms${this.#tail ? `: ${this.#tail.trim()}` : ""}`, { host: `child:${this.id}` }));
      proc!.kill("SIGKILL");
    }, readyMs);
    // The handshake must not keep the parent alive on its own, but calls waiting on it do.
    this.ready.then(() => {}, () => {});

    registerConnection(this.conn);
    live.add(this);
    byId.set(this.id, this);
    installExitHook();
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
      .then(() => this.conn.value({ t: "listen" } as unknown as Request))
      .then((bytes) => decodeValue(bytes) as Address);
    return this.#listening;
  }

  /** Stop the child (SIGTERM, then SIGKILL after 2 s) and wait until it has exited. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      if (!this.#exited) {
        this.#proc.kill("SIGTERM");
        const t = setTimeout(() => this.#proc.kill("SIGKILL"), 2000);
        await this.#proc.exited;
        clearTimeout(t);
      }
      live.delete(this);
    })();
    return this.#stopping;
  }

  /** Answer a request the child wants relayed to another server (a sibling, or further up). */
  #relay(f: Extract<IpcFrame, { k: "q" }>): void {
    const answer = (r: Response) => {
      try {
        this.#proc.send({ k: "a", i: f.i, r } satisfies IpcFrame);
      } catch {
        // The child is gone.
      }
    };
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

  async #pumpStderr(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    try {
      for await (const chunk of stream) {
        process.stderr.write(chunk);
        this.#tail = (this.#tail + dec.decode(chunk, { stream: true })).slice(-TAIL_BYTES);
      }
    } catch {
      // The child is gone; exit handling reports it.
    }
  }
}

function lastLines(s: string): string {
  return s.split("\n").slice(-5).join("\n");
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Children also exit on IPC disconnect; this makes it immediate on a normal parent exit.
  process.on("exit", () => {
    for (const c of live) {
      try {
        c.stop();
      } catch {
        // Already gone.
      }
    }
  });
}

/** Child servers still running in this process. */
export function liveChildren(): number {
  return live.size;
}
