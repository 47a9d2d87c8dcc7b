/**
 * `RpcClient`: the management API of one independent agent server (AgentScope's RpcClient).
 * It shares the process's one connection (gRPC channel) to that server with every proxy.
 * Every answer is checked: one of the wrong kind or shape is a protocol error (INTERNAL).
 */
import type { ServerConnection } from "./connection.ts";
import { connectionFor } from "./connections.ts";
import { agentListOf, answerOf, protocolError, serverInfoOf } from "./answers.ts";
import { AgentCreationError, AgentServerError, AgentServerNotAliveError } from "../core/errors.ts";
import type { AgentInfo, Request, Response, ServerInfo } from "../core/protocol.ts";
import type { RequestOptions } from "../core/transport.ts";
import { MAX_OBJECT_ID, isObjectId, randomId } from "../core/ids.ts";
import { decodeFrom } from "./proxy.ts";
import { encodeWithRefs } from "./ref-encode.ts";
import { clientTls, type ClientTlsOption } from "../core/tls.ts";
import { frameBytes, type Frame } from "../core/split-frame.ts";

/** Options of `RpcClient`. */
export interface RpcClientOptions {
  /** Token the server requires (default: the process's token for that server, or `AS_SERVER_TOKEN`). */
  token?: string;
  /** Largest message each way, bytes (used when this creates the connection). Default 32 MiB. */
  maxMessageBytes?: number;
  /**
   * TLS for this server: `{ ca?, cert?, key? }` (PEM text, Buffers or file paths), `true` (TLS
   * against `AS_TLS_CA` or the system roots) or `false` (plaintext). Default: the process's
   * setting for that server, else `AS_TLS_CA`, else plaintext.
   */
  tls?: ClientTlsOption;
  /** Where `downloadFile` saves files. Default `<os tmpdir>/actorscope-downloads`. */
  downloadDir?: string;
}

/**
 * Manage one agent server: liveness, objects, info, model configs, downloads.
 *
 * Once closed (`close()`, or the end of its `await using` scope) every call rejects with
 * FAILED_PRECONDITION, saying the client was closed: the server may be perfectly alive,
 * so it is never reported as UNAVAILABLE.
 *
 * @example
 * const client = new RpcClient("localhost", 12310);
 * if (await client.isAlive()) console.log(await client.getServerInfo());
 *
 * @example
 * await using client = new RpcClient(host, port, { token });
 * await client.createAgent({ className: "WebAgent", args: ["bob"] }, "bob");
 * // closed here
 */
export class RpcClient implements AsyncDisposable {
  readonly host: string;
  readonly port: number;
  readonly #connOpts: { token?: string; maxMessageBytes?: number; tls?: ClientTlsOption } = {};
  #downloadDir: string | undefined;
  #closed = false;

