/**
 * What `as-server status` (several servers) and the dashboard show: one snapshot per server,
 * from the registry's records or from each server's `getServerInfo` (a servers file), with
 * its agents when asked. A server that does not answer is a row saying so, never a failure
 * of the whole listing.
 */
import type { AgentInfo, ServerInfo } from "../../core/protocol.ts";
import type { ServerRecord } from "../../core/server-record.ts";
import type { ClientTlsOption } from "../../core/tls.ts";

/** One server as shown. */
export interface ServerSnapshot {
  id: string;
  host: string;
  port: number;
  /** Did it answer (or, from the registry alone, is its record live)? */
  alive: boolean;
  error?: string;
  pid?: number;
  version?: string;
  startedAt?: number;
  /** Seconds since start. */
  uptime?: number;
  agents?: number;
  pending?: number;
  capacity?: number;
  calls?: number;
  errors?: number;
  callRate?: number;
  errorRate?: number;
  /** Resident memory, MiB. */
  memMiB?: number;
  restarts?: number;
  /** Its objects, when asked for (`withAgents`). */
  agentList?: AgentInfo[];
}

/** Where the servers are listed. */
export type ServerSource = { registry: string } | { servers: ReadonlyArray<{ host: string; port: number }> };

/** Options of `collect`. */
export interface CollectOptions {
  /** Ask each server for its agents (and fresh figures) as well. */
  withAgents?: boolean;
  /** Token and TLS for the servers. */
  token?: string;
  tls?: ClientTlsOption;
  /** Deadline of each server's answers, ms. Default 2000. */
  timeoutMs?: number;
}

/** Parse a servers file: `host:port` per line (`[v6]:port`), `#` comments and blank lines ignored. */
export function parseServersFile(text: string): Array<{ host: string; port: number }> {
  const out: Array<{ host: string; port: number }> = [];
  for (const raw of text.split("\n")) {
    const l = raw.replace(/#.*/, "").trim();
    if (!l) continue;
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(l) ?? /^([^:\s]+):(\d+)$/.exec(l);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new TypeError(`"${l}" is not host:port`);
    out.push({ host: m[1]!, port: Number(m[2]) });
  }
  return out;
}

/** A snapshot of every server of `source`. */
export async function collect(source: ServerSource, opts: CollectOptions = {}): Promise<ServerSnapshot[]> {
  if ("registry" in source) {
    const { listServers } = await import("../../client/registry.ts");
    const records = await listServers(source.registry);
    const rows = records.map(fromRecord);
    if (opts.withAgents) await Promise.all(rows.map((r) => ask(r, opts)));
    return rows;
  }
  const rows: ServerSnapshot[] = source.servers.map((s) => ({ id: "?", host: s.host, port: s.port, alive: false }));
  await Promise.all(rows.map((r) => ask(r, opts)));
  return rows;
}

function fromRecord(r: ServerRecord): ServerSnapshot {
  return {
    id: r.id,
    host: r.host,
    port: r.port,
    alive: true,
    pid: r.pid,
    version: r.version,
    startedAt: r.startedAt,
    uptime: Math.max(0, Math.round((Date.now() - r.startedAt) / 1000)),
    agents: r.agents,
    pending: r.pending,
    capacity: r.capacity,
    calls: r.calls,
    errors: r.errors,
    callRate: r.callRate,
    errorRate: r.errorRate,
    memMiB: Math.round((r.rss / 1048576) * 10) / 10,
    restarts: r.restarts,
  };
}

/** Fill `row` from the server itself: info, and agents when asked. */
async function ask(row: ServerSnapshot, opts: CollectOptions): Promise<void> {
  const { RpcClient } = await import("../../client/rpc-client.ts");
  const client = new RpcClient(row.host, row.port, { ...(opts.token === undefined ? {} : { token: opts.token }), ...(opts.tls === undefined ? {} : { tls: opts.tls }) });
  const ms = opts.timeoutMs ?? 2000;
  try {
    const [info, agents] = await within(Promise.all([client.getServerInfo(), opts.withAgents ? client.getAgentList() : Promise.resolve(undefined)]), ms);
    Object.assign(row, fromInfo(info));
    if (agents) row.agentList = agents;
    row.alive = true;
    delete row.error;
  } catch (e) {
    row.alive = false;
    row.error = (e as Error).message.split("\n")[0];
  } finally {
    client.close();
  }
}

function fromInfo(i: ServerInfo): Partial<ServerSnapshot> {
  const out: Partial<ServerSnapshot> = { id: i.id, pid: i.pid, agents: i.size, pending: i.pending, capacity: i.capacity, memMiB: i.mem };
  if (i.startedAt !== undefined) {
    out.startedAt = i.startedAt;
    out.uptime = Math.max(0, Math.round((Date.now() - i.startedAt) / 1000));
  }
  for (const k of ["calls", "errors", "callRate", "errorRate", "restarts"] as const) if (i[k] !== undefined) out[k] = i[k];
  return out;
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** `3d 4h`, `2h 5m`, `4m 10s`, `12s`. */
export function formatUptime(s: number | undefined): string {
  if (s === undefined) return "-";
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** The status table: one line per server, columns aligned, no colour. */
export function formatTable(rows: readonly ServerSnapshot[]): string {
  const head = ["ID", "ADDRESS", "UPTIME", "AGENTS", "PENDING", "CALLS/S", "ERRORS", "MEMORY"];
  const n = (v: number | undefined) => (v === undefined ? "-" : String(v));
  const body = rows.map((r) =>
    r.alive
      ? [r.id, `${r.host}:${r.port}`, formatUptime(r.uptime), n(r.agents), n(r.pending), n(r.callRate), n(r.errors), r.memMiB === undefined ? "-" : `${r.memMiB.toFixed(1)} MiB`]
      : [r.id, `${r.host}:${r.port}`, "down", "-", "-", "-", "-", r.error ?? "not reachable"],
  );
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(head), ...body.map(line)].join("\n");
}
