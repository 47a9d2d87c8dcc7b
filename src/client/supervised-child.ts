/**
 * Child mode under supervision (`toDist({ restart })`): the object lives in a child server
 * this process spawned; when that child exits without being asked to (a crash, `kill -9`, an
 * OOM kill), a new child is spawned and the object re-created there with the same oid and its
 * last snapshot. Snapshots are kept here, in the parent, where the child's death cannot take them.
 */
import type { Transport } from "../core/transport.ts";
import { ChildServer, type ChildServerOptions } from "./child-server.ts";
import type { ClassEntry } from "../core/registry.ts";
import { createAt, SupervisedConnection, Supervisor, type Incarnation, type RestartPolicy, type SupervisionEvents } from "./supervisor.ts";

/** The connection and owner of a supervised child-mode proxy. */
export interface SupervisedChild {
  conn: SupervisedConnection;
  /** Resolves once the object first exists; rejects with why it could not be made. */
  ready: Promise<void>;
  /** Stops supervising and the child (what the proxy's `stop()` and dispose do). */
  owner: { stop(): Promise<void> };
}

/** Does the class take part in snapshots (defines both `snapshot()` and `restore(state)`)? */
export function takesSnapshots(cls: Function): boolean {
  const p = (cls as { prototype?: Record<string, unknown> }).prototype;
  return typeof p?.snapshot === "function" && typeof p.restore === "function";
}

/** Extras of `superviseChild` for a server that supervises its agents (`--isolate`). */
export interface SuperviseExtras {
  /** Snapshot the first object is restored from (a `create` that carried `state`). */
  state?: Uint8Array;
  /** Told of crashes and restarts. */
  events?: SupervisionEvents;
}

/**
 * Spawn the child for `entry`, create the object (`oid`, constructor `args` encoded for IPC),
 * and keep it alive per `policy`.
 */
export function superviseChild(entry: ClassEntry, oid: string, args: (to?: Transport) => Promise<Uint8Array>, childOpts: ChildServerOptions, policy: RestartPolicy, extras: SuperviseExtras = {}): SupervisedChild {
  const sup: Supervisor = new Supervisor({
    oid,
    cls: entry.name,
    policy,
    snapshots: takesSnapshots(entry.cls),
    ...(extras.events ? { events: extras.events } : {}),
    respawn: async (last) => {
      // Until the object answered once with a snapshot of its own, the one it was created with stands.
      const state = last ?? extras.state;
      let inc: Incarnation | undefined;
      const child = new ChildServer({
        ...childOpts,
        onExit: (why, stopped) => {
          if (!stopped && inc) sup.crashed(inc, why);
        },
      });
      try {
        const [payload] = await Promise.all([args(child.conn.transport), child.ready]);
        await createAt(child.conn, oid, entry.name, payload, state);
      } catch (e) {
        await child.stop();
        throw e;
      }
      inc = { conn: child.conn, pid: child.pid, stop: () => child.stop(), alive: () => !child.exited };
      return inc;
    },
  });
  // Until the first child exists the connection names no child; references wait (addressPending).
  const conn = new SupervisedConnection(sup, { host: "localhost", child: "starting" });
  const ready = sup.start();
  return { conn, ready, owner: { stop: () => sup.stop() } };
}
