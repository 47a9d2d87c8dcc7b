/**
 * Defaults shared by every place that starts or talks to a server: the launcher, `DistConf`
 * (child servers), child configs, the CLI's help, and references decoded from values. Said
 * once here so that they cannot drift apart.
 */

/** The defaults, AgentScope's where it had one. */
export const DEFAULTS = Object.freeze({
  /** Host clients reach a launched server at. */
  host: "localhost",
  /** Async calls a server runs at once. */
  capacity: 32,
  /** Async calls that may wait for a slot before new ones are refused. */
  maxQueue: 65_536,
  /** Finished results a server holds (unread ones refuse new tasks past it). */
  maxPoolSize: 8192,
  /** Seconds a result is kept. */
  maxExpireTime: 7200,
  /** Longest single server-side wait for a result, seconds. */
  maxTimeoutSeconds: 5,
  /** Objects one server holds at most. */
  maxAgents: 1_000_000,
  /** How long a stopping server lets in-flight calls finish, ms. */
  shutdownGraceMs: 5000,
  /** How long a spawned server has to say it is ready, ms. */
  readyTimeoutMs: 15_000,
  /** Redis of the redis pool. */
  redisUrl: "redis://localhost:6379",
});
