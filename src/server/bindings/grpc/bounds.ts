/**
 * Bounds of the gRPC binding: how long, how many and how much a peer can make a server hold
 * at the transport level, before and around the servicer's own limits (`Limits`, capacity).
 * Each field names the threat it guards against; `DEFAULT_GRPC_BOUNDS` holds the defaults
 * every server starts from.
 */

/** Transport-level bounds of one gRPC server. */
export interface GrpcBounds {
  /**
   * Longest time, in ms, from a call's headers to the last byte of its request (the message and
   * the end of the client's half of the stream); then the call ends with DEADLINE_EXCEEDED and
   * what arrived of it is dropped. Threat: a slowloris client that sends most of a large message
   * and stalls, holding what it sent. Default 30 s (a 32 MiB message at ~1 MiB/s).
   */
  receiveTimeoutMs: number;
  /**
   * Calls one connection may have open at once (the HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`
   * the server advertises; grpc-js otherwise advertises 2³²−1). Threat: one connection opening
   * thousands of streams, each with a partial message. Clients queue calls past it. Default 256.
   */
  maxStreamsPerConnection: number;
  /**
   * A connection with no call open for this long, in ms, is closed (GOAWAY; a client reconnects
   * on its next call). Threat: idle connections piling up. Default 5 minutes.
   */
  connectionIdleMs: number;
  /**
   * Connections open at once; past it new ones are closed as they are accepted. Threat: a peer
   * opening connections until the process runs out of file descriptors (then downloads, Redis
   * and every other socket fail too). Default 4096.
   */
  maxConnections: number;
  /**
   * Downloads served at once; past it a download answers RESOURCE_EXHAUSTED at once. Threat:
   * many downloads of a large file by clients that never read, each holding a file handle and
   * its send buffers. Default 16.
   */
  maxConcurrentDownloads: number;
  /**
   * A download whose client has not taken the next chunk for this long, in ms, is cancelled,
   * freeing its slot. Threat: clients that start downloads and never read, holding every
   * download slot. Default 30 s.
   */
  downloadStallMs: number;
}

/** The defaults every gRPC server starts from. */
export const DEFAULT_GRPC_BOUNDS: Readonly<GrpcBounds> = Object.freeze({
  receiveTimeoutMs: 30_000,
  maxStreamsPerConnection: 256,
  connectionIdleMs: 5 * 60_000,
  maxConnections: 4096,
  maxConcurrentDownloads: 16,
  downloadStallMs: 30_000,
});
