/**
 * Call counting and Prometheus metrics of one server.
 *
 * `CallStats` is the servicer observer behind both the registry record (calls, errors, rates)
 * and `/metrics`: plain counters always, prom-client series only when metrics are served. The
 * hot path stays cheap: call counts are kept in a Map and copied into prom-client when
 * scraped; only the histogram goes through prom-client per call (about 1 µs; bench/metrics.ts
 * measures it: BENCHMARKS.md).
 *
 * Series (names fixed): `actorscope_calls_total{class,method,code}` ("OK" for success, else
 * the gRPC status name), `actorscope_call_duration_seconds{class,method}` (histogram; an
 * async call counts from its submission to its result), `actorscope_inflight_calls`,
 * `actorscope_queued_calls`, `actorscope_agents`, `actorscope_pool_results`,
 * `actorscope_restarts_total{class}` (agents an `--isolate` server restarted), and prom-client's default process series
 * (`process_resident_memory_bytes`, CPU, event-loop lag, heap).
 */
import type { Counter, Histogram, Registry } from "prom-client";
import type { Request, Response } from "../core/protocol.ts";
import type { ServicerObserver, TaskInfo } from "./observer.ts";
import type { Outcome } from "./pool/types.ts";

/** What the gauges read when scraped. */
export interface GaugeSources {
  /** Async calls running. */
  running(): number;
  /** Async calls waiting for a slot. */
  queued(): number;
  agents(): number;
  poolResults(): number;
}

interface PromSeries {
  registry: Registry;
  calls: Counter<"class" | "method" | "code">;
  duration: Histogram<"class" | "method">;
  restarts: Counter<"class">;
  /**
   * Call counts by `class\0method\0code`, counted here and copied into the counter when it is
   * scraped: prom-client's `inc()` hashes the labels on every call (about 1.6 µs measured),
   * a Map entry costs a few ns.
   */
  callCounts: Map<string, { labels: { class: string; method: string; code: string }; n: number }>;
  /** Labelled histogram children, by `class\0method`. */
  durationChildren: Map<string, { observe(v: number): void }>;
}

/** Window of the call rates, seconds. */
const RATE_WINDOW_S = 5;

/** Counts calls for the registry record, `getServerInfo` and (when enabled) Prometheus. */
export class CallStats implements ServicerObserver {
  /** Calls answered (sync) or finished (async). */
  calls = 0;
  /** Of which failed. */
  errors = 0;
  /** Restarts of objects after a crash (the supervision layer counts them). */
  restarts = 0;
  /** The same, by class (what the labelled counter is made of when metrics are turned on later). */
  readonly #restartsByClass = new Map<string, number>();
  /** Sync calls being run. */
  syncInFlight = 0;
  readonly startedAt = Date.now();
  #prom: PromSeries | undefined;
  /** Per-second samples of (calls, errors), newest last. */
  readonly #samples: Array<{ at: number; calls: number; errors: number }> = [];
  #timer: Timer | undefined;

