/**
 * gRPC transport (client side): protocol requests to one independent agent server over one
 * grpc-js channel, one RPC per request kind (`proto/agent_server.proto`). gRPC statuses
 * become errors of the one tree (UNAVAILABLE → AgentServerNotAliveError, ...). Calls never
 * use `waitForReady`: a dead server must fail fast with UNAVAILABLE, not hang in backoff.
 * Loaded lazily by `connections.ts`, so processes that never talk gRPC never load grpc-js.
 */
import { FIRST_WAIT_HOLD_MS } from "../async-result.ts";
import * as grpc from "@grpc/grpc-js";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import { AgentServerNotAliveError, CancelledError, CodecError, DeadlineExceededError, ResourceExhaustedError, errorFromWire } from "../../core/errors.ts";
import { DEFAULT_LIMITS } from "../../core/limits.ts";
import type { Request, Response } from "../../core/protocol.ts";
import { SplitFrame, frameBytes } from "../../core/split-frame.ts";
import type { ClientTls } from "../../core/tls.ts";
import type { RequestOptions, Transport } from "../../core/transport.ts";
import { RequestBatcher } from "./grpc-batch.ts";
import { WaitSession } from "./grpc-session.ts";
import { CallbackLink, type WireCallbackAsk } from "./grpc-callbacks.ts";
import type { CallbackGrant } from "../../core/transport.ts";
import { CODE_OF_STATUS, FRAMING_HEADROOM_BYTES, RPC_OF, agentServerService, fromReply, grpcTarget, requestMessage, type WireReply } from "../../wire/grpc-proto.ts";

/** Options of `createGrpcTransport`. */
export interface GrpcTransportOptions {
  /** Token to present, read at every call (it may be set after the channel was made). */
  token: () => string | undefined;
  /** Largest message each way, bytes (default 32 MiB). */
  maxMessageBytes?: number | undefined;
  /** TLS material; undefined for a plaintext channel. */
  tls?: ClientTls | undefined;
  /**
   * Longest wait for a connection to be established, ms (default 5 000, what `isAlive` allows): a peer that
   * accepts TCP but never completes the HTTP/2 handshake fails requests UNAVAILABLE then.
   */
  connectTimeoutMs?: number | undefined;
}

/** Default for `GrpcTransportOptions.connectTimeoutMs`. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** `p`, but rejected DEADLINE_EXCEEDED / CANCELLED by the request's own deadline or signal. */
function bounded(p: Promise<void>, opts: RequestOptions | undefined, where: { host: string; port: number }, kind: string): Promise<void> {
  if (opts?.timeoutMs === undefined && !opts?.signal) return p;
  return new Promise<void>((resolve, reject) => {
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => done(new DeadlineExceededError(`no connection for ${kind} within its ${opts.timeoutMs} ms deadline`, where)), opts.timeoutMs);
    const onAbort = () => done(new CancelledError("request aborted", where));
    const done = (e?: Error) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (e) reject(e);
      else resolve();
    };
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    p.then(() => done(), (e: Error) => done(e));
  });
}

interface Pending {
  call: grpc.Call;
  reject(e: Error): void;
}

/** A Transport to the agent server at `host:port` over one gRPC channel. */
export function createGrpcTransport(host: string, port: number, opts: GrpcTransportOptions): Transport {
  return new GrpcTransport(host, port, opts);
}

class GrpcTransport implements Transport {
  #client: grpc.Client;
  readonly #methods: grpc.ServiceDefinition;
  readonly #where: { host: string; port: number };
  readonly #token: () => string | undefined;
  readonly #maxBytes: number;
  readonly #newClient: () => grpc.Client;
  readonly #pending = new Set<Pending>();
  /** Coalesces the requests of one tick into one Batch RPC (see grpc-batch.ts). */
  readonly #batcher: RequestBatcher;
  /** Long-poll waits ride one stream instead of holding an HTTP/2 stream each. */
  readonly #session: WaitSession;
  readonly #connectTimeoutMs: number;
  #connecting: Promise<void> | undefined;
  #broken: Error | undefined;
  /** The stream this server calls our callbacks back over (opened on the first callback sent). */
  #callbacks: CallbackLink | undefined;
  readonly #newCallbackClient: () => grpc.Client;
  onBroken?: (err: Error) => void;

