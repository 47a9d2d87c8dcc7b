/**
 * The body of a child server, shared by `bun src/server/child/main.ts` and the compiled
 * `as-server __child` entry.
 */
import { findClass } from "../../rpc/registry.ts";
import { setProcessLimits } from "../../rpc/refs.ts";
import { DEFAULT_LIMITS } from "../../rpc/limits.ts";
import { IpcTransport, RelayedTransport, type IpcFrame } from "../../rpc/transports/ipc.ts";
import { ServerConnection } from "../../rpc/connection.ts";
import { addressKey, setChildRouter } from "../../rpc/connections.ts";
import { LocalPool } from "../pool/local.ts";
import { Servicer } from "../servicer.ts";
import { bindIpc } from "./ipc-binding.ts";
import type { ChildConfig } from "../../rpc/child-config.ts";

/** Start a child server from its JSON config and serve until the parent disconnects. */
export async function runChild(json: string): Promise<void> {
  const send = process.send?.bind(process);
  if (!send) {
    console.error("as-server: a child server must be spawned with an IPC channel");
    process.exit(2);
  }
  // A child never outlives its parent.
  process.on("disconnect", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
  process.on("SIGINT", () => process.exit(0));
  const conf = JSON.parse(json) as ChildConfig;
  const limits = { ...DEFAULT_LIMITS, ...(conf.maxMessageBytes ? { maxMessageBytes: conf.maxMessageBytes } : {}) };
  setProcessLimits(limits);
  for (const m of conf.modules ?? []) await import(m);
  if (conf.modelConfigs !== undefined) {
    const { init } = await import("../../models/init.ts");
    init({ modelConfigs: conf.modelConfigs as never });
  }
  const servicer = new Servicer({
    serverId: conf.id,
    address: { host: "localhost", child: conf.id },
    resolveClass: (name) => findClass(name, conf.modules?.[0])?.cls,
    capacity: conf.capacity,
    maxQueue: conf.maxQueue,
    pool: new LocalPool({ maxPoolSize: conf.maxPoolSize, maxExpireTime: conf.maxExpireTime }),
    maxTimeoutSeconds: conf.maxTimeoutSeconds,
    limits,
    onStop: () => process.exit(0),
  });
  const onFrame = bindIpc(servicer, (f: IpcFrame) => send(f));
  // Other child servers are reached through the parent, which relays requests to them.
  const upward = new IpcTransport({ send: (f) => send(f) }, "parent");
  const routed = new Map<string, ServerConnection>();
  setChildRouter((a) => {
    const k = addressKey(a);
    let c = routed.get(k);
    if (!c) routed.set(k, (c = new ServerConnection(new RelayedTransport(upward, a), a)));
    return c;
  });
  process.on("message", (f: unknown) => {
    if ((f as IpcFrame | null)?.k === "a") upward.deliver(f as IpcFrame);
    else onFrame(f);
  });
  send({ k: "ready", pid: process.pid, id: conf.id } satisfies IpcFrame);
}
