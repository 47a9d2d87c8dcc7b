/**
 * `as-server start`: its flags (names are a public contract, AgentScope's `as_server start` plus
 * `--token`, `--insecure` and a few limits) and their validation into launcher options. Kept
 * apart from the command so it loads nothing heavy and can be unit-tested.
 */
import { DEFAULTS } from "../../src/core/defaults.ts";
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { loadModelConfigs } from "../../src/models/init.ts";
import type { LauncherOptions } from "../../src/server/launcher/launcher.ts";
import {
  UsageError,
  isLoopback,
  parseBool,
  parseHost,
  parseNonEmpty,
  parsePort,
  parsePositiveInt,
  parsePositiveNumber,
  tokenOf,
  type ArgvRules,
} from "../args.ts";

/** Flags of `as-server start`. Numbers are strings so that bad values can be reported (exit 2). */
export const startArgs = {
  host: { type: "string", description: "Host name clients use to reach this server", default: DEFAULTS.host },
  port: { type: "string", description: "TCP port; 0 picks a free one (printed when listening)", default: "12310" },
  capacity: { type: "string", description: "Async calls run at once; more wait in a bounded queue", default: String(DEFAULTS.capacity) },
  "pool-type": { type: "string", description: "Result pool: local or redis", valueHint: "local|redis", default: "local" },
  "redis-url": {
    type: "string",
    // No citty default: AS_REDIS_URL fills in when the flag is absent.
    description: `Redis of the redis pool; a password here is visible in ps, prefer env AS_REDIS_URL (default: AS_REDIS_URL, else ${DEFAULTS.redisUrl})`,
  },
  "max-pool-size": { type: "string", description: "Results kept by the local pool", default: String(DEFAULTS.maxPoolSize) },
  "max-expire-time": { type: "string", description: "Seconds a result is kept", default: String(DEFAULTS.maxExpireTime) },
  "max-timeout-seconds": { type: "string", description: "Longest single wait for a result, seconds", default: String(DEFAULTS.maxTimeoutSeconds) },
  "local-mode": {
    type: "string",
    valueHint: "true|false",
    // No citty default: whether it was given decides how it combines with --host.
    description: "Listen on 127.0.0.1 only, else on --host (true/false, 1/0, yes/no) (default: true; false when --host is not loopback)",
  },
  "agent-dir": { type: "string", description: "Load the agent classes in this directory's files (runs their code)" },
  "model-config-path": { type: "string", description: "JSON file of model configs" },
  "server-id": { type: "string", description: "Server id (default: generated)" },
  // Removed: it did nothing (actorscope does not talk to AgentScope Studio). Declared so that
  // AgentScope scripts that pass it learn what replaces it, rather than "unknown option".
  "studio-url": { type: "string", description: "Removed: use --registry URL (and as-server status / dashboard --registry URL)" },
  registry: { type: "string", description: "Redis URL of a registry to keep this server's record in (as-server status/dashboard --registry); a password here is visible in ps, prefer env AS_REGISTRY_URL" },
  "metrics-port": { type: "string", description: "Serve Prometheus metrics at http://HOST:N/metrics (0: a free port, printed at start)" },
  "log-format": { type: "string", valueHint: "pretty|json", description: "Log lines as text or as one JSON object per line (default: env AS_LOG_FORMAT, else pretty)" },
  "log-level": { type: "string", valueHint: "silent|error|warn|info|debug|trace", description: "Least important events logged; debug adds an access line per request (default: env AS_LOG_LEVEL, else info)" },
  "token-file": { type: "string", description: "File holding the shared secret clients must present (or env AS_SERVER_TOKEN)" },
  token: { type: "string", description: "Shared secret clients must present; visible in ps, prefer --token-file" },
  insecure: { type: "boolean", description: "Allow a non-loopback listener without a token" },
  "max-message-bytes": { type: "string", description: "Largest message accepted or sent, bytes" },
  "max-queue": { type: "string", description: "Async calls that may wait for a slot before new ones are refused" },
  "max-agents": { type: "string", description: `Objects the server holds at most (default ${DEFAULTS.maxAgents})` },
  "allow-peers": { type: "string", valueHint: "host[:port],...|any", description: "Peers this server may dial when a value names them: host[:port],... or any (default: loopback only)" },
  "hide-stacks": { type: "boolean", description: "Leave remote stack traces out of errors sent to callers" },
  "file-dir": { type: "string", description: "Directory clients may download files from" },
  "tls-cert": { type: "string", description: "Serve over TLS with this PEM certificate (chain) file; needs --tls-key" },
  "tls-key": { type: "string", description: "PEM private key file of --tls-cert" },
  "tls-client-ca": { type: "string", description: "Require client certificates signed by this PEM CA file (mutual TLS)" },
  isolate: {
    type: "boolean",
    description:
      "Run each agent in a child process of its own, supervised: an agent's process.exit, uncaught exception or kill -9 ends only its process; it is restarted with the same oid (state from snapshot() when its class defines snapshot()/restore()), calls in flight at the crash fail UNAVAILABLE. One process per agent",
  },
  "max-restarts": { type: "string", description: "With --isolate: restarts of an agent allowed within --restart-window-ms before it stays dead (default 3; 0: never restart)" },
  "restart-window-ms": { type: "string", description: "With --isolate: the window --max-restarts counts in, ms (default 60000)" },
  "shutdown-grace-ms": { type: "string", description: "On SIGTERM/SIGINT/stop, how long calls in flight may finish, ms (default: 5000)" },
} as const;

