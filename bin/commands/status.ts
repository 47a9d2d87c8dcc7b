/**
 * `as-server status`: print a server's info and the objects it holds (or "No agents"); `--json`
 * prints both as one JSON object instead. Results go to stdout as plain lines (they are the
 * command's output, not log events); a server that is not alive is one line on stderr, exit 1.
 *
 * With `--registry URL` (every server registered there) or `--servers FILE` (one `host:port`
 * per line) it prints one table of every server instead: id, address, uptime, agents,
 * pending, calls/s, errors, memory (`--json`: `{ servers: [...] }`). A server of the file that
 * does not answer is a "down" row and makes the exit code 1.
 */
import { defineCommand } from "citty";
import type { AgentInfo, ServerInfo } from "../../src/core/protocol.ts";
import { log } from "../log.ts";
import { UsageError, parseNonEmpty } from "../args.ts";
import { clientArgs, openClient, safeMessage, targetOf, type Target } from "./client-args.ts";

/** `as-server status`. */
export const status = defineCommand({
  meta: { name: "status", description: "Show a server's info and agents" },
  args: {
    ...clientArgs,
    registry: { type: "string", description: "Show every server registered in this Redis registry" },
    servers: { type: "string", description: "Show every server of this file (host:port per line)" },
    json: { type: "boolean", description: "Print JSON: { server, agents }, or { servers } with --registry / --servers" },
  },
  async run({ args }) {
    if (args.registry !== undefined || args.servers !== undefined) return void (await clusterStatus(args));
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

/** `status --registry URL | --servers FILE`: one table (or JSON) of every server. */
async function clusterStatus(args: Record<string, unknown>): Promise<void> {
  if (args.registry !== undefined && args.servers !== undefined) throw new UsageError("give either --registry or --servers, not both");
  const { collect, formatTable, parseServersFile } = await import("../../src/server/dashboard/collect.ts");
  let rows;
  if (args.registry !== undefined) {
    const url = parseNonEmpty(args.registry, "--registry");
    if (!/^rediss?:\/\//.test(url)) throw new UsageError("--registry must be a redis:// or rediss:// URL");
    rows = await collect({ registry: url });
  } else {
    const file = parseNonEmpty(args.servers, "--servers");
    let text: string;
    try {
      text = await Bun.file(file).text();
    } catch (e) {
      throw new UsageError(`--servers ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    let servers;
    try {
      servers = parseServersFile(text);
    } catch (e) {
      throw new UsageError(`--servers ${file}: ${(e as Error).message}`);
    }
    const t: Target = targetOf({ ...args, host: "localhost", port: "12310" });
    rows = await collect({ servers }, { ...(t.token ? { token: t.token } : {}), ...(t.tls ? { tls: t.tls } : {}) });
    for (const r of rows) if (r.error && t.token) r.error = r.error.split(t.token).join("<redacted>");
    if (rows.some((r) => !r.alive)) process.exitCode = 1;
  }
  if (args.json) process.stdout.write(`${JSON.stringify({ servers: rows })}\n`);
  else process.stdout.write(rows.length ? `${formatTable(rows)}\n` : "No servers registered\n");
}
