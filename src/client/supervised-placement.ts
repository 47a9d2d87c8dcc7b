/**
 * Group mode under supervision (`new ServerGroup(servers, { restart })`): the object is placed
 * like any other, but its proxy talks through a `Supervisor`. When a request finds its server
 * gone (UNAVAILABLE, and the server no longer answers `alive`), the server is marked dead and
 * the object is re-created on another live member with the same oid and the last snapshot,
 * which this process (the placing client) keeps. The proxy follows it.
 *
 * References to the object that other servers hold name the dead server and fail UNAVAILABLE:
 * they do not go through the placing client. Pass the proxy again to reach the new place.
 */
import type { DistConf } from "./distributable.ts";
import type { createOnMember, PlacementContext } from "./place-object.ts";
import { makeRemote } from "./proxy.ts";
import type { Remote, RemoteState } from "./proxy-state.ts";
import { DEFAULT_RETRY } from "./retry.ts";
import { DEFAULTS } from "../core/defaults.ts";
import { classInfo, type ClassEntry } from "../core/registry.ts";
import { SupervisedConnection, Supervisor, type RestartPolicy } from "./supervisor.ts";
import { takesSnapshots } from "./supervised-child.ts";

/** Place `entry` under `oid` on a member of the group, supervised per `policy`; the proxy at once. */
export function placeSupervised<T>(g: PlacementContext, entry: ClassEntry, oid: string, payload: Promise<Uint8Array>, conf: DistConf, policy: RestartPolicy, create: typeof createOnMember): { proxy: Remote<T>; placed: Promise<void> } {
  const sup = new Supervisor({
    oid,
    cls: entry.name,
    policy,
    snapshots: takesSnapshots(entry.cls),
    respawn: async (state) => ({ conn: await create(g, entry.name, oid, payload, undefined, conf, undefined, state) }),
    isGone: async (inc) => {
      if (await inc.conn.alive(g.settings.probeTimeoutMs)) return false;
      const m = g.members.list.find((x) => x.addr.host === inc.conn.address.host && x.addr.port === inc.conn.address.port);
      if (m) g.members.markDead(m, "UNAVAILABLE: the server of a supervised object stopped answering");
      return true;
    },
  });
  const tentative = g.members.list[0]!.addr;
  const conn = new SupervisedConnection(sup, { host: tentative.host, port: tentative.port });
  const st: RemoteState = {
    oid,
    conn,
    ready: sup.start(),
    info: classInfo(entry.cls),
    created: true,
    retry: conf.retryStrategy ?? DEFAULT_RETRY,
    maxWaitMs: (conf.maxTimeoutSeconds ?? DEFAULTS.maxTimeoutSeconds) * 1000,
    host: "",
    port: undefined,
  };
  // The proxy's host and port follow the object from server to server.
  Object.defineProperty(st, "host", { get: () => conn.where.host });
  Object.defineProperty(st, "port", { get: () => conn.where.port });
  return { proxy: makeRemote<T>(st), placed: st.ready };
}
