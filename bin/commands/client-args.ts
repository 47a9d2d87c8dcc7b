/**
 * Flags shared by the client commands (`stop`, `status`) and the client they open. The token
 * comes from `--token-file`, `--token` (visible in ps: warned) or `AS_SERVER_TOKEN` and is
 * never printed: error messages that might echo it are redacted.
 */
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { UsageError, TOKEN_ON_ARGV, parseHost, parseNonEmpty, parsePort, tokenOf } from "../args.ts";
import { log } from "../log.ts";
import type { RpcClient } from "../../src/client/rpc-client.ts";

/** `--host --port --token-file --token --tls-ca --tls-cert --tls-key` of a client command. */
export const clientArgs = {
  host: { type: "string", description: "Host of the server", default: "localhost" },
  port: { type: "string", description: "Port of the server", default: "12310" },
  "token-file": { type: "string", description: "File holding the token the server requires (or env AS_SERVER_TOKEN)" },
  token: { type: "string", description: "Token the server requires; visible in ps, prefer --token-file" },
  "tls-ca": { type: "string", description: "Connect over TLS, trusting this PEM CA file (or env AS_TLS_CA)" },
  "tls-cert": { type: "string", description: "Client certificate PEM file, for servers that require one; needs --tls-key" },
  "tls-key": { type: "string", description: "PEM private key file of --tls-cert" },
} as const;

/** A validated server address, token and TLS files. */
export interface Target {
  host: string;
  port: number;
  token?: string;
  tls?: { ca?: string; cert?: string; key?: string };
}

/** Validate the client flags (token falls back to `AS_SERVER_TOKEN`, TLS to `AS_TLS_*`). */
export function targetOf(args: Record<string, unknown>, env: Record<string, string | undefined> = process.env): Target {
  const t: Target = { host: parseHost(args.host), port: parsePort(args.port, "--port") };
  const token = tokenOf(args, env);
  if (args.token !== undefined) log.warn(TOKEN_ON_ARGV);
  if (token) t.token = token;
  const tls: NonNullable<Target["tls"]> = {};
  for (const k of ["ca", "cert", "key"] as const) {
    const v = args[`tls-${k}`];
    if (v !== undefined) tls[k] = pemFile(v, `--tls-${k}`);
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new UsageError("--tls-cert and --tls-key go together");
  if (Object.keys(tls).length) t.tls = tls;
  return t;
}

function pemFile(v: unknown, flag: string): string {
  const p = resolve(parseNonEmpty(v, flag));
  if (!statSync(p, { throwIfNoEntry: false })?.isFile()) throw new UsageError(`${flag} ${p} is not a file`);
  return p;
}

/** Open a management client; gRPC is loaded only now. */
export async function openClient(t: Target): Promise<RpcClient> {
  const { RpcClient } = await import("../../src/client/rpc-client.ts");
  try {
    return new RpcClient(t.host, t.port, { ...(t.token === undefined ? {} : { token: t.token }), ...(t.tls ? { tls: t.tls } : {}) });
  } catch (e) {
    // A certificate file that holds no PEM data is bad input, like a missing one.
    throw new UsageError((e as Error).message);
  }
}

/** An error's message with the token blanked out, on one line. */
export function safeMessage(e: unknown, t: Target): string {
  let msg = e instanceof Error ? e.message : String(e);
  if (t.token) msg = msg.split(t.token).join("<redacted>");
  return msg.replace(/\s*\n\s*/g, " ");
}