/** `--local-mode` may be given bare, meaning true. */
export const startRules: ArgvRules = { optionalValue: new Set(["local-mode"]) };

type Raw = Record<string, unknown>;

/**
 * Validate parsed `start` args (and `AS_SERVER_TOKEN`) into launcher options; throws
 * UsageError on the first bad one. Explicit values for every default, so what runs is what
 * `--help` says whatever the launcher's own defaults are (its `localMode` defaults to false).
 */
export function startOptions(args: Raw, env: Record<string, string | undefined> = process.env): LauncherOptions {
  const host = parseHost(args.host);
  const port = parsePort(args.port, "--port", true);
  const capacity = parsePositiveInt(args.capacity, "--capacity");
  const poolType = String(args["pool-type"] ?? "");
  if (poolType !== "local" && poolType !== "redis") throw new UsageError(`--pool-type must be local or redis, not "${poolType}"`);
  const redisUrl = args["redis-url"] !== undefined ? parseNonEmpty(args["redis-url"], "--redis-url") : env.AS_REDIS_URL || "redis://localhost:6379";
  if (poolType === "redis") checkRedisUrl(redisUrl, args["redis-url"] !== undefined ? "--redis-url" : "AS_REDIS_URL");
  // Loopback-only unless told otherwise, or unless --host names an address others would use
  // (AgentScope bound loopback whatever --host said, which left "--host 0.0.0.0" unreachable).
  const localMode = args["local-mode"] === undefined ? isLoopback(host) : parseBool(args["local-mode"], "--local-mode");
  const token = tokenOf(args, env);
  const insecure = args.insecure === true;
  const tlsCert = args["tls-cert"] === undefined ? undefined : existingFile(args["tls-cert"], "--tls-cert");
  const tlsKey = args["tls-key"] === undefined ? undefined : existingFile(args["tls-key"], "--tls-key");
  const tlsClientCa = args["tls-client-ca"] === undefined ? undefined : existingFile(args["tls-client-ca"], "--tls-client-ca");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError("--tls-cert and --tls-key go together");
  if (tlsClientCa !== undefined && tlsCert === undefined) throw new UsageError("--tls-client-ca needs --tls-cert and --tls-key");
  // Reachable from other machines: needs a shared secret, client certificates, or an explicit --insecure (S3).
  if (!localMode && !isLoopback(host) && !token && !tlsClientCa && !insecure) {
    throw new UsageError(`refusing to listen on non-loopback ${host} without a token: set --token-file (or AS_SERVER_TOKEN), require client certificates (--tls-client-ca), or pass --insecure`);
  }
  const launcher: LauncherOptions = {
    host,
    port,
    capacity,
    poolType,
    redisUrl,
    maxPoolSize: parsePositiveInt(args["max-pool-size"], "--max-pool-size"),
    maxExpireTime: parsePositiveNumber(args["max-expire-time"], "--max-expire-time"),
    maxTimeoutSeconds: parsePositiveNumber(args["max-timeout-seconds"], "--max-timeout-seconds"),
    localMode,
  };
  if (args["agent-dir"] !== undefined) launcher.agentDir = existingDir(args["agent-dir"], "--agent-dir");
  if (args["file-dir"] !== undefined) launcher.fileDir = existingDir(args["file-dir"], "--file-dir");
  if (args["server-id"] !== undefined) {
    const id = parseNonEmpty(args["server-id"], "--server-id");
    if (!/^[\w.:-]{1,128}$/.test(id)) throw new UsageError(`--server-id may only hold letters, digits and . _ : - (at most 128), not "${id}"`);
    launcher.serverId = id;
  }
  if (args["studio-url"] !== undefined) {
    throw new UsageError("--studio-url was removed (actorscope does not register with AgentScope Studio): use --registry URL, then as-server status --registry URL or as-server dashboard --registry URL");
  }
  const registry = args.registry !== undefined ? parseNonEmpty(args.registry, "--registry") : env.AS_REGISTRY_URL || undefined;
  if (registry !== undefined) {
    checkRedisUrl(registry, args.registry !== undefined ? "--registry" : "AS_REGISTRY_URL");
    launcher.registry = registry;
  }
  if (args["metrics-port"] !== undefined) launcher.metricsPort = parsePort(args["metrics-port"], "--metrics-port", true);
  if (token) launcher.token = token;
  if (insecure) launcher.insecure = true;
  if (args["max-message-bytes"] !== undefined) launcher.maxMessageBytes = parsePositiveInt(args["max-message-bytes"], "--max-message-bytes");
  if (args["max-queue"] !== undefined) launcher.maxQueue = parsePositiveInt(args["max-queue"], "--max-queue");
  if (args["max-agents"] !== undefined) launcher.maxAgents = parsePositiveInt(args["max-agents"], "--max-agents");
  if (args["allow-peers"] !== undefined) launcher.allowPeers = allowPeersList(args["allow-peers"]);
  if (args["hide-stacks"] !== undefined) launcher.hideStacks = args["hide-stacks"] === true;
  if (tlsCert !== undefined && tlsKey !== undefined) {
    launcher.tlsCert = tlsCert;
    launcher.tlsKey = tlsKey;
    if (tlsClientCa !== undefined) launcher.tlsClientCa = tlsClientCa;
  }
  if (args["shutdown-grace-ms"] !== undefined) launcher.shutdownGraceMs = parseNonNegativeInt(args["shutdown-grace-ms"], "--shutdown-grace-ms");
  if (args.isolate === true) launcher.isolate = true;
  if (args["max-restarts"] !== undefined || args["restart-window-ms"] !== undefined) {
    if (!launcher.isolate) throw new UsageError("--max-restarts and --restart-window-ms are the restart budget of isolated agents: they need --isolate");
    launcher.restart = { maxRestarts: args["max-restarts"] === undefined ? 3 : parseNonNegativeInt(args["max-restarts"], "--max-restarts") };
    if (args["restart-window-ms"] !== undefined) launcher.restart.withinMs = parsePositiveInt(args["restart-window-ms"], "--restart-window-ms");
  }
  if (args["model-config-path"] !== undefined) launcher.modelConfigs = modelConfigFile(args["model-config-path"]);
  return launcher;
}

