/**
 * `--help` text of `as-server` and its commands: plain text (no colour codes, no right-aligned
 * columns, no trailing spaces), each command with examples. citty's own usage renderer is
 * not used: it colours even when piped and right-aligns the flag column.
 */
import type { ArgsDef } from "citty";

/** What `--help` shows for one command. */
export interface CommandHelp {
  description: string;
  usage: string;
  args: ArgsDef;
  examples: readonly string[];
  /** Lines after the options (environment variables, notes). */
  notes?: readonly string[];
}

/** The root's help: commands, examples, environment. */
export function rootHelp(version: string, commands: Record<string, CommandHelp>): string {
  const names = Object.keys(commands);
  const width = Math.max(...names.map((n) => n.length));
  return [
    `as-server ${version}: start, stop and inspect actorscope agent servers`,
    "",
    "Usage: as-server <command> [options]",
    "",
    "Commands:",
    ...names.map((n) => `  ${n.padEnd(width)}  ${commands[n]!.description}`),
    "",
    "Examples:",
    ...names.flatMap((n) => commands[n]!.examples.slice(0, 1)).map((e) => `  ${e}`),
    "",
    "Run as-server <command> --help for a command's options.",
    "Environment: AS_SERVER_TOKEN (shared secret), AS_LOG_LEVEL (silent, error, warn, info, debug, trace), NO_COLOR",
    "",
  ].join("\n");
}

/** One command's help: usage, options (left-aligned, defaults inline), examples, notes. */
export function commandHelp(name: string, h: CommandHelp): string {
  const rows: [string, string][] = [];
  for (const [flag, d] of Object.entries(h.args)) {
    if (d.type === "positional") continue;
    const hint = d.type === "boolean" ? "" : ` ${"valueHint" in d && d.valueHint ? d.valueHint : placeholder(flag)}`;
    const def = "default" in d && d.default !== undefined ? ` (default: ${String(d.default)})` : "";
    rows.push([`--${flag}${hint}`, `${d.description ?? ""}${def}`]);
  }
  rows.push(["--help", "Show this help"]);
  const width = Math.max(...rows.map(([f]) => f.length));
  return [
    `as-server ${name}: ${h.description}`,
    "",
    `Usage: ${h.usage}`,
    "",
    "Options:",
    ...rows.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`.trimEnd()),
    "",
    "Examples:",
    ...h.examples.map((e) => `  ${e}`),
    ...(h.notes?.length ? ["", ...h.notes] : []),
    "",
  ].join("\n");
}

/** `--max-pool-size` → `N`, `--agent-dir` → `DIR`: what a value looks like. */
function placeholder(flag: string): string {
  if (/(^|-)(dir)$/.test(flag)) return "DIR";
  if (/(path|file|cert|key|ca)$/.test(flag)) return "FILE";
  if (/url$/.test(flag)) return "URL";
  if (flag === "host") return "HOST";
  if (flag === "server-id") return "ID";
  if (flag === "token") return "TOKEN";
  return "N";
}
