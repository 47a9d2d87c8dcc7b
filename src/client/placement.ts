/**
 * Placement: spread objects over a list of independent agent servers without arithmetic in
 * user code. A `ServerGroup` is given to `toDist` instead of one `{ host, port }`; each
 * creation goes to the server its strategy picks (`placement-strategy.ts`): `"round-robin"`
 * (default) or `"least-loaded"`.
 *
 * A server that does not answer a creation (UNAVAILABLE, or no answer within
 * `createTimeoutMs`) is marked dead for `deadRetryMs` and the object is created on the next
 * choice instead; only when every server of the group failed does the creation fail, with an
 * `AgentServerNotAliveError` that names each server and why. The proxy is returned at once,
 * as with any `toDist`; calls made before the object exists wait for it and go to the server
 * that took it (`place-object.ts`, `transports/pending.ts`).
 *
 * The group's parts: `group-options.ts` (servers and options), `group-members.ts` (health,
 * load probes), `placement-strategy.ts` (choices), `place-object.ts` (creating one object).
 */
import type { DistConf } from "./distributable.ts";
import { GroupMembers } from "./group-members.ts";
import { groupConfig, parseServersList, type GroupServer, type GroupServerStatus, type GroupSettings, type PlacementStrategy, type ServerGroupOptions } from "./group-options.ts";
import { placeObject, type PlacementContext } from "./place-object.ts";
import { Picker } from "./placement-strategy.ts";
import type { Remote } from "./proxy-state.ts";
import { AgentCreationError, AgentServerError } from "../core/errors.ts";
import type { ClassEntry } from "../core/registry.ts";

export type { GroupServer, GroupServerStatus, PlacementStrategy, ServerGroupOptions } from "./group-options.ts";

/**
 * A list of agent servers that `toDist` spreads objects over.
 *
 * What a group owns, and so what closing it (`close()`, `await using`) ends, is its own work:
 * the placements and load probes it has under way. It does not own the connections to its
 * servers (the process shares one per server and credentials with every proxy and
 * `RpcClient`, and the proxies it placed keep using them), nor the objects it placed (each
 * proxy owns its object: `await using` a proxy deletes it).
 *
 * @example
 * const group = new ServerGroup([{ host: "10.0.0.2", port: 12310 }, { host: "10.0.0.3", port: 12310 }],
 *   { strategy: "least-loaded", token: process.env.AS_SERVER_TOKEN });
 * const agents = names.map((n) => WebAgent.toDist(group, n)); // or new WebAgent(n).toDist(group)
 * console.log(group.status()); // how many objects went where
 *
 * @example
 * // A group for one job: placements still under way finish before the scope ends.
 * await using group = await ServerGroup.fromFile("servers.txt", { token });
 * await using agent = WebAgent.toDist(group, "bob");
 * await agent.reply(msg);
 */
export class ServerGroup implements AsyncDisposable {
  /** The servers, in the order given. */
  readonly servers: readonly GroupServer[];
  readonly strategy: PlacementStrategy;
  readonly #members: GroupMembers;
  readonly #picker: Picker;
  readonly #settings: GroupSettings;
  /** Placements under way (settled ones leave the set). */
  readonly #placing = new Set<Promise<void>>();
  #closed = false;

  constructor(servers: ReadonlyArray<GroupServer | string>, opts: ServerGroupOptions = {}) {
    const c = groupConfig(servers, opts);
    this.servers = c.servers;
    this.strategy = c.strategy;
    this.#settings = c.settings;
    this.#members = new GroupMembers(c.servers, c.settings);
    this.#picker = new Picker(this.#members, c.strategy);
  }

  /**
   * A group from a servers list: one `host:port` per line (`[v6addr]:port` for IPv6), blank
   * lines and `#` comments ignored — the file `examples/deploy/launch-workers.sh` writes.
   */
  static parse(text: string, opts?: ServerGroupOptions): ServerGroup {
    return new ServerGroup(parseServersList(text), opts);
  }

  /** `ServerGroup.parse` of a file. */
  static async fromFile(path: string, opts?: ServerGroupOptions): Promise<ServerGroup> {
    return ServerGroup.parse(await Bun.file(path).text(), opts);
  }

