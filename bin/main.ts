/**
 * The `as-server` command tree and its runner. citty's `runMain` answers `--help` and
 * `--version` (exit 0); everything else is checked strictly first (bin/args.ts) and run with
 * `runCommand`, so that bad input is one line and exit code 2 (DESIGN §4) rather than citty's
 * usage dump and 1, and a failed command is one line and exit code 1.
 */
import { defineCommand, runCommand, runMain, type ArgsDef } from "citty";
import pkg from "../package.json" with { type: "json" };
import { UsageError, checkArgv, type ArgvRules } from "./args.ts";
import { log } from "./log.ts";
import { startArgs, startRules } from "./commands/start-args.ts";
import { start } from "./commands/start.ts";
import { stop } from "./commands/stop.ts";
import { status } from "./commands/status.ts";

/** Version of this build (from package.json, embedded when compiled). */
export const VERSION: string = pkg.version;

/** The root command: `as-server start | stop | status`. */
export const asServer = defineCommand({
  meta: {
    name: "as-server",
    version: VERSION,
    description: "actorscope agent server; env: AS_SERVER_TOKEN (shared secret), AS_LOG_LEVEL (silent..trace)",
  },
  subCommands: { start, stop, status },
});

/** Each subcommand's declared flags, for the strict check. */
const declared: Record<string, { args: ArgsDef; rules?: ArgvRules }> = {
  start: { args: startArgs, rules: startRules },
  stop: { args: stop.args as ArgsDef },
  status: { args: status.args as ArgsDef },
};

/** Run the CLI with `argv` (the arguments after the program) and exit with its code. */
export async function main(argv: readonly string[]): Promise<never> {
  // grpc-js prints its own "E No address added..." lines to stderr; the CLI reports every
  // failure itself in one line. GRPC_VERBOSITY=DEBUG (or INFO/ERROR) still turns them on.
  process.env.GRPC_VERBOSITY ??= "NONE";
  const help = argv.some((a) => a === "--help" || a === "-h");
  const version = argv.length === 1 && (argv[0] === "--version" || argv[0] === "-v");
  if (help || version) {
    await runMain(asServer, { rawArgs: [...argv] });
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
      const hint = declared[name] ? `as-server ${name} --help` : "as-server --help (commands: start, stop, status)";
      log.error(`${msg.replace(/\s*\n\s*/g, " ")}; see ${hint}`);
      process.exit(2);
    }
    log.error(msg.replace(/\s*\n\s*/g, " "));
    process.exit(1);
  }
  process.exit(Number(process.exitCode ?? 0));
}
