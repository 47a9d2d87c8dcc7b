/**
 * The gRPC binding of the servicer: a grpc-js `Server` serving `proto/agent_server.proto`.
 * Each RPC becomes `servicer.handle({ t, ...fields })` and the answer goes back as a `Reply`;
 * the servicer owns every decision, this file only moves messages and turns a cancelled call
 * into an aborted signal. `Batch` (batch.ts) and `Download` (download.ts, streamed from disk)
 * have their own handlers; the token check and the receive deadline happen before any
 * handler, on the call's metadata (guard.ts); the transport bounds are in bounds.ts.
 *
 * Transport-level failures use gRPC statuses (UNAUTHENTICATED before a byte of the message is
 * read, RESOURCE_EXHAUSTED from grpc-js for messages over the limit, DEADLINE_EXCEEDED for a
 * request that does not arrive in time, UNAVAILABLE while shutting down); everything the
 * servicer reports travels inside the Reply.
 */
import * as grpc from "@grpc/grpc-js";
import type { Request } from "../../../core/protocol.ts";
import type { ServerTls } from "../../../core/tls.ts";
import { FRAMING_HEADROOM_BYTES, RPC_OF, agentServerService, grpcTarget, toReply, type WireReply } from "../../../wire/grpc-proto.ts";
import { DEFAULT_MAX_FILE_BYTES } from "../../files.ts";
import type { Servicer } from "../../servicer.ts";
import { batchHandler, withCappedBatch } from "./batch.ts";
import { sessionHandler } from "./session.ts";
import { callbacksHandler } from "./callbacks.ts";
import { DEFAULT_GRPC_BOUNDS, type GrpcBounds } from "./bounds.ts";
import { downloadHandler } from "./download.ts";
import { callGuard, connectionClosed, makeAuth } from "./guard.ts";

export { UNAUTHENTICATED_MESSAGE } from "./guard.ts";

/** Options of `bindGrpc`. */
export interface GrpcBindingOptions {
  servicer: Servicer;
  /** Address to listen on (e.g. `127.0.0.1`, `0.0.0.0`, `localhost`). */
  bindHost: string;
  /** Port to listen on; 0 picks a free one (read it back from `GrpcBinding.port`). */
  port: number;
  /** Shared secret every call must present; undefined serves without authentication. */
  token?: string | undefined;
  /** Largest codec frame accepted or sent; gRPC messages may exceed it by framing headroom. */
  maxMessageBytes: number;
  /** Serve over TLS with this certificate (and require client certificates when `clientCa` is set). */
  tls?: ServerTls | undefined;
  /** Transport-level bounds; each unset field takes its `DEFAULT_GRPC_BOUNDS` value. */
  bounds?: Partial<GrpcBounds> | undefined;
}

/** A listening gRPC server. */
export interface GrpcBinding {
  /** The port actually bound. */
  readonly port: number;
  /**
   * Stop accepting calls (new ones fail UNAVAILABLE), let in-flight calls finish for up to
   * `graceMs`, then cut what is left. Idempotent.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/** Serve `servicer` over gRPC; resolves once the port is bound and calls are accepted. */
export async function bindGrpc(opts: GrpcBindingOptions): Promise<GrpcBinding> {
  const bounds: GrpcBounds = { ...DEFAULT_GRPC_BOUNDS, ...definedOnly(opts.bounds ?? {}) };
  const wire = opts.maxMessageBytes + FRAMING_HEADROOM_BYTES;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": wire,
    "grpc.max_send_message_length": wire,
    "grpc.max_concurrent_streams": bounds.maxStreamsPerConnection,
    "grpc.max_connection_idle_ms": bounds.connectionIdleMs,
    // The token is checked on each call's metadata, before grpc-js reads its message (guard.ts).
    interceptors: [callGuard({ authorized: makeAuth(opts.token), receiveTimeoutMs: bounds.receiveTimeoutMs })],
  });
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [t, rpc] of Object.entries(RPC_OF) as Array<[Request["t"], string]>) {
    if (t !== "download") impl[rpc] = unary(opts.servicer, t);
  }
  impl.Download = downloadHandler({
    servicer: opts.servicer,
    // As large as a client accepts by default, or as the message limit when that is larger.
    maxBytes: Math.max(opts.maxMessageBytes, DEFAULT_MAX_FILE_BYTES),
    maxConcurrent: bounds.maxConcurrentDownloads,
    stallMs: bounds.downloadStallMs,
    cancelSignal: (call) => cancelSignal(call),
  });
  impl.Batch = batchHandler({
    servicer: opts.servicer,
    cancelSignal: (call) => cancelSignal(call as unknown as grpc.ServerWritableStream<object, WireReply>),
    invalid: (details) => ({ code: grpc.status.INVALID_ARGUMENT, details }),
  });
  // Long-poll waits ride one stream per client instead of an HTTP/2 stream each (session.ts).
  impl.Session = sessionHandler({
    servicer: opts.servicer,
    invalid: (details) => ({ code: grpc.status.INVALID_ARGUMENT, details }),
  });
  // Callbacks: the caller's stream its callbacks are called back over (callbacks.ts).
  impl.Callbacks = callbacksHandler();
  server.addService(withCappedBatch(agentServerService()), impl);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(grpcTarget(opts.bindHost, opts.port), serverCredentials(opts.tls), (err, p) => {
      if (!err) {
        capConnections(server, bounds.maxConnections);
        return resolve(p);
      }
      server.forceShutdown();
      reject(err);
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port,
    shutdown(graceMs = 5000) {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return closing;
    },
  };
}

/** Plaintext, or TLS with our certificate; with `clientCa`, a client certificate it signed is required. */
function serverCredentials(tls: ServerTls | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
}

/** An AbortSignal that fires when the client cancels — not when grpc-js reports our own end. */
function cancelSignal(call: grpc.ServerUnaryCall<object, WireReply> | grpc.ServerWritableStream<object, WireReply>): { signal: AbortSignal; end(): void } {
  const ctl = new AbortController();
  let ended = false;
  // grpc-js emits 'cancelled' even after a call we ended normally: only a cancel before that counts.
  (call as unknown as NodeJS.EventEmitter).once("cancelled", () => {
    if (!ended) ctl.abort();
  });
  return { signal: ctl.signal, end: () => void (ended = true) };
}

function unary(servicer: Servicer, t: Request["t"]): grpc.handleUnaryCall<object, WireReply> {
  return (call, cb) => {
    const c = cancelSignal(call);
    servicer.handle({ ...call.request, t }, c.signal, connectionClosed(call.metadata)).then((r) => {
      c.end();
      cb(null, toReply(r));
    });
  };
}

/**
 * Cap the connections each listening HTTP/2 server of `server` accepts (`net.Server`'s
 * `maxConnections`: past it, new sockets are closed on accept). grpc-js exposes no such option
 * and keeps its HTTP/2 servers in a private map (`http2Servers`, grpc-js 1.14); if that is not
 * there, the cap is not applied.
 */
function capConnections(server: grpc.Server, max: number): void {
  const listeners = (server as unknown as { http2Servers?: Map<{ maxConnections?: number }, unknown> }).http2Servers;
  if (!(listeners instanceof Map)) return;
  for (const h of listeners.keys()) h.maxConnections = max;
}

/** `o` without its undefined fields, so they do not override defaults. */
function definedOnly<T extends object>(o: Partial<T>): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
