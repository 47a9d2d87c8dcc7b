/**
 * An agent that ends its server's process — `process.exit()` inside a method, or an exception
 * nothing caught — takes every other agent of that server down with it. The server cannot
 * prevent that (short of running agents in child processes), but it says who did it: the
 * class, object id and method of the call that was running, from the call context.
 */
import { consola } from "consola";
import { callContext } from "../core/call-context.ts";

let watching = false;

/** Log the agent behind a process exit or an uncaught exception (installed once per process). */
export function watchAgentExits(serverId: string): void {
  if (watching) return;
  watching = true;
  const log = () => consola.withTag("as-server");
  process.on("exit", (code) => {
    const a = callContext.getStore()?.agent;
    if (!a) return;
    log().error({ message: `agent ${a.cls} ${a.oid} ended the server's process (exit code ${code}) in ${a.method}()`, fields: { event: "agent.exit", serverId, cls: a.cls, oid: a.oid, method: a.method, code } });
  });
  process.on("uncaughtException", (err) => {
    const a = callContext.getStore()?.agent;
    const who = a ? `agent ${a.cls} ${a.oid} (${a.method}())` : "code outside any call";
    log().error({ message: `uncaught exception from ${who}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`, fields: { event: "agent.crash", serverId, ...(a ? { cls: a.cls, oid: a.oid, method: a.method } : {}) } });
    process.exit(1);
  });
}