  /**
   * A group of the servers registered in a registry (a Redis URL, see the launcher's
   * `registry`), following joins and leaves live; `close()` stops following. ioredis is
   * loaded only here. Defined in registry-group.ts.
   *
   * @example
   * await using group = await ServerGroup.fromRegistry("redis://10.0.0.9:6379", { token });
   * const agent = WebAgent.toDist(group, "bob");
   */
  static async fromRegistry(registryUrl: string, opts?: ServerGroupOptions & { pollMs?: number }): Promise<ServerGroup> {
    const { RegistryGroup } = await import("./registry-group.ts");
    return RegistryGroup.open(registryUrl, opts);
  }

  /** True once `close()` (or disposal) was called: the group places nothing more. */
  get closed(): boolean {
    return this.#closed;
  }

  /** What the group knows about each server: liveness, placements, last load figures. */
  status(): GroupServerStatus[] {
    return this.#members.status();
  }

  /**
   * Ask every server for its load now (`getServerInfo`, answered at once by the server),
   * those marked dead included: one that answers is alive again, one that does not answer
   * within `probeTimeoutMs` is marked dead. Resolves with `status()`. FAILED_PRECONDITION
   * once the group is closed.
   */
  async refresh(): Promise<GroupServerStatus[]> {
    this.#checkOpen();
    await (this.#members.probing ?? Promise.resolve());
    await this.#members.probeAll(true);
    return this.status();
  }

  /**
   * The server the strategy picks for the next `count` objects (counted as placed there),
   * for code that places objects in bulk itself (e.g. one request creating many). Skips dead
   * servers; rejects with AgentServerNotAliveError when every server is marked dead, and with
   * FAILED_PRECONDITION once the group is closed.
   */
  async pick(count = 1): Promise<GroupServer> {
    if (!Number.isInteger(count) || count < 1) throw new TypeError("ServerGroup.pick(count): count must be a positive integer");
    this.#checkOpen();
    const i = await this.#picker.pick(new Set());
    if (i === undefined) throw this.#members.noneAlive("no server of the group is alive");
    this.#members.list[i]!.placed += count - 1;
    return this.servers[i]!;
  }

  /**
   * Create `entry` with `args` and id `oid` on the server the strategy picks; returns its
   * proxy at once. Called by `toDist` for a group target. Throws AgentCreationError
   * (FAILED_PRECONDITION) at once when the group is closed.
   * @internal
   */
  place<T>(entry: ClassEntry, args: unknown[], oid: string, conf: DistConf): Remote<T> {
    if (this.#closed) throw new AgentCreationError(`cannot place ${entry.name} ${oid}: ${CLOSED}`, { ...this.#where(), code: "FAILED_PRECONDITION" });
    const ctx: PlacementContext = { members: this.#members, picker: this.#picker, settings: this.#settings };
    const { proxy, placed } = placeObject<T>(ctx, entry, args, oid, conf);
    const done = placed.then(
      () => {},
      () => {},
    );
    this.#placing.add(done);
    void done.then(() => this.#placing.delete(done));
    return proxy;
  }

  /**
   * Place nothing more: `toDist` on this group throws, `pick()` and `refresh()` reject
   * (FAILED_PRECONDITION). Placements and probes under way go on; `[Symbol.asyncDispose]`
   * waits for them. Proxies already returned keep working. Idempotent.
   */
  close(): void {
    this.#closed = true;
  }

  /**
   * `close()`, then wait until the placements and load probes under way have settled (each
   * bounded by `createTimeoutMs` per server tried, or `probeTimeoutMs`), so nothing of the
   * group is left running: no timer of it keeps the process alive.
   *
   * @example
   * {
   *   await using group = new ServerGroup(["10.0.0.2:12310", "10.0.0.3:12310"], { token });
   *   agents = names.map((n) => WebAgent.toDist(group, n));
   * } // every agent is placed (or failed) here; the agents themselves live on
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    // A placement may start a probe and a probe may end after the last placement: loop
    // until neither is under way.
    for (;;) {
      const running: Promise<unknown>[] = [...this.#placing];
      const probe = this.#members.probing;
      if (probe) running.push(probe.catch(() => {}));
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new AgentServerError(CLOSED, { ...this.#where(), code: "FAILED_PRECONDITION" });
  }

  /** Host/port for errors about the group as a whole: its first server. */
  #where(): { host: string; port: number } {
    return { host: this.servers[0]!.host, port: this.servers[0]!.port };
  }
}

const CLOSED = "this ServerGroup was closed (close() or the end of its `await using` scope); make a new ServerGroup to place more";
