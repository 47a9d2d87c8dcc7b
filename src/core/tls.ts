/**
 * TLS material for gRPC connections and servers: PEM given as contents or as a file path, read
 * once, and the process-wide client default from the environment. Plain data only: grpc-js
 * turns it into credentials where it is loaded (transports/grpc.ts, server/bindings/grpc/binding.ts).
 *
 * Environment (client side, for every gRPC connection that was given no TLS setting of its
 * own, so that references to TLS servers work from any process, servers included):
 * - `AS_TLS_CA`: path of the CA certificate(s) that sign the servers' certificates; when set,
 *   connections use TLS verified against it;
 * - `AS_TLS_CERT` + `AS_TLS_KEY`: paths of a client certificate and key, for servers that
 *   require one (`tlsClientCa`); with these alone, TLS against the system's roots.
 */

/** PEM text, a Buffer of it, or the path of a PEM file. */
export type PemSource = string | Uint8Array;

/**
 * TLS for a client connection: `ca` verifies the server (the system roots when absent); `cert`
 * and `key` present a client certificate to servers that require one. `true` is TLS against the
 * process default (`AS_TLS_CA`, else the system roots); `false` forces plaintext.
 */
export type ClientTlsOption = { ca?: PemSource; cert?: PemSource; key?: PemSource } | boolean;

/** Client TLS material, read. */
export interface ClientTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** Server TLS material, read. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** When set, clients must present a certificate signed by one of these CAs. */
  clientCa?: Buffer;
}

/** True for a string that holds PEM text rather than naming a file. */
export function isPemText(s: string): boolean {
  return s.includes("-----BEGIN ");
}

/**
 * Read a PEM source: contents are used as they are, a path is read now. Throws a TypeError
 * naming `what` (never the contents: a key must not end up in a log).
 */
export function readPem(src: PemSource, what: string): Buffer {
  if (src instanceof Uint8Array) {
    if (src.byteLength === 0) throw new TypeError(`${what} is empty`);
    return Buffer.from(src);
  }
  if (typeof src !== "string" || !src) throw new TypeError(`${what} must be PEM text, a Buffer, or a file path`);
  if (isPemText(src)) return Buffer.from(src);
  let buf: Buffer;
  try {
    // node:fs only when a file is named: loading it costs every process ~6 ms at start.
    buf = (require("node:fs") as typeof import("node:fs")).readFileSync(src);
  } catch (e) {
    throw new TypeError(`${what}: cannot read ${src}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!isPemText(buf.toString("latin1"))) throw new TypeError(`${what}: ${src} holds no PEM data`);
  return buf;
}

/** Resolve a client TLS option; undefined means plaintext. */
export function clientTls(opt: ClientTlsOption | undefined, env: Record<string, string | undefined> = process.env): ClientTls | undefined {
  if (opt === undefined || opt === false) return undefined;
  if (opt === true) return envTls(env) ?? {};
  if (opt === null || typeof opt !== "object") throw new TypeError("tls must be true, false, or { ca?, cert?, key? }");
  if ((opt.cert === undefined) !== (opt.key === undefined)) throw new TypeError("tls.cert and tls.key go together");
  const out: ClientTls = {};
  if (opt.ca !== undefined) out.ca = readPem(opt.ca, "tls.ca");
  if (opt.cert !== undefined) out.cert = readPem(opt.cert, "tls.cert");
  if (opt.key !== undefined) out.key = readPem(opt.key, "tls.key");
  return out;
}

/** The process default from `AS_TLS_CA` / `AS_TLS_CERT` / `AS_TLS_KEY`; undefined when none is set. */
export function envTls(env: Record<string, string | undefined> = process.env): ClientTls | undefined {
  const ca = env.AS_TLS_CA || undefined;
  const cert = env.AS_TLS_CERT || undefined;
  const key = env.AS_TLS_KEY || undefined;
  if (!ca && !cert && !key) return undefined;
  if (!cert !== !key) throw new TypeError("AS_TLS_CERT and AS_TLS_KEY go together");
  const out: ClientTls = {};
  if (ca) out.ca = readPem(ca, "AS_TLS_CA");
  if (cert && key) {
    out.cert = readPem(cert, "AS_TLS_CERT");
    out.key = readPem(key, "AS_TLS_KEY");
  }
  return out;
}

/** Resolve a server's TLS options; undefined when it serves plaintext. */
export function serverTls(o: { tlsCert?: PemSource | undefined; tlsKey?: PemSource | undefined; tlsClientCa?: PemSource | undefined }): ServerTls | undefined {
  if (o.tlsCert === undefined && o.tlsKey === undefined) {
    if (o.tlsClientCa !== undefined) throw new TypeError("tlsClientCa needs tlsCert and tlsKey (client certificates are checked over TLS only)");
    return undefined;
  }
  if (o.tlsCert === undefined || o.tlsKey === undefined) throw new TypeError("tlsCert and tlsKey go together");
  const out: ServerTls = { cert: readPem(o.tlsCert, "tlsCert"), key: readPem(o.tlsKey, "tlsKey") };
  if (o.tlsClientCa !== undefined) out.clientCa = readPem(o.tlsClientCa, "tlsClientCa");
  return out;
}
