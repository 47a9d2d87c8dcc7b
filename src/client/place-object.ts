/**
 * Placing one object on a group: the proxy is returned at once, over a `PendingConnection`;
 * the object is created on the member the strategy picks, and on the next one if that member
 * does not answer (UNAVAILABLE, or nothing within `createTimeoutMs`), until one takes it or
 * none is left. Calls made through the proxy meanwhile wait in the pending connection and go
 * to the member that took the object.
 */
import type { ServerConnection } from "./connection.ts";
import type { DistConf } from "./distributable.ts";
import { unreachable, type GroupMembers } from "./group-members.ts";
import type { GroupSettings } from "./group-options.ts";
import type { Picker } from "./placement-strategy.ts";
import { makeRemote } from "./proxy.ts";
import { type Remote, type RemoteState } from "./proxy-state.ts";
import { encodeArgsWhenReady } from "./ref-encode.ts";
import { DEFAULT_RETRY } from "./retry.ts";
import { PendingConnection } from "./transports/pending.ts";
import { DEFAULTS } from "../core/defaults.ts";
import { AgentCreationError, DeadlineExceededError, type AgentServerError } from "../core/errors.ts";
import { classInfo, type ClassEntry } from "../core/registry.ts";
import { createAt } from "./supervisor.ts";
import { placeSupervised } from "./supervised-placement.ts";

/** What placing needs from its group. */
export interface PlacementContext {
  readonly members: GroupMembers;
  readonly picker: Picker;
  readonly settings: GroupSettings;
}

/**
 * Create `entry` with `args` and id `oid` on a member of the group; returns its proxy at once
 * and, as `placed`, the placement itself (settles when the object exists or no member took it).
 */
export function placeObject<T>(g: PlacementContext, entry: ClassEntry, args: unknown[], oid: string, conf: DistConf): { proxy: Remote<T>; placed: Promise<void> } {
  const payload = encodeArgsWhenReady(args, "net").catch((e) => {
    throw new AgentCreationError(`cannot send constructor arguments of ${entry.name}: ${(e as Error).message}`, { code: "INVALID_ARGUMENT", cause: e });
  });
  // Chosen now when the strategy can (the proxy names its server at once); least-loaded with
  // no figures yet chooses after the first probe.
  if (g.settings.restart) return placeSupervised<T>(g, entry, oid, payload, conf, g.settings.restart, createOnMember);
  const first = g.picker.mustProbe ? undefined : g.picker.pickNow(new Set());
  const tentative = g.members.list[first ?? 0]!.addr;
  const conn = new PendingConnection({ host: tentative.host, port: tentative.port });
  const st: RemoteState = {
    oid,
    conn,
    ready: Promise.resolve(),
    info: classInfo(entry.cls),
    created: true,
    retry: conf.retryStrategy ?? DEFAULT_RETRY,
    maxWaitMs: (conf.maxTimeoutSeconds ?? DEFAULTS.maxTimeoutSeconds) * 1000,
    host: tentative.host,
    port: tentative.port,
  };
  st.ready = createOnMember(g, entry.name, oid, payload, first, conf, st).then(
    (chosen) => conn.place(chosen),
    (e: unknown) => {
      conn.fail(e);
      throw e;
    },
  );
  return { proxy: makeRemote<T>(st), placed: st.ready };
}

/**
 * Try members in the strategy's order until one creates the object (restoring `state` if
 * given); its connection. `st`, if given, is pointed at each member tried.
 */
export async function createOnMember(g: PlacementContext, cls: string, oid: string, payload: Promise<Uint8Array>, first: number | undefined, conf: DistConf, st: RemoteState | undefined, state?: Uint8Array): Promise<ServerConnection> {
  let args: Uint8Array;
  try {
    args = await payload;
  } catch (e) {
    if (first !== undefined) g.members.list[first]!.placed--;
    throw e;
  }
  const tried = new Set<number>();
  const failures: string[] = [];
  const ms = g.settings.createTimeoutMs;
  let i = first;
  for (;;) {
    if (i === undefined) i = await g.picker.pick(tried);
    if (i === undefined) throw g.members.noneAlive(`no server of the group could create ${cls} ${oid}`, failures);
    const m = g.members.list[i]!;
    tried.add(i);
    const conn = g.members.connection(m, conf);
    if (st) {
      st.host = m.addr.host;
      st.port = m.addr.port;
    }
    // The time limit is our own timer, not a gRPC deadline: requests without one are
    // batched by the transport (many creations per RPC), which is what makes bulk placement fast.
    const created = createAt(conn, oid, cls, args, state);
    try {
      await withinMs(created, ms, () => new DeadlineExceededError(`no answer to the creation of ${cls} ${oid} within ${ms} ms`, conn.where));
      if (st) st.conn = conn;
      return conn;
    } catch (e) {
      m.placed--;
      if (!unreachable(e)) throw e;
      const code = (e as AgentServerError).code;
      // A creation that timed out may still land: then ask that server to drop it.
      created.then(() => conn.send({ t: "delete", oid }), () => {}).catch(() => {});
      g.members.markDead(m, `${code}: ${(e as Error).message}`);
      failures.push(`${m.key} (${code})`);
      i = undefined;
    }
  }
}

/** `p`, or the error `timeout()` makes if `p` has not settled within `ms`. */
function withinMs<T>(p: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timeout()), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
