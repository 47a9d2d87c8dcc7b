/**
 * Flags shared by the client commands (`stop`, `status`) and the client they open. The token
 * comes from `--token` or `AS_SERVER_TOKEN` and is never printed: error messages that might
 * echo it are redacted.
 */
import { parseHost, parseNonEmpty, parsePort } from "../args.ts";
import type { RpcClient } from "../../src/rpc/rpc-client.ts";

/** `--host --port --token` of a client command. */
export const clientArgs = {
  host: { type: "string", description: "Host of the server", default: "localhost" },
  port: { type: "string", description: "Port of the server", default: "12310" },
  token: { type: "string", description: "Token the server requires (prefer env AS_SERVER_TOKEN)" },
} as const;

/** A validated server address and token. */
export interface Target {
  host: string;
  port: number;
  token?: string;
}

/** Validate `--host --port --token` (token falls back to `AS_SERVER_TOKEN`). */
export function targetOf(args: Record<string, unknown>, env: Record<string, string | undefined> = process.env): Target {
  const t: Target = { host: parseHost(args.host), port: parsePort(args.port, "--port") };
  const token = args.token !== undefined ? parseNonEmpty(args.token, "--token") : env.AS_SERVER_TOKEN || undefined;
  if (token) t.token = token;
  return t;
}

/** Open a management client; gRPC is loaded only now. */
export async function openClient(t: Target): Promise<RpcClient> {
  const { RpcClient } = await import("../../src/rpc/rpc-client.ts");
  return new RpcClient(t.host, t.port, t.token === undefined ? {} : { token: t.token });
}

/** An error's message with the token blanked out, on one line. */
export function safeMessage(e: unknown, t: Target): string {
  let msg = e instanceof Error ? e.message : String(e);
  if (t.token) msg = msg.split(t.token).join("<redacted>");
  return msg.replace(/\s*\n\s*/g, " ");
}