/** `--allow-peers`: `any`, or a comma-separated list of `host` / `host:port`. */
function allowPeersList(v: unknown): string[] | "any" {
  const text = parseNonEmpty(v, "--allow-peers");
  if (text.trim() === "any") return "any";
  const list = text.split(",").map((x) => x.trim()).filter(Boolean);
  for (const x of list) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[\w.-]+)(:\d{1,5})?$/.test(x)) throw new UsageError(`--allow-peers takes host or host:port entries separated by commas, or any; not "${x}"`);
  }
  if (list.length === 0) throw new UsageError("--allow-peers needs at least one host, or any");
  return list;
}

/** A readable PEM file (checked here so that a bad path is bad input, exit 2). */
function existingFile(v: unknown, flag: string): string {
  const p = resolve(parseNonEmpty(v, flag));
  if (!statSync(p, { throwIfNoEntry: false })?.isFile()) throw new UsageError(`${flag} ${p} is not a file`);
  let text: string;
  try {
    text = readFileSync(p, "latin1");
  } catch (e) {
    throw new UsageError(`${flag} ${p} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!text.includes("-----BEGIN ")) throw new UsageError(`${flag} ${p} holds no PEM data`);
  return p;
}

function parseNonNegativeInt(v: unknown, flag: string): number {
  const s = String(v ?? "").trim();
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} must be an integer ≥ 0, not "${s}"`);
  return n;
}

function existingDir(v: unknown, flag: string): string {
  const p = resolve(parseNonEmpty(v, flag));
  if (!statSync(p, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`${flag} ${p} is not a directory`);
  return p;
}

/** A model configs file that exists and holds valid configs; the launcher loads it. */
function modelConfigFile(v: unknown): string {
  const flag = "--model-config-path";
  const p = resolve(parseNonEmpty(v, flag));
  if (!statSync(p, { throwIfNoEntry: false })?.isFile()) throw new UsageError(`${flag} ${p} is not a file`);
  try {
    loadModelConfigs(p);
  } catch (e) {
    throw new UsageError(`${flag}: ${(e as Error).message}`);
  }
  return p;
}

function checkRedisUrl(s: string, from: string): void {
  const u = URL.parse(s);
  // Never echo the URL: it may carry a password.
  if (!u || (u.protocol !== "redis:" && u.protocol !== "rediss:")) throw new UsageError(`${from} must be a redis:// or rediss:// URL`);
}

/** `--log-format` and `--log-level` (else `AS_LOG_FORMAT` / `AS_LOG_LEVEL`, which bin/log.ts reads). */
export function logOptions(args: Raw): { format?: "pretty" | "json"; level?: number } {
  const out: { format?: "pretty" | "json"; level?: number } = {};
  if (args["log-format"] !== undefined) {
    const f = String(args["log-format"]).trim().toLowerCase();
    if (f !== "pretty" && f !== "json") throw new UsageError(`--log-format must be pretty or json, not "${String(args["log-format"])}"`);
    out.format = f;
  }
  if (args["log-level"] !== undefined) {
    const v = String(args["log-level"]).trim().toLowerCase();
    const level = LEVELS[v];
    if (level === undefined) throw new UsageError(`--log-level must be one of ${Object.keys(LEVELS).join(", ")}, not "${String(args["log-level"])}"`);
    out.level = level;
  }
  return out;
}

const LEVELS: Record<string, number> = { silent: -999, fatal: 0, error: 0, warn: 1, info: 3, debug: 4, trace: 5 };

/** True when a Redis URL carries a password (then it must not sit on a command line). */
export function redisUrlHasPassword(s: string): boolean {
  const u = URL.parse(s);
  return !!u && (u.password !== "" || (u.username !== "" && u.protocol.startsWith("redis")));
}
