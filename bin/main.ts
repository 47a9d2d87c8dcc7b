/**
 * The `as-server` command tree and its runner. `--help` and `--version` are answered here
 * (plain text, exit 0; bin/help.ts); everything else is checked strictly first (bin/args.ts)
 * and run with citty's `runCommand`, so that bad input is one line and exit code 2 (scripts branch on that code: 2 is bad input)
 * rather than citty's usage dump and 1, and a failed command is one line and exit code 1.
 */
import { defineCommand, runCommand, type ArgsDef } from "citty";
import pkg from "../package.json" with { type: "json" };
import { UsageError, checkArgv, type ArgvRules } from "./args.ts";
import { commandHelp, rootHelp, type CommandHelp } from "./help.ts";
import { log } from "./log.ts";
import { startArgs, startRules } from "./commands/start-args.ts";
import { start } from "./commands/start.ts";
import { stop } from "./commands/stop.ts";
import { status } from "./commands/status.ts";
import { dashboard, dashboardArgs } from "./commands/dashboard.ts";

/** Version of this build (from package.json, embedded when compiled). */
export const VERSION: string = pkg.version;

/** The root command: `as-server start | stop | status | dashboard`. */
export const asServer = defineCommand({
  meta: {
    name: "as-server",
    version: VERSION,
    description: "actorscope agent server; env: AS_SERVER_TOKEN (shared secret), AS_LOG_LEVEL (silent..trace)",
  },
  subCommands: { start, stop, status, dashboard },
});

/** Each subcommand's declared flags, for the strict check. */
const declared: Record<string, { args: ArgsDef; rules?: ArgvRules }> = {
  start: { args: startArgs, rules: startRules },
  stop: { args: stop.args as ArgsDef },
  status: { args: status.args as ArgsDef },
  dashboard: { args: dashboardArgs },
};

/** What `--help` says about each command. */
const help: Record<string, CommandHelp> = {
  start: {
    description: "start an agent server; it serves until SIGINT/SIGTERM or `as-server stop`",
    usage: "as-server start [options]",
    args: startArgs,
    examples: [
      "as-server start --port 12310 --agent-dir ./agents",
      "as-server start --port 0   # a free port, printed in the listening line",
      "as-server start --host 0.0.0.0 --token-file /etc/as/token --agent-dir ./agents",
      "AS_REDIS_URL=redis://:pw@10.0.0.9:6379 as-server start --pool-type redis",
    ],
    notes: [
      "Prints one line when it accepts calls: as-server listening on HOST:PORT (server id ID).",
      "Secrets: --token and a password in --redis-url are visible in ps; use --token-file or AS_SERVER_TOKEN, and AS_REDIS_URL.",
      "Bad flags or values: one line on stderr, exit 2.",
    ],
  },
  stop: {
    description: "stop a running agent server (it drains its calls first)",
    usage: "as-server stop [--host HOST] [--port N] [options]",
    args: stop.args as ArgsDef,
    examples: ["as-server stop --port 12310", "as-server stop --host 10.0.0.5 --port 12310 --token-file ~/.as-token --tls-ca ca.pem"],
    notes: ["Exit code: 0 stopped, 1 not alive or refused, 2 bad flags."],
  },
  status: {
    description: "show a server's info and agents, or a table of every server (--registry / --servers)",
    usage: "as-server status [--host HOST] [--port N] | --registry URL | --servers FILE [--json] [options]",
    args: status.args as ArgsDef,
    examples: [
      "as-server status --port 12310",
      "as-server status --host 10.0.0.5 --port 12310 --token-file ~/.as-token --json",
      "as-server status --registry redis://10.0.0.9:6379",
      "as-server status --servers servers.txt --json",
    ],
    notes: ["Exit code: 0 alive, 1 not alive or unreachable (--servers: any of them), 2 bad flags."],
  },
  dashboard: {
    description: "serve a live web page of every server, its agents and calls",
    usage: "as-server dashboard (--registry URL | --servers FILE) [--host HOST] [--port N] [--token-file FILE]",
    args: dashboardArgs,
    examples: ["as-server dashboard --registry redis://10.0.0.9:6379", "as-server dashboard --servers servers.txt --host 0.0.0.0 --token-file ~/.dash-token"],
    notes: ["Prints one line with its URL when ready. Off loopback an access token is required.", "Agent servers' token: --server-token-file or AS_SERVER_TOKEN."],
  },
};

/** Run the CLI with `argv` (the arguments after the program) and exit with its code. */
export async function main(argv: readonly string[]): Promise<never> {
  // grpc-js prints its own "E No address added..." lines to stderr; the CLI reports every
  // failure itself in one line. GRPC_VERBOSITY=DEBUG (or INFO/ERROR) still turns them on.
  process.env.GRPC_VERBOSITY ??= "NONE";
  const wantsHelp = argv.some((a) => a === "--help" || a === "-h");
  const version = argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v");
  if (version) {
    process.stdout.write(`${VERSION}\n`);
    process.exit(0);
  }
  if (wantsHelp) {
    const cmd = argv[0] !== undefined ? help[argv[0]] : undefined;
    process.stdout.write(cmd ? commandHelp(argv[0]!, cmd) : rootHelp(VERSION, help));
    process.exit(0);
  }
  let name = "";
  try {
    name = argv[0] ?? "";
    const cmd = declared[name];
    if (!cmd) {
      throw new UsageError(name.startsWith("-") ? `unknown option ${name}` : name ? `unknown command "${name}"` : "missing command");
    }
    const rest = checkArgv(argv.slice(1), cmd.args, cmd.rules);
    await runCommand(asServer, { rawArgs: [name, ...rest] });
  } catch (e) {
    const usage = e instanceof UsageError || (e as Error | undefined)?.name === "CLIError";
    const msg = e instanceof Error ? e.message : String(e);
    if (usage) {
      const hint = declared[name] ? `as-server ${name} --help` : "as-server --help (commands: start, stop, status, dashboard)";
      log.error(`${msg.replace(/\s*\n\s*/g, " ")}; see ${hint}`);
      process.exit(2);
    }
    log.error(msg.replace(/\s*\n\s*/g, " "));
    process.exit(1);
  }
  process.exit(Number(process.exitCode ?? 0));
}
