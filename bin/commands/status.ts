/**
 * `as-server status`: print a server's info and the objects it holds (or "No agents"); `--json`
 * prints both as one JSON object instead. Results go to stdout as plain lines (they are the
 * command's output, not log events); a server that is not alive is one line on stderr, exit 1.
 */
import { defineCommand } from "citty";
import type { AgentInfo, ServerInfo } from "../../src/core/protocol.ts";
import { log } from "../log.ts";
import { clientArgs, openClient, safeMessage, targetOf } from "./client-args.ts";

/** `as-server status`. */
export const status = defineCommand({
  meta: { name: "status", description: "Show a server's info and agents" },
  args: { ...clientArgs, json: { type: "boolean", description: "Print one JSON object { server, agents }" } },
  async run({ args }) {
    const t = targetOf(args);
    const where = `${t.host}:${t.port}`;
    const client = await openClient(t);
    try {
      if (!(await client.isAlive())) {
        log.error(`no agent server is alive at ${where}`);
        process.exitCode = 1;
        return;
      }
      const [server, agents] = await Promise.all([client.getServerInfo(), client.getAgentList()]);
      const out = args.json ? JSON.stringify({ server, agents }) : formatStatus(where, server, agents);
      process.stdout.write(`${out}\n`);
    } catch (e) {
      log.error(`cannot read the status of ${where}: ${safeMessage(e, t)}`);
      process.exitCode = 1;
    } finally {
      client.close();
    }
  },
});

/** Human-readable status: a server line, then one line per agent or "No agents". */
export function formatStatus(where: string, s: ServerInfo, agents: readonly AgentInfo[]): string {
  const lines = [
    `as-server ${s.id} at ${where}`,
    `  pid ${s.pid}  cpu ${s.cpu.toFixed(1)}%  mem ${s.mem.toFixed(1)} MiB  objects ${s.size}  capacity ${s.capacity}  pending ${s.pending}`,
  ];
  if (agents.length === 0) lines.push("No agents");
  else {
    lines.push(`Agents (${agents.length}):`);
    for (const a of agents) lines.push(`  ${a.id}  ${a.cls}${a.name !== undefined ? `  name=${JSON.stringify(a.name)}` : ""}`);
  }
  return lines.join("\n");
}
