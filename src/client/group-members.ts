/**
 * The members of a `ServerGroup` and what the group knows of their health: how many objects
 * it placed on each, each one's last load figures (from `getServerInfo` probes), and which
 * ones are skipped for a while after failing.
 */
import { serverInfoOf } from "./answers.ts";
import type { ServerConnection } from "./connection.ts";
import { connectionFor, type GrpcConnectOptions } from "./connections.ts";
import type { DistConf } from "./distributable.ts";
import type { GroupServer, GroupServerStatus, GroupSettings } from "./group-options.ts";
import { AgentServerError, AgentServerNotAliveError } from "../core/errors.ts";
import { decodeFrom } from "./proxy.ts";

/** One server of a group, as the group sees it. */
export interface Member {
  readonly addr: GroupServer;
  /** `host:port`, as errors and `status()` name it. */
  readonly key: string;
  /** Objects this group placed there (placements under way included). */
  placed: number;
  /** `placed` when the last load probe started: placements after it are not in `info`. */
  placedAtProbe: number;
  info?: { size: number; pending: number; at: number };
  /** `Date.now()` until which the member is skipped; 0 when alive. */
  deadUntil: number;
  error?: string;
}

/** The members of a group, their connections, health and load probes. */
export class GroupMembers {
  readonly list: readonly Member[];
  readonly #settings: GroupSettings;
  #probing: Promise<void> | undefined;

  constructor(servers: readonly GroupServer[], settings: GroupSettings) {
    this.list = servers.map((addr) => ({ addr, key: `${addr.host}:${addr.port}`, placed: 0, placedAtProbe: 0, deadUntil: 0 }));
    this.#settings = settings;
  }

  /** The probe under way, if one is. */
  get probing(): Promise<void> | undefined {
    return this.#probing;
  }

  /** Has no member load figures yet (least-loaded must probe before its first choice)? */
  get unprobed(): boolean {
    return this.list.every((m) => !m.info);
  }

  /** What the group knows about each server. */
  status(): GroupServerStatus[] {
    const now = Date.now();
    return this.list.map((m) => {
      const s: GroupServerStatus = { host: m.addr.host, port: m.addr.port, alive: m.deadUntil <= now, placed: m.placed };
      if (m.info) Object.assign(s, { size: m.info.size, pending: m.info.pending, infoAt: m.info.at });
      if (m.error !== undefined && m.deadUntil > now) s.error = m.error;
      return s;
    });
  }

  /** The process's connection to a member, with its token and TLS (own, else the group's, else the DistConf's). */
  connection(m: Member, conf: DistConf | undefined): ServerConnection {
    const opts: GrpcConnectOptions = {};
    const token = m.addr.token ?? this.#settings.token ?? conf?.token;
    const tls = m.addr.tls ?? this.#settings.tls ?? conf?.tls;
    if (token !== undefined) opts.token = token;
    if (tls !== undefined) opts.tls = tls;
    return connectionFor({ host: m.addr.host, port: m.addr.port }, opts);
  }

  /** Skip `m` for `deadRetryMs`, remembering why; its load figures are forgotten. */
  markDead(m: Member, why: string): void {
    m.deadUntil = Date.now() + this.#settings.deadRetryMs;
    m.error = why;
    m.info = undefined;
  }

  /** Do the load figures of some live member need reading again? */
  stale(now: number): boolean {
    return this.list.some((m) => m.deadUntil <= now && (!m.info || now - m.info.at > this.#settings.loadMaxAgeMs));
  }

  /** The error for "no server to use": each member and why it is out. */
  noneAlive(what: string, failures: readonly string[] = []): AgentServerNotAliveError {
    const why = failures.length ? failures.join("; ") : this.list.map((m) => `${m.key} (${m.error ?? "marked dead"})`).join("; ");
    return new AgentServerNotAliveError(`${what}: ${why}`, { host: this.list[0]!.addr.host, port: this.list[0]!.addr.port });
  }

  /** One probe of every server at a time; concurrent callers share it. */
  probe(): Promise<void> {
    this.#probing ??= this.probeAll().finally(() => {
      this.#probing = undefined;
    });
    return this.#probing;
  }

  /**
   * Ask each member for its load (`getServerInfo`, answered at once). One that answers is
   * alive; one that does not answer within `probeTimeoutMs` is marked dead. Members marked
   * dead are left alone until their retry time, unless `includeDead`.
   */
  async probeAll(includeDead = false): Promise<void> {
    const now = Date.now();
    await Promise.all(
      this.list.map(async (m) => {
        if (m.deadUntil > now && !includeDead) return;
        const startPlaced = m.placed;
        try {
          const conn = this.connection(m, undefined);
          const info = serverInfoOf(decodeFrom(await conn.value({ t: "info" }, { timeoutMs: this.#settings.probeTimeoutMs })), conn.where);
          m.info = { size: info.size, pending: info.pending, at: Date.now() };
          m.placedAtProbe = startPlaced;
          m.deadUntil = 0;
          m.error = undefined;
        } catch (e) {
          if (unreachable(e)) this.markDead(m, `${(e as AgentServerError).code}: ${(e as Error).message}`);
          else m.error = (e as Error).message;
        }
      }),
    );
  }
}

/** Is `e` a server that cannot be reached (as opposed to one that answered no)? */
export function unreachable(e: unknown): boolean {
  const code = e instanceof AgentServerError ? e.code : undefined;
  return code === "UNAVAILABLE" || code === "DEADLINE_EXCEEDED";
}
