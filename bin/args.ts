/**
 * Strict argument checks for the CLI. citty parses leniently (unknown flags are ignored, a
 * string flag swallows the next token even when it is another flag), and its `CLIError`s exit
 * with 1; we want every bad flag or value to be one clear line and exit code 2 (what scripts check). So the
 * raw argv is checked against each command's declared args before citty sees it, and the value
 * parsers below throw `UsageError`, which the entry turns into that line and code.
 */
import type { ArgsDef } from "citty";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

/** A bad flag or value: reported as one line on stderr, exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** How a command's raw arguments may look beyond what its `ArgsDef` says. */
export interface ArgvRules {
  /** String flags that may be given bare, meaning "true" (e.g. `--local-mode`). */
  optionalValue?: ReadonlySet<string>;
}

const camel = (s: string): string => s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * Check `argv` (the tokens after the command name) against `def` and return it normalised for
 * citty: a bare optional-value flag becomes `--flag=true`. Throws UsageError on an unknown flag,
 * a flag given twice (in any spelling: citty would silently keep the last), a flag missing its
 * value, a value given to a boolean that is not one, or a stray positional.
 */
export function checkArgv(argv: readonly string[], def: ArgsDef, rules: ArgvRules = {}): string[] {
  const kinds = new Map<string, { name: string; type: string }>();
  let positionals = 0;
  for (const [name, d] of Object.entries(def)) {
    if (d.type === "positional") {
      positionals++;
      continue;
    }
    const entry = { name, type: d.type ?? "string" };
    for (const n of [name, camel(name), kebab(name)]) kinds.set(n, entry);
  }
  const out: string[] = [];
  let seenPositionals = 0;
  const seen = new Set<string>();
  const once = (name: string): void => {
    if (seen.has(name)) throw new UsageError(`option --${name} given more than once`);
    seen.add(name);
  };
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (tok === "--" || !tok.startsWith("-") || tok === "-") {
      const rest = tok === "--" ? argv.slice(i + 1) : [tok];
      for (const p of rest) {
        if (++seenPositionals > positionals) throw new UsageError(`unexpected argument "${p}"`);
      }
      if (tok === "--") {
        out.push(...argv.slice(i));
        break;
      }
      out.push(tok);
      continue;
    }
    if (!tok.startsWith("--")) throw new UsageError(`unknown option ${tok}`);
    const eq = tok.indexOf("=");
    const key = tok.slice(2, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : tok.slice(eq + 1);
    const arg = kinds.get(key);
    if (!arg && key.startsWith("no-")) {
      // citty's negation: `--no-insecure`; only for flags that are booleans at heart.
      const neg = kinds.get(key.slice(3));
      if (neg && (neg.type === "boolean" || rules.optionalValue?.has(neg.name)) && inline === undefined) {
        once(neg.name);
        out.push(tok);
        continue;
      }
    }
    if (!arg) throw new UsageError(`unknown option --${key}`);
    once(arg.name);
    if (arg.type === "boolean") {
      // citty reads any value but "false" as true (`--insecure=0` would enable it): normalise.
      out.push(inline === undefined || parseBool(inline, `--${arg.name}`) ? `--${key}` : `--no-${key}`);
      continue;
    }
    if (inline !== undefined) {
      out.push(tok);
      continue;
    }
    const next = argv[i + 1];
    // A value may start with "-" (e.g. "-1", caught later as out of range), not with "--".
    if (next === undefined || next.startsWith("--")) {
      if (rules.optionalValue?.has(arg.name)) {
        out.push(`--${key}=true`);
        continue;
      }
      throw new UsageError(`option --${arg.name} needs a value`);
    }
    out.push(tok, next);
    i++;
  }
  return out;
}