  constructor() {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), 1000);
    this.#timer.unref();
  }

  /** Calls and failed calls per second over the last few seconds. */
  rates(): { callRate: number; errorRate: number } {
    const first = this.#samples[0]!;
    const dt = (Date.now() - first.at) / 1000;
    if (dt < 0.5) return { callRate: 0, errorRate: 0 };
    const round = (n: number) => Math.round(n * 10) / 10;
    return { callRate: round((this.calls - first.calls) / dt), errorRate: round((this.errors - first.errors) / dt) };
  }

  /** Figures for the `info` answer. */
  info(): { startedAt: number; calls: number; errors: number; callRate: number; errorRate: number; restarts: number } {
    return { startedAt: this.startedAt, calls: this.calls, errors: this.errors, ...this.rates(), restarts: this.restarts };
  }

  /** Count a restart of an object of class `cls` (supervision). */
  restarted(cls: string): void {
    this.restarts++;
    this.#restartsByClass.set(cls, (this.#restartsByClass.get(cls) ?? 0) + 1);
    this.#prom?.restarts.inc({ class: cls });
  }

  /** Stop the sampling timer. */
  close(): void {
    clearInterval(this.#timer);
  }

  /**
   * Turn on the Prometheus series, in a registry of their own (two servers in one process
   * never mix their figures). prom-client is loaded only here.
   */
  async enablePrometheus(src: GaugeSources): Promise<Registry> {
    if (this.#prom) return this.#prom.registry;
    const prom = await import("prom-client");
    const registry = new prom.Registry();
    prom.collectDefaultMetrics({ register: registry });
    const stats = this;
    const callCounts: PromSeries["callCounts"] = new Map();
    const gauge = (name: string, help: string, read: () => number) =>
      new prom.Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    gauge("actorscope_inflight_calls", "Calls being run now (sync calls and running async tasks)", () => stats.syncInFlight + src.running());
    gauge("actorscope_queued_calls", "Async calls waiting for a capacity slot", () => src.queued());
    gauge("actorscope_agents", "Objects held by the server", () => src.agents());
    gauge("actorscope_pool_results", "Results held by the result pool", () => src.poolResults());
    this.#prom = {
      registry,
      calls: new prom.Counter({
        name: "actorscope_calls_total",
        help: "Calls by class, method and outcome code (OK or the gRPC status name)",
        labelNames: ["class", "method", "code"],
        registers: [registry],
        collect() {
          this.reset();
          for (const c of callCounts.values()) this.inc(c.labels, c.n);
        },
      }),
      duration: new prom.Histogram({
        name: "actorscope_call_duration_seconds",
        help: "Call duration: sync calls until answered, async calls from submission to result",
        labelNames: ["class", "method"],
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
        registers: [registry],
      }),
      restarts: new prom.Counter({ name: "actorscope_restarts_total", help: "Objects restarted after a crash, by class", labelNames: ["class"], registers: [registry] }),
      callCounts,
      durationChildren: new Map(),
    };
    for (const [cls, n] of this.#restartsByClass) this.#prom.restarts.inc({ class: cls }, n);
    return registry;
  }

  started(req: Request): void {
    if (req.t === "call" && req.task === undefined) this.syncInFlight++;
  }

  answered(req: Request, res: Response, seconds: number, cls: string | undefined): void {
    if (req.t !== "call") return;
    if (req.task === undefined) {
      this.syncInFlight--;
      this.#count(cls ?? "unknown", req.name, res.t === "error" ? res.error.code : "OK", seconds);
    } else if (res.t === "error") {
      // Refused: no task will finish. (Accepted ones are counted when their result is in.)
      this.#count(cls ?? "unknown", req.name, res.error.code, seconds);
    }
  }

  taskDone(_task: string, outcome: Outcome, call: TaskInfo): void {
    this.#count(call.cls, call.method, outcome.ok ? "OK" : outcome.error.code, (performance.now() - call.since) / 1000);
  }

  #count(cls: string, method: string, code: string, seconds: number): void {
    this.calls++;
    if (code !== "OK") this.errors++;
    const p = this.#prom;
    if (!p) return;
    const ck = `${cls}\0${method}\0${code}`;
    const c = p.callCounts.get(ck);
    if (c) c.n++;
    else p.callCounts.set(ck, { labels: { class: cls, method, code }, n: 1 });
    const dk = `${cls}\0${method}`;
    let d = p.durationChildren.get(dk);
    if (!d) p.durationChildren.set(dk, (d = p.duration.labels(cls, method)));
    d.observe(seconds);
  }

  #sample(): void {
    const now = Date.now();
    this.#samples.push({ at: now, calls: this.calls, errors: this.errors });
    while (this.#samples.length > 1 && now - this.#samples[0]!.at > RATE_WINDOW_S * 1000) this.#samples.shift();
  }
}

/** A running `/metrics` endpoint. */
export interface MetricsServer {
  readonly port: number;
  stop(): Promise<void>;
}

/** Serve `registry` as Prometheus text at `GET /metrics` on `host:port` (0: a free port). */
export function serveMetrics(registry: Registry, host: string, port: number): MetricsServer {
  const server = Bun.serve({
    hostname: host,
    port,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname !== "/metrics") return new Response("not found: metrics are at /metrics\n", { status: 404 });
      if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405 });
      return new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } });
    },
  });
  return {
    port: server.port ?? port,
    async stop() {
      await server.stop(true);
    },
  };
}
