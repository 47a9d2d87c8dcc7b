/**
 * `ServerGroup.fromRegistry(url)`: a group whose servers are those registered in a registry
 * (Redis), followed live. A server that registers gets placements from then on; one that
 * leaves (clean shutdown: at once; kill -9: when its record expires, within about 5 s)
 * gets none. Until the registry notices a death, the group's own failover already skips a
 * server that does not answer a creation.
 *
 * Built on `ServerGroup`'s public API only: the registry group holds a plain `ServerGroup`
 * over the servers registered now and replaces it when the set changes; objects placed
 * earlier keep their server (placement counts restart with each new set).
 */
import type { ClassEntry } from "../core/registry.ts";
import { AgentServerNotAliveError } from "../core/errors.ts";
import type { DistConf } from "./distributable.ts";
import type { GroupServer, GroupServerStatus, ServerGroupOptions } from "./group-options.ts";
import { ServerGroup } from "./placement.ts";
import type { Remote } from "./proxy-state.ts";
import { watchRegistry, type RegistryWatch, type ServerRecord } from "./registry.ts";

/** Options of `ServerGroup.fromRegistry`: a group's, plus how often to re-read the registry. */
export interface RegistryGroupOptions extends ServerGroupOptions {
  /** Re-read the registry this often besides join/leave announcements, ms. Default 1000. */
  pollMs?: number;
}

/** Stands in for `ServerGroup`'s list while nothing is registered (never dialled). */
const NOBODY: GroupServer = { host: "registry.invalid", port: 1 };

/** A `ServerGroup` that follows a registry. */
export class RegistryGroup extends ServerGroup {
  readonly #url: string;
  readonly #opts: ServerGroupOptions;
  #inner: ServerGroup | undefined;
  /** Every inner group that placed something (disposal waits for their placements). */
  readonly #used = new Set<ServerGroup>();
  #watch: RegistryWatch | undefined;
  #closedHere = false;

  private constructor(url: string, opts: ServerGroupOptions, first: readonly ServerRecord[]) {
    super(first.length ? first.map(toServer) : [NOBODY], opts);
    this.#url = url;
    this.#opts = opts;
    this.#follow(first);
    // `servers` is the registered set of now, not the list given at construction.
    Object.defineProperty(this, "servers", { get: () => this.#inner?.servers ?? [], enumerable: true, configurable: true });
  }

  /** Watch `url` and build the group from what is registered now. */
  static async open(url: string, opts: RegistryGroupOptions = {}): Promise<RegistryGroup> {
    const { pollMs, ...groupOpts } = opts;
    let group: RegistryGroup | undefined;
    const watch = await watchRegistry(url, (list) => group && group.#follow(list), pollMs === undefined ? {} : { pollMs });
    group = new RegistryGroup(url, groupOpts, watch.servers);
    group.#watch = watch;
    return group;
  }

  /** The registry this group follows (its password masked is what errors show). */
  get registry(): string {
    return this.#url;
  }

  #follow(list: readonly ServerRecord[]): void {
    this.#inner = list.length ? new ServerGroup(list.map(toServer), this.#opts) : undefined;
  }

  #current(): ServerGroup {
    if (this.#inner) return this.#inner;
    throw new AgentServerNotAliveError("no agent server is registered in the registry yet", { host: NOBODY.host, port: NOBODY.port });
  }

  override get closed(): boolean {
    return this.#closedHere;
  }

  override status(): GroupServerStatus[] {
    return this.#inner?.status() ?? [];
  }

  override async refresh(): Promise<GroupServerStatus[]> {
    await this.#watch?.refresh();
    return this.#inner ? this.#inner.refresh() : [];
  }

  override pick(count = 1): Promise<GroupServer> {
    if (this.#closedHere) return super.pick(count);
    try {
      const g = this.#current();
      this.#used.add(g);
      return g.pick(count);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** @internal */
  override place<T>(entry: ClassEntry, args: unknown[], oid: string, conf: DistConf): Remote<T> {
    if (this.#closedHere) return super.place(entry, args, oid, conf);
    const g = this.#current();
    this.#used.add(g);
    return g.place<T>(entry, args, oid, conf);
  }

  /** Place nothing more and stop following the registry. Idempotent. */
  override close(): void {
    this.#closedHere = true;
    super.close();
    this.#watch?.close();
    for (const g of this.#used) g.close();
  }

  override async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await Promise.all([...this.#used].map((g) => g[Symbol.asyncDispose]()));
  }
}

function toServer(r: ServerRecord): GroupServer {
  return { host: r.host, port: r.port };
}