/** Parse a TCP port; `allowZero` lets the OS pick one (`--port 0`). */
export function parsePort(v: unknown, flag: string, allowZero = false): number {
  const s = String(v ?? "").trim();
  const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
  const min = allowZero ? 0 : 1;
  if (!(n >= min && n <= 65535)) throw new UsageError(`${flag} must be an integer in ${min}..65535, not "${s}"`);
  return n;
}

/** Parse a positive integer (≥ 1). */
export function parsePositiveInt(v: unknown, flag: string): number {
  const s = String(v ?? "").trim();
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!(Number.isSafeInteger(n) && n >= 1)) throw new UsageError(`${flag} must be a positive integer, not "${s}"`);
  return n;
}

/** Parse a positive finite number (seconds may be fractional). */
export function parsePositiveNumber(v: unknown, flag: string): number {
  const s = String(v ?? "").trim();
  const n = /^\d+(\.\d+)?$/.test(s) ? Number(s) : NaN;
  if (!(Number.isFinite(n) && n > 0)) throw new UsageError(`${flag} must be a positive number, not "${s}"`);
  return n;
}

const TRUE = new Set(["true", "1", "yes", "y", "on"]);
const FALSE = new Set(["false", "0", "no", "n", "off"]);

/**
 * Parse a boolean flag value. AgentScope used argparse `type=bool`, so `--local-mode False`
 * meant true; here every spelling means what it says and anything else is an error.
 */
export function parseBool(v: unknown, flag: string): boolean {
  if (typeof v === "boolean") return v;
  const s = String(v ?? "").trim().toLowerCase();
  if (TRUE.has(s)) return true;
  if (FALSE.has(s)) return false;
  throw new UsageError(`${flag} must be true or false (also 1/0, yes/no, on/off), not "${String(v)}"`);
}

/** Parse a host name or address: non-empty, no spaces. */
export function parseHost(v: unknown, flag = "--host"): string {
  const s = String(v ?? "").trim();
  if (!s || /\s/.test(s)) throw new UsageError(`${flag} must be a host name or address, not "${String(v ?? "")}"`);
  return s;
}

/** A non-empty string value (citty turns a bare string flag into ""). */
export function parseNonEmpty(v: unknown, flag: string): string {
  const s = typeof v === "string" ? v : "";
  if (!s) throw new UsageError(`${flag} needs a non-empty value`);
  return s;
}

/** True for addresses that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || h === "ip6-localhost" || /^127(\.\d{1,3}){3}$/.test(h) || h === "::ffff:127.0.0.1";
}

/**
 * The token held by a file (`--token-file`): its content without the trailing newline and
 * surrounding spaces. An unreadable or empty file is bad input (exit 2): a server must never
 * start unguarded because its secret could not be read.
 */
export function readTokenFile(v: unknown, flag = "--token-file"): string {
  const p = resolve(parseNonEmpty(v, flag));
  let text: string;
  try {
    text = readFileSync(p, "utf8");
  } catch (e) {
    throw new UsageError(`${flag} ${p} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const token = text.trim();
  if (!token) throw new UsageError(`${flag} ${p} is empty`);
  if (/[\r\n]/.test(token)) throw new UsageError(`${flag} ${p} holds more than one line`);
  return token;
}

/** The token of a command: `--token-file`, else `--token` (visible in ps), else `AS_SERVER_TOKEN`. */
export function tokenOf(args: Record<string, unknown>, env: Record<string, string | undefined>): string | undefined {
  if (args["token-file"] !== undefined && args.token !== undefined) throw new UsageError("give either --token-file or --token, not both");
  if (args["token-file"] !== undefined) return readTokenFile(args["token-file"]);
  if (args.token !== undefined) return parseNonEmpty(args.token, "--token");
  return env.AS_SERVER_TOKEN || undefined;
}

/** The warning for a secret given on the command line, which every local user can read. */
export const TOKEN_ON_ARGV = "--token is visible to every user of this machine (ps, /proc/PID/cmdline): prefer --token-file FILE or AS_SERVER_TOKEN";
