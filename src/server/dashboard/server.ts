/**
 * The dashboard's web server (`as-server dashboard`): one page (dashboard.html, embedded in
 * the binary as text), a Server-Sent Events stream of snapshots (every second while someone
 * watches), and two actions: delete an agent, stop a server.
 *
 * Security: it binds loopback unless told otherwise, and off loopback it refuses to start
 * without an access token. With a token, every request must carry it (`?token=`), compared in
 * constant time. Actions are POSTs that must carry an `x-actorscope` header, which a page of
 * another origin cannot send without a CORS preflight this server never answers. The tokens
 * of the agent servers stay here: the browser never sees them.
 */
import page from "./dashboard.html" with { type: "text" };
import { timingSafeEqual } from "node:crypto";
import type { ClientTlsOption } from "../../core/tls.ts";
import { collect, type ServerSnapshot, type ServerSource } from "./collect.ts";

// `type: "text"` makes the import the file's text (bun-types types every .html as a bundle).
const html = page as unknown as string;

/** Options of `serveDashboard`. */
export interface DashboardOptions {
  source: ServerSource;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
  /** Access token the browser must present (required off loopback). */
  token?: string;
  /** Token and TLS for the agent servers. */
  serverToken?: string;
  serverTls?: ClientTlsOption;
  /** How often snapshots are taken while a page watches, ms. Default 1000. */
  intervalMs?: number;
}

/** A running dashboard. */
export interface Dashboard {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Start the dashboard's web server. */
export function serveDashboard(opts: DashboardOptions): Dashboard {
  const host = opts.host ?? "127.0.0.1";
  const interval = opts.intervalMs ?? 1000;
  const client = { ...(opts.serverToken ? { token: opts.serverToken } : {}), ...(opts.serverTls ? { tls: opts.serverTls } : {}) };
  const watchers = new Set<ReadableStreamDefaultController<Uint8Array>>();
  const enc = new TextEncoder();
  let timer: Timer | undefined;
  let last: { at: number; servers: ServerSnapshot[] } | undefined;
  let taking: Promise<void> | undefined;

  const take = (): Promise<void> =>
    (taking ??= collect(opts.source, { ...client, withAgents: true })
      .then(
        (servers) => {
          last = { at: Date.now(), servers };
        },
        (e: unknown) => {
          last = { at: Date.now(), servers: [{ id: "registry", host: "-", port: 0, alive: false, error: (e as Error).message }] };
        },
      )
      .then(() => {
        const frame = enc.encode(`data: ${JSON.stringify(last)}\n\n`);
        for (const w of watchers) {
          try {
            w.enqueue(frame);
          } catch {
            watchers.delete(w);
          }
        }
      })
      .finally(() => {
        taking = undefined;
      }));

  const watch = (): void => {
    if (timer === undefined) timer = setInterval(() => void take(), interval);
  };
  const unwatch = (c: ReadableStreamDefaultController<Uint8Array>): void => {
    watchers.delete(c);
    if (watchers.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  const allowed = (url: URL): boolean => {
    if (!opts.token) return true;
    const got = Buffer.from(url.searchParams.get("token") ?? "");
    const want = Buffer.from(opts.token);
    return got.length === want.length && timingSafeEqual(got, want);
  };

  const server = Bun.serve({
    hostname: host,
    port: opts.port ?? 0,
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (!allowed(url)) return new Response("a valid ?token= is required\n", { status: 401 });
      if (req.method === "GET" && url.pathname === "/") return new Response(html, { headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } });
      if (req.method === "GET" && url.pathname === "/api/servers") {
        await take();
        return Response.json(last);
      }
      if (req.method === "GET" && url.pathname === "/events") {
        let me: ReadableStreamDefaultController<Uint8Array> | undefined;
        const stream = new ReadableStream<Uint8Array>({
          start(c) {
            me = c;
            watchers.add(c);
            watch();
            void take();
          },
          cancel() {
            if (me) unwatch(me);
          },
        });
        req.signal.addEventListener("abort", () => me && unwatch(me));
        return new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" } });
      }
      if (req.method === "POST" && (url.pathname === "/api/delete" || url.pathname === "/api/stop")) {
        if (req.headers.get("x-actorscope") !== "1") return new Response("missing x-actorscope header\n", { status: 403 });
        return act(url.pathname, await req.json().catch(() => null));
      }
      return new Response("not found\n", { status: 404 });
    },
  });

  /** Delete an agent or stop a server, if it is one the dashboard shows (never an arbitrary address). */
  async function act(path: string, body: unknown): Promise<Response> {
    const b = body as { host?: unknown; port?: unknown; oid?: unknown } | null;
    if (!b || typeof b.host !== "string" || typeof b.port !== "number") return new Response("body must be { host, port[, oid] }\n", { status: 400 });
    await take();
    if (!last?.servers.some((s) => s.host === b.host && s.port === b.port)) return new Response("not a server of this dashboard\n", { status: 404 });
    const { RpcClient } = await import("../../client/rpc-client.ts");
    const c = new RpcClient(b.host, b.port, client);
    try {
      if (path === "/api/delete") {
        if (typeof b.oid !== "string") return new Response("oid missing\n", { status: 400 });
        await c.deleteAgent(b.oid);
      } else await c.stop();
      void take();
      return new Response("ok\n");
    } catch (e) {
      return new Response(`${(e as Error).message}\n`, { status: 502 });
    } finally {
      c.close();
    }
  }

  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shown}:${server.port}/`,
    port: server.port ?? 0,
    async stop() {
      if (timer !== undefined) clearInterval(timer);
      for (const w of watchers) {
        try {
          w.close();
        } catch {
          // already closed
        }
      }
      watchers.clear();
      await server.stop(true);
    },
  };
}
