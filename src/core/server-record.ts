/**
 * What a server keeps in a registry (Redis) about itself, and the key names. Shared by the
 * server that writes its record (`server/registry.ts`) and the clients that read them
 * (`client/registry.ts`); imports nothing, so it costs nothing to either side.
 *
 * Layout in Redis (all under `as:reg:`):
 * - `as:reg:s:<id>`: the record as JSON, with a short expiry (`REGISTRY_TTL_MS`) that every
 *   heartbeat renews: a server killed with -9 disappears when it runs out;
 * - `as:reg:ids`: a sorted set of ids scored by when their record expires, so that listing
 *   reads one set and one MGET instead of scanning the keyspace;
 * - `as:reg:events`: a channel where servers announce `join <id>` and `leave <id>`, so that
 *   watchers see joins and clean leaves at once (expiries are found by polling the set).
 */

/** A server's registry record. Never holds a secret: whether a token is required, not the token. */
export interface ServerRecord {
  /** Server id (`launcher.serverId`). */
  id: string;
  /** Host and port as clients reach the server (what it hands out in references). */
  host: string;
  port: number;
  pid: number;
  /** actorscope version of the server. */
  version: string;
  /** Async calls it runs at once. */
  capacity: number;
  /** Objects held. */
  agents: number;
  /** Async calls running or queued. */
  pending: number;
  /** `Date.now()` at launch. */
  startedAt: number;
  /** `Date.now()` of the last heartbeat. */
  lastSeen: number;
  /** Calls answered since launch, and those that failed (any code but OK). */
  calls: number;
  errors: number;
  /** Calls and failed calls per second over the last few seconds. */
  callRate: number;
  errorRate: number;
  /** Resident memory of the server process, bytes. */
  rss: number;
  /** Times its objects were restarted after a crash. */
  restarts: number;
  /** Does it serve over TLS / require a token (or client certificates)? */
  tls: boolean;
  tokenRequired: boolean;
  /** Prometheus port, when metrics are served. */
  metricsPort?: number;
}

/** How long a record lives without a heartbeat, ms: a server killed with -9 is gone within this. */
export const REGISTRY_TTL_MS = 5000;
/** Heartbeat period, ms: several beats per TTL, so one slow beat never drops a live server. */
export const REGISTRY_BEAT_MS = 1000;

/** Key of a server's record. */
export const recordKey = (id: string): string => `as:reg:s:${id}`;
/** Sorted set of registered ids, scored by expiry time (ms). */
export const IDS_KEY = "as:reg:ids";
/** Channel of `join <id>` / `leave <id>` announcements. */
export const EVENTS_CHANNEL = "as:reg:events";

/** Is `v` a well-formed record (what a reader accepts from Redis)? */
export function isServerRecord(v: unknown): v is ServerRecord {
  const r = v as Partial<ServerRecord> | null;
  return (
    !!r &&
    typeof r === "object" &&
    typeof r.id === "string" &&
    typeof r.host === "string" &&
    Number.isInteger(r.port) &&
    typeof r.pid === "number" &&
    typeof r.startedAt === "number" &&
    typeof r.lastSeen === "number"
  );
}
