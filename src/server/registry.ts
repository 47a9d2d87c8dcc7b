/**
 * A server's record in the registry (Redis): written at launch, renewed by a heartbeat under
 * a short expiry, deleted on a clean shutdown; a server killed with -9 vanishes when the
 * expiry runs out (key layout: core/server-record.ts).
 *
 * Redis is a convenience here, never a dependency of serving: when it is away the server goes
 * on answering calls, logs once that the registry is unavailable, and registers again (logged)
 * as soon as Redis answers. The connection reconnects forever (at most a second apart), queues
 * nothing while down, and no command waits longer than a second.
 */
import { Redis } from "ioredis";
import { consola } from "consola";
import { EVENTS_CHANNEL, IDS_KEY, REGISTRY_BEAT_MS, REGISTRY_TTL_MS, recordKey, type ServerRecord } from "../core/server-record.ts";
import { redactUrl } from "./pool/redis-connection.ts";

/** Options of `Registration.start`. */
export interface RegistrationOptions {
  /** Redis URL of the registry (may carry a password; never shown). */
  url: string;
  serverId: string;
  /** The record as of now (called at every beat). */
  record(): ServerRecord;
  /** Heartbeat period and record expiry, ms. Defaults `REGISTRY_BEAT_MS` / `REGISTRY_TTL_MS`. */
  beatMs?: number;
  ttlMs?: number;
}

/** Tagged afresh at each event: the CLI may set consola's level and reporter after this module loaded. */
const log = {
  info: (o: { message: string; fields: Record<string, unknown> }) => consola.withTag("as-server:registry").info(o),
  warn: (o: { message: string; fields: Record<string, unknown> }) => consola.withTag("as-server:registry").warn(o),
  debug: (o: { message: string; fields: Record<string, unknown> }) => consola.withTag("as-server:registry").debug(o),
};

/** A server's live registration. */
export class Registration {
  readonly #redis: Redis;
  readonly #opts: Required<Pick<RegistrationOptions, "beatMs" | "ttlMs">> & RegistrationOptions;
  readonly #shown: string;
  #timer: Timer | undefined;
  /** "up" after a successful write, "down" after a failed one (each change is logged once). */
  #state: "new" | "up" | "down" = "new";
  #stopped = false;

  private constructor(opts: RegistrationOptions) {
    this.#opts = { beatMs: REGISTRY_BEAT_MS, ttlMs: REGISTRY_TTL_MS, ...opts };
    this.#shown = redactUrl(opts.url);
    this.#redis = new Redis(opts.url, {
      lazyConnect: true,
      connectTimeout: 1000,
      commandTimeout: 1000,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectionName: `actorscope-${opts.serverId}:registry`.replace(/[^A-Za-z0-9_.:-]/g, "_").slice(0, 120),
      // Forever: the registry may come back at any time.
      retryStrategy: (times) => Math.min(50 * times, 1000),
    });
    // Errors are reported through the state changes below; without a listener ioredis prints them.
    this.#redis.on("error", () => {});
    this.#redis.on("ready", () => void this.beat());
    this.#redis.on("close", () => {
      if (!this.#stopped && this.#state === "up") this.#changed("down", "connection closed");
    });
  }

  /**
   * Register and start the heartbeat. Resolves after the first write, or after at most about
   * a second when Redis does not answer (then registration happens when it does).
   */
  static async start(opts: RegistrationOptions): Promise<Registration> {
    const r = new Registration(opts);
    r.#redis.connect().catch(() => {});
    r.#timer = setInterval(() => void r.beat(), r.#opts.beatMs);
    r.#timer.unref();
    await Promise.race([r.beat(), Bun.sleep(1200)]);
    return r;
  }

  /** The Redis URL as it may be shown. */
  get where(): string {
    return this.#shown;
  }

  /** Is the record known to be written (the last write succeeded)? */
  get registered(): boolean {
    return this.#state === "up";
  }

  /** Write the record now (a heartbeat). Never rejects. */
  async beat(): Promise<void> {
    if (this.#stopped || this.#redis.status !== "ready") {
      if (!this.#stopped && this.#redis.status !== "ready" && this.#state === "up") this.#changed("down", "connection lost");
      return;
    }
    const rec = this.#opts.record();
    try {
      const multi = this.#redis.multi();
      multi.set(recordKey(rec.id), JSON.stringify(rec), "PX", this.#opts.ttlMs);
      multi.zadd(IDS_KEY, Date.now() + this.#opts.ttlMs, rec.id);
      if (this.#state !== "up") multi.publish(EVENTS_CHANNEL, `join ${rec.id}`);
      await multi.exec();
      if (this.#state !== "up") this.#changed("up");
    } catch (e) {
      if (this.#state !== "down") this.#changed("down", (e as Error).message);
    }
  }

  #changed(to: "up" | "down", why?: string): void {
    const was = this.#state;
    this.#state = to;
    const fields = { serverId: this.#opts.serverId, registry: this.#shown };
    if (to === "up") log.info({ message: was === "down" ? `registered again in ${this.#shown}` : `registered in ${this.#shown}`, fields: { ...fields, event: "registry.up" } });
    else log.warn({ message: `registry ${this.#shown} unavailable (${why}); serving on, registering again when it returns`, fields: { ...fields, event: "registry.down" } });
  }

  /** Delete the record (at once, on a clean shutdown) and close the connection. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    if (this.#redis.status === "ready") {
      const id = this.#opts.serverId;
      try {
        await this.#redis.multi().del(recordKey(id)).zrem(IDS_KEY, id).publish(EVENTS_CHANNEL, `leave ${id}`).exec();
        await this.#redis.quit();
        return;
      } catch {
        // Redis went away: the record expires by itself.
      }
    }
    this.#redis.disconnect();
  }
}