  constructor(host: string, port: number, opts: GrpcTransportOptions) {
    this.#where = { host, port };
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#token = opts.token;
    this.#maxBytes = opts.maxMessageBytes ?? DEFAULT_LIMITS.maxMessageBytes;
    this.#methods = agentServerService();
    const Client = grpc.makeGenericClientConstructor(this.#methods, "AgentServer");
    const wire = this.#maxBytes + FRAMING_HEADROOM_BYTES;
    const options: grpc.ChannelOptions = {
      "grpc.max_send_message_length": wire,
      "grpc.max_receive_message_length": wire,
      // Notice a silently dead peer within ~15 s even on an idle channel.
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1_000,
    };
    const creds = channelCredentials(host, opts.tls, options);
    this.#newClient = () => new Client(grpcTarget(host, port), creds, options);
    // A session of its own, so unref'ing it (callbacks never keep the caller alive) affects no call.
    this.#newCallbackClient = () => new Client(grpcTarget(host, port), creds, { ...options, "grpc.use_local_subchannel_pool": 1 });
    this.#client = this.#newClient();
    this.#batcher = new RequestBatcher({
      solo: (req, o) => this.#unary(req, o),
      open: (msg, deadline) => {
        const def = this.#methods.Batch!;
        return this.#channel().makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize as (b: Buffer) => never, msg, this.#metadata(), deadline === undefined ? {} : { deadline });
      },
      statusError: (e) => this.#statusError(e),
      where: this.#where,
      maxBytes: this.#maxBytes,
    });
    this.#session = new WaitSession({
      open: () => {
        const def = this.#methods.Session!;
        return this.#channel().makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize as (b: Buffer) => never, this.#metadata());
      },
      statusError: (e) => this.#statusError(e),
      where: this.#where,
      fallback: (req, o) => (this.#batcher.accepts(req, o) ? this.#batcher.add(req, o) : this.#unary(req, o)),
    });
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    const token = this.#token();
    if (token) md.set("authorization", `Bearer ${token}`);
    return md;
  }

  /**
   * The channel to use now. A channel in TRANSIENT_FAILURE (the server was down when it last
   * tried) fails every call until its reconnect backoff runs out; a fresh channel connects at
   * once instead, so a call made right after the server is back succeeds, and one made while
   * it is still down fails fast (connection refused) all the same.
   */
  #channel(): grpc.Client {
    if (this.#client.getChannel().getConnectivityState(false) === grpc.connectivityState.TRANSIENT_FAILURE) {
      this.#client.close();
      this.#client = this.#newClient();
    }
    return this.#client;
  }

  request(req: Request, opts?: RequestOptions): Promise<Response> {
    if (this.#broken) return Promise.reject(this.#broken);
    const gate = this.#whenConnected();
    if (!gate) return this.#route(req, opts);
    // Not connected yet: the request waits for the connection, within its own deadline.
    const started = performance.now();
    return bounded(gate, opts, this.#where, req.t).then(() => {
      if (opts?.timeoutMs === undefined) return this.#route(req, opts);
      const left = Math.max(1, Math.round(opts.timeoutMs - (performance.now() - started)));
      return this.#route(req, { ...opts, timeoutMs: left });
    });
  }

  #route(req: Request, opts?: RequestOptions): Promise<Response> {
    // Waits and stream pulls may be held for seconds: they ride the session stream. A wait held
    // briefly (the first one behind its call) rides the call's batch instead: one round trip.
    const longPoll = req.t === "next" || (req.t === "wait" && req.timeoutMs > FIRST_WAIT_HOLD_MS);
    if (longPoll && !this.#broken) return this.#session.request(req, opts);
    if (!this.#broken && this.#batcher.accepts(req, opts)) return this.#batcher.add(req, opts);
    return this.#unary(req, opts);
  }

  /**
   * Undefined when the channel is connected; else a promise that resolves once it is, or
   * rejects UNAVAILABLE when the server refuses the connection (at once) or has not completed
   * it within the connect deadline (a silent peer: grpc-js alone would wait for ever).
   */
  #whenConnected(): Promise<void> | undefined {
    if (this.#connecting) return this.#connecting;
    const client = this.#channel();
    const ch = client.getChannel();
    let state = ch.getConnectivityState(true);
    if (state === grpc.connectivityState.READY) return undefined;
    const deadline = Date.now() + this.#connectTimeoutMs;
    const target = grpcTarget(this.#where.host, this.#where.port);
    const p = new Promise<void>((resolve, reject) => {
      const step = (): void => {
        if (state === grpc.connectivityState.READY) return resolve();
        if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) {
          return reject(new AgentServerNotAliveError(`agent server ${target} is not reachable: connection failed`, this.#where));
        }
        ch.watchConnectivityState(state, deadline, (err) => {
          if (err) {
            // Start over on the next request: this channel may be stuck in a handshake.
            if (this.#client === client) {
              client.close();
              this.#client = this.#newClient();
            }
            return reject(new AgentServerNotAliveError(`agent server ${target} is not reachable: no connection within ${this.#connectTimeoutMs} ms`, this.#where));
          }
          state = ch.getConnectivityState(true);
          step();
        });
      };
      step();
    });
    this.#connecting = p;
    const clear = () => {
      if (this.#connecting === p) this.#connecting = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  /** One request as its own RPC. */
  #unary(req: Request, opts?: RequestOptions): Promise<Response> {
    if (this.#broken) return Promise.reject(this.#broken);
    if (opts?.signal?.aborted) return Promise.reject(new CancelledError("request aborted", this.#where));
    const rpc = RPC_OF[req.t];
    const def = rpc === undefined ? undefined : this.#methods[rpc];
    if (!def) return Promise.reject(new CodecError(`no RPC for request kind ${req.t}`, { ...this.#where, code: "INTERNAL" }));
    // Checked before anything is sent: a frame over our limit never leaves this process.
    const size = payloadBytes(req);
    if (size > this.#maxBytes) {
      return Promise.reject(new ResourceExhaustedError(`${req.t} request of ${size} bytes is over the ${this.#maxBytes}-byte message limit (not sent)`, this.#where));
    }
    const client = this.#channel();
    const md = this.#metadata();
    const callOpts: grpc.CallOptions = {};
    if (opts?.timeoutMs !== undefined) callOpts.deadline = Date.now() + opts.timeoutMs;
    const msg = requestMessage(req);
    return new Promise<Response>((resolve, reject) => {
      let p: Pending | undefined;
      let onAbort: (() => void) | undefined;
      const settle = () => {
        if (p) this.#pending.delete(p);
        if (onAbort) opts!.signal!.removeEventListener("abort", onAbort);
      };
      const fail = (e: Error) => {
        settle();
        reject(e);
      };
      const ok = (r: WireReply) => {
        settle();
        const res = fromReply(r);
        if (res) resolve(res);
        else reject(new CodecError(`empty reply to ${req.t}`, this.#where));
      };
      let call: grpc.Call;
      try {
        if (def.responseStream) {
          call = this.#download(client, def, msg, md, callOpts, ok, (e) => fail(this.#statusError(e)));
        } else {
          call = client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize as (b: Buffer) => WireReply, msg, md, callOpts, (err, reply) => {
            if (err) fail(this.#statusError(err));
            else if (reply) ok(reply);
            else fail(new CodecError(`no reply to ${req.t}`, this.#where));
          });
        }
      } catch (e) {
        // grpc-js serializes synchronously: a malformed request throws here.
        return fail(new CodecError(`cannot send ${req.t}: ${(e as Error).message}`, this.#where));
      }
      p = { call, reject: fail };
      this.#pending.add(p);
      if (opts?.signal) {
        onAbort = () => {
          fail(new CancelledError("request aborted", this.#where));
          call.cancel();
        };
        opts.signal.addEventListener("abort", onAbort, { once: true });
      }
    });
  }

  /** Collect a Download stream into one `value` reply (or its one `error` reply). */
  #download(client: grpc.Client, def: grpc.MethodDefinition<object, unknown>, msg: object, md: grpc.Metadata, callOpts: grpc.CallOptions, ok: (r: WireReply) => void, fail: (e: grpc.ServiceError | Error) => void): grpc.Call {
    const stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize as (b: Buffer) => WireReply, msg, md, callOpts);
    const chunks: Uint8Array[] = [];
    let size = 0;
    let done = false;
    // A file may be at most the larger of our message limit and the server's file cap.
    const cap = Math.max(this.#maxBytes, DEFAULT_LIMITS.maxMessageBytes);
    stream.on("data", (r: WireReply) => {
      if (done) return;
      if (r.value === undefined) {
        done = true;
        ok(r);
        stream.cancel();
        return;
      }
      size += r.value.byteLength;
      if (size > cap) {
        done = true;
        fail(new ResourceExhaustedError(`download is over ${cap} bytes`, this.#where));
        stream.cancel();
        return;
      }
      chunks.push(frameBytes(r.value));
    });
    stream.on("error", (e: grpc.ServiceError) => {
      if (!done) fail(e);
      done = true;
    });
    stream.on("status", (s: grpc.StatusObject) => {
      if (done || s.code !== grpc.status.OK) return;
      done = true;
      ok({ value: Buffer.concat(chunks, size) });
    });
    return stream;
  }

  #statusError(e: grpc.ServiceError | Error): Error {
    if (!("code" in e) || typeof e.code !== "number") return new AgentServerNotAliveError(e.message, this.#where);
    const code = CODE_OF_STATUS.get(e.code) ?? "UNKNOWN";
    const details = e.details || e.message;
    const message = code === "UNAVAILABLE" ? `agent server ${grpcTarget(this.#where.host, this.#where.port)} is not reachable: ${details}` : details;
    return errorFromWire({ code, message }, this.#where);
  }

  /** Callbacks sent to this server are called back over a Callbacks stream this process opens. */
  callbackRoute(): CallbackGrant | undefined {
    if (this.#broken) return undefined;
    let link = this.#callbacks;
    if (!link || link.closed) {
      const def = this.#methods.Callbacks!;
      const client = this.#newCallbackClient();
      const call = client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize as (b: Buffer) => WireCallbackAsk, this.#metadata());
      link = this.#callbacks = new CallbackLink(call, () => {
        if (this.#callbacks === link) this.#callbacks = undefined;
        client.close();
      });
    }
    return link.grant;
  }

  abort(reason: Error): void {
    if (this.#broken) return;
    this.#broken = reason;
    this.#callbacks?.close();
    this.#batcher.abort(reason);
    this.#session.abort(reason);
    const all = [...this.#pending];
    this.#pending.clear();
    for (const p of all) {
      p.reject(reason);
      p.call.cancel();
    }
    this.#client.close();
    this.onBroken?.(reason);
  }
}

/** Bytes of the codec frames (or other byte fields, split frames too) a request carries. */
function payloadBytes(req: Request): number {
  let n = 0;
  for (const v of Object.values(req)) if (v instanceof Uint8Array || v instanceof SplitFrame) n += v.byteLength;
  return n;
}

/**
 * Channel credentials: plaintext, or TLS verified against `tls.ca` (the system roots when
 * absent) with an optional client certificate. For an IP-literal host the TLS server name
 * (SNI) cannot be the address (Bun refuses it), so a placeholder name is sent and the
 * certificate is still checked against the address itself (its IP subjectAltName).
 */
function channelCredentials(host: string, tls: ClientTls | undefined, options: grpc.ChannelOptions): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  const bare = host.replace(/^\[|\]$/g, "");
  const verify: grpc.VerifyOptions = {};
  if (isIP(bare)) {
    options["grpc.ssl_target_name_override"] = "ip-literal.invalid";
    verify.checkServerIdentity = (_name, cert) => checkServerIdentity(bare, cert);
  }
  return grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null, verify);
}