  constructor(host: string, port: number, opts: RpcClientOptions = {}) {
    if (typeof host !== "string" || !host) throw new TypeError("host must be a non-empty string");
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`port must be an integer in 1..65535, not ${port}`);
    this.host = host;
    this.port = port;
    if (opts.token !== undefined) this.#connOpts.token = opts.token;
    if (opts.maxMessageBytes !== undefined) this.#connOpts.maxMessageBytes = opts.maxMessageBytes;
    // Read (files included) once, here: a bad certificate path fails the constructor.
    if (opts.tls !== undefined) this.#connOpts.tls = clientTls(opts.tls) ?? false;
    // Resolved on first download: node:os / node:path stay out of the package root's import cost.
    this.#downloadDir = opts.downloadDir;
  }

  /**
   * True if the server answers within 5 s; false if it is down. A wrong token still throws
   * UNAUTHENTICATED, and an answer that is not an acknowledgement a protocol error (INTERNAL).
   */
  async isAlive(): Promise<boolean> {
    const conn = this.#live();
    const req: Request = { t: "alive" };
    let res: Response;
    try {
      res = await conn.send(req, { timeoutMs: 5000 });
    } catch (e) {
      if (e instanceof AgentServerError && e.code === "UNAUTHENTICATED") throw e;
      return false;
    }
    if (res.t === "ok") return true;
    if (res.t === "error") return false;
    throw protocolError(`answered ${res.t} to alive (expected ok)`, conn.where);
  }

  /** Ask the server to shut down. True once it acknowledged; false if it was not reachable. */
  async stop(): Promise<boolean> {
    try {
      await this.#ask({ t: "stop" }, "ok", { timeoutMs: 5000 });
      return true;
    } catch (e) {
      if (e instanceof AgentServerNotAliveError) return false;
      throw e;
    }
  }

  /**
   * Create an object of a class the server registered, with id `agentId` (any 1–128
   * characters of `[A-Za-z0-9._:-]`, e.g. `"alice"`; 32 random hex when omitted). Resolves
   * true; rejects with AgentCreationError (unknown class, bad arguments,
   * constructor threw, id taken) or the transport's error (UNAVAILABLE, UNAUTHENTICATED).
   */
  async createAgent(config: { className: string; args?: unknown[] }, agentId?: string): Promise<boolean> {
    const where = { host: this.host, port: this.port };
    if (agentId !== undefined && !isObjectId(agentId)) {
      throw new AgentCreationError(`agent id must be 1-${MAX_OBJECT_ID} characters of A-Z a-z 0-9 . _ : -, not ${JSON.stringify(agentId)?.slice(0, 140)}`, { ...where, code: "INVALID_ARGUMENT" });
    }
    let args: Uint8Array;
    try {
      args = encodeWithRefs(config.args ?? []);
    } catch (e) {
      throw new AgentCreationError(`cannot send constructor arguments of ${config.className}: ${(e as Error).message}`, { ...where, code: e instanceof AgentServerError ? e.code : "INVALID_ARGUMENT", cause: e });
    }
    await this.#live().create(agentId ?? randomId(), config.className, args);
    return true;
  }

  /** Remove one object. True (also when it did not exist: deleting is idempotent). */
  async deleteAgent(agentId: string): Promise<boolean> {
    await this.#ask({ t: "delete", oid: agentId }, "ok");
    return true;
  }

  /** Remove every object on the server. */
  async deleteAllAgents(): Promise<boolean> {
    await this.#ask({ t: "deleteAll" }, "ok");
    return true;
  }

  /**
   * The objects the server holds: id, class, and the agent's name, prompt and model when it
   * has them; on an `--isolate` server also `restarts`, `lastRestartReason` and `dead`.
   */
  async getAgentList(): Promise<AgentInfo[]> {
    return agentListOf(decodeFrom(await this.#value({ t: "list" })), this.#where());
  }

  /** Server facts (pid, id, cpu, mem, size, capacity, pending), answered at once. */
  async getServerInfo(): Promise<ServerInfo> {
    return serverInfoOf(decodeFrom(await this.#value({ t: "info" })), this.#where());
  }

  /** An agent's memory (its messages), or null when it has none. NOT_FOUND for an unknown id. */
  async getAgentMemory(agentId: string): Promise<unknown> {
    return decodeFrom(await this.#value({ t: "memory", oid: agentId }));
  }

  /** Add or replace model configs on the server (one config or a list; never a path). */
  async setModelConfigs(configs: unknown): Promise<boolean> {
    await this.#ask({ t: "setModelConfigs", configs: encodeWithRefs(configs) }, "ok");
    return true;
  }

  /**
   * Download a file from under the server's file dir; saves it under the download dir as
   * `<8 hex>_<basename>` and returns that local path. PERMISSION_DENIED outside the file dir.
   */
  async downloadFile(path: string): Promise<string> {
    const bytes = await this.#value({ t: "download", path });
    const [{ mkdir }, { tmpdir }, { basename, join }] = await Promise.all([import("node:fs/promises"), import("node:os"), import("node:path")]);
    const dir = (this.#downloadDir ??= join(tmpdir(), "actorscope-downloads"));
    await mkdir(dir, { recursive: true });
    // Same server and path → same local name: a repeated download replaces the earlier copy.
    const tag = new Bun.CryptoHasher("sha256").update(`${this.host}:${this.port}:${path}`).digest("hex").slice(0, 8);
    const name = basename(path).replace(/[^\w.-]/g, "_") || "download";
    const local = join(dir, `${tag}_${name}`);
    await Bun.write(local, frameBytes(bytes));
    return local;
  }

  /**
   * Release this client: later calls on it reject with FAILED_PRECONDITION ("this RpcClient
   * was closed"). Calls already under way finish. The connection it used is shared with
   * every proxy to the same server and stays open for them; an idle channel does not keep
   * the process alive. Idempotent.
   */
  close(): void {
    this.#closed = true;
  }

  /**
   * `close()`, for `await using`.
   *
   * @example
   * {
   *   await using client = new RpcClient("localhost", 12310);
   *   console.log(await client.getAgentList());
   * } // client closed: its calls now fail FAILED_PRECONDITION
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  /** The process's connection to the server (a fresh one if the last one was torn down). */
  #live(): ServerConnection {
    if (this.#closed) {
      // The client's own state, not the server's: FAILED_PRECONDITION (not UNAVAILABLE — the
      // server may be fine; not CANCELLED — no call was under way to be cancelled).
      throw new AgentServerError("this RpcClient was closed (close() or the end of its `await using` scope); make a new RpcClient", { ...this.#where(), code: "FAILED_PRECONDITION" });
    }
    return connectionFor({ host: this.host, port: this.port }, this.#connOpts);
  }

  #where(): { host: string; port: number } {
    return { host: this.host, port: this.port };
  }

  /** Send `req`; its answer must be of kind `want` (an error answer rejects typed, any other kind is INTERNAL). */
  async #ask<K extends Response["t"]>(req: Request, want: K, opts?: RequestOptions): Promise<Extract<Response, { t: K }>> {
    const conn = this.#live();
    return answerOf(req, await conn.send(req, opts), want, conn.where);
  }

  /** The value frame `req` must be answered with. */
  async #value(req: Request): Promise<Frame> {
    return (await this.#ask(req, "value")).value;
  }
}
