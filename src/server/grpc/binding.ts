/**
 * The gRPC binding of the servicer: a grpc-js `Server` serving `proto/agent_server.proto`.
 * Each RPC becomes `servicer.handle({ t, ...fields })` and the answer goes back as a `Reply`;
 * the servicer owns every decision, this file only moves messages, checks the token, and
 * turns a cancelled call into an aborted signal.
 *
 * Transport-level failures use gRPC statuses (UNAUTHENTICATED before anything runs,
 * RESOURCE_EXHAUSTED from grpc-js for messages over the limit, UNAVAILABLE while shutting
 * down); everything the servicer reports travels inside the Reply.
 */
import * as grpc from "@grpc/grpc-js";
import { createHash, timingSafeEqual } from "node:crypto";
import type { Request } from "../../rpc/protocol.ts";
import type { ServerTls } from "../../rpc/tls.ts";
import { DOWNLOAD_CHUNK_BYTES, FRAMING_HEADROOM_BYTES, RPC_OF, agentServerService, grpcTarget, toReply, type WireReply } from "../../rpc/transports/grpc-proto.ts";
import type { Servicer } from "../servicer.ts";
import { batchHandler } from "./batch.ts";

/** The one message for every authentication failure: it must not tell a wrong token from a missing one. */
export const UNAUTHENTICATED_MESSAGE = "invalid or missing authentication token";

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
  const wire = opts.maxMessageBytes + FRAMING_HEADROOM_BYTES;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": wire,
    "grpc.max_send_message_length": wire,
  });
  const authorized = makeAuth(opts.token);
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [t, rpc] of Object.entries(RPC_OF) as Array<[Request["t"], string]>) {
    impl[rpc] = t === "download" ? download(opts.servicer, authorized) : unary(opts.servicer, authorized, t);
  }
  impl.Batch = batchHandler({
    servicer: opts.servicer,
    authorized,
    cancelSignal: (call) => cancelSignal(call as unknown as grpc.ServerWritableStream<object, WireReply>),
    unauthenticated: UNAUTHENTICATED,
    invalid: (details) => ({ code: grpc.status.INVALID_ARGUMENT, details }),
  });
  server.addService(agentServerService(), impl);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(grpcTarget(opts.bindHost, opts.port), serverCredentials(opts.tls), (err, p) => {
      if (!err) return resolve(p);
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

type Auth = (md: grpc.Metadata) => boolean;

/**
 * Token check in constant time: both sides are hashed first, so `timingSafeEqual` compares
 * equal lengths and the time taken reveals neither the token nor its length.
 */
function makeAuth(token: string | undefined): Auth {
  if (!token) return () => true;
  const want = sha256(token);
  return (md) => {
    const given = presentedToken(md);
    return timingSafeEqual(sha256(given ?? ""), want) && given !== undefined;
  };
}

function presentedToken(md: grpc.Metadata): string | undefined {
  const auth = md.get("authorization")[0];
  if (typeof auth === "string") {
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    if (m) return m[1];
  }
  const x = md.get("x-as-token")[0];
  return typeof x === "string" ? x : undefined;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

const UNAUTHENTICATED: Partial<grpc.StatusObject> = { code: grpc.status.UNAUTHENTICATED, details: UNAUTHENTICATED_MESSAGE };

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

function unary(servicer: Servicer, authorized: Auth, t: Request["t"]): grpc.handleUnaryCall<object, WireReply> {
  return (call, cb) => {
    if (!authorized(call.metadata)) return cb(UNAUTHENTICATED);
    const c = cancelSignal(call);
    servicer.handle({ ...call.request, t }, c.signal).then((r) => {
      c.end();
      cb(null, toReply(r));
    });
  };
}

function download(servicer: Servicer, authorized: Auth): grpc.handleServerStreamingCall<object, WireReply> {
  return (call) => {
    if (!authorized(call.metadata)) {
      call.emit("error", UNAUTHENTICATED);
      return;
    }
    const c = cancelSignal(call);
    servicer.handle({ ...call.request, t: "download" }, c.signal).then(async (r) => {
      if (r.t === "value") {
        // At least one chunk, so an empty file is an empty value and not "no answer".
        for (let at = 0; at === 0 || at < r.value.byteLength; at += DOWNLOAD_CHUNK_BYTES) {
          if (c.signal.aborted) return;
          if (!call.write({ value: r.value.subarray(at, at + DOWNLOAD_CHUNK_BYTES) })) await drained(call);
        }
      } else {
        call.write(toReply(r));
      }
      c.end();
      call.end();
    });
  };
}

/** Resolves when the stream can take more, or the client went away. */
function drained(stream: grpc.ServerWritableStream<object, WireReply>): Promise<void> {
  const call = stream as unknown as NodeJS.EventEmitter;
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("cancelled", done);
      resolve();
    };
    call.on("drain", done);
    call.on("cancelled", done);
  });
}
