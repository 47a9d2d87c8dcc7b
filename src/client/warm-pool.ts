/**
 * The warm pool of child servers (opt-in, `configureChildren({ warm: n })`): n spare child
 * processes that have already started and loaded the runtime, so `toDist()` takes one and only
 * has it import the class's module — no process start, no library load on the way to the first
 * answer. A spare taken is replaced in the background.
 *
 * A spare is spawned with this process's environment and working directory of that moment; a
 * `toDist()` after either changed gets a fresh spawn (and the stale spares are replaced). Spares
 * never keep this process alive (unref'd), die with it (killed on exit; on a signal or kill -9
 * their IPC link closes and they exit), and are killed by `configureChildren({ warm: 0 })`.
 */
import type { Subprocess } from "bun";
import { CHILD_SPARE, childEnv, type ChildSpareFrame, type SpareConfig } from "../core/child-config.ts";
import { DEFAULTS } from "../core/defaults.ts";
import { selfCommand } from "./spawn.ts";
import { ChildOutput } from "./child-output.ts";

/** Options of `configureChildren`. */
export interface ChildrenOptions {
  /**
   * Spare child processes kept started and loaded, ready to become the next `toDist()`'s child
   * server. Default 0 (none: every child is spawned on demand).
   */
  warm?: number;
}

/** What the owner of an adopted spare hears from it. */
export interface SpareHandlers {
  ipc(msg: unknown): void;
  exit(code: number | null, signal: unknown): void;
}

/** A spare child process. */
export class Spare {
  readonly proc: Subprocess;
  /** Its stdout and stderr, tagged as a spare until taken (then as the agent's child). */
  readonly out = new ChildOutput({});
  /** Environment and working directory it was started with (see `spareKey`). */
  readonly key: string;
  /** It posted `spare`: the runtime is loaded and it waits for its config. */
  loaded = false;
  /** The class modules it imported while waiting. */
  readonly modules: readonly string[];
  /** Resolves true once loaded, false if it exited first. */
  readonly whenLoaded: Promise<boolean>;
  #handlers: SpareHandlers | undefined;
  #settle!: (ok: boolean) => void;

  constructor(key: string, conf: SpareConfig, onGone: (s: Spare, loaded: boolean) => void) {
    this.key = key;
    this.modules = conf.modules;
    this.whenLoaded = new Promise<boolean>((r) => (this.#settle = r));
    this.proc = Bun.spawn(selfCommand("child"), {
      env: childEnv(CHILD_SPARE + JSON.stringify(conf)),
      stdio: ["ignore", "pipe", "pipe"],
      serialization: "advanced",
      ipc: (msg: unknown) => {
        if (this.#handlers) this.#handlers.ipc(msg);
        else if ((msg as ChildSpareFrame | null)?.k === "spare") {
          this.loaded = true;
          clearTimeout(timer);
          this.#settle(true);
        }
      },
      onExit: (_p, code, signal) => {
        if (this.#handlers) this.#handlers.exit(code, signal);
        else {
          this.#settle(false);
          onGone(this, this.loaded);
        }
      },
    });
    // A spare that never loads (a hung import) is ended like a child that never gets ready.
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), DEFAULTS.readyTimeoutMs);
    timer.unref();
    this.proc.unref();
    this.out.pid = this.proc.pid;
    void this.out.pump(this.proc.stdout as ReadableStream<Uint8Array>, "stdout");
    void this.out.pump(this.proc.stderr as ReadableStream<Uint8Array>, "stderr");
  }

  /** Hand the process to its new owner: from now on its frames and its exit go there. */
  adopt(h: SpareHandlers): Subprocess {
    this.#handlers = h;
    return this.proc;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
}

/** What a child needs to match a spare: the same environment and working directory. */
function spareKey(): string {
  return `${process.cwd()}\0${Bun.hash(JSON.stringify(process.env)).toString(36)}`;
}

/** Quiet time after the last spare was taken before the pool is refilled, ms. */
const REFILL_DELAY_MS = 50;
/** Class modules a spare imports while waiting, at most. */
const MAX_PRELOAD = 8;

/** The pool of spares of this process. */
class WarmPool {
  #target = 0;
  readonly #spares = new Set<Spare>();
  /** Spares that died before loading, in a row: past 3, refilling stops until reconfigured. */
  #failures = 0;
  #exitHook = false;
  #refill: Timer | undefined;
  /** Class modules spares import while waiting, most recent first. */
  readonly #modules: string[] = [];
  /** A spare with preloaded modules died before loading: spares preload nothing from then on. */
  #noPreload = false;
  /** Nesting depth of this process's children (set by child-server.ts in a child server). */
  depth = 1;

  /** Keep `n` spares; resolves once they are loaded (or, for fewer, once the extra ones exited). */
  async configure(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 0) throw new TypeError(`warm must be a non-negative integer, not ${n}`);
    this.#target = n;
    this.#failures = 0;
    const extra = [...this.#spares].slice(n);
    for (const s of extra) this.#drop(s);
    this.#fill(spareKey());
    await Promise.all([...extra.map((s) => s.proc.exited), ...[...this.#spares].map((s) => s.whenLoaded)]);
  }

  /**
   * A loaded spare started like a child spawned now would be, taken out of the pool (one that
   * imported `module` already if there is one); undefined if none.
   */
  take(module: string | undefined): Spare | undefined {
    if (this.#spares.size === 0) return undefined;
    const key = spareKey();
    let found: Spare | undefined;
    for (const s of this.#spares) {
      if (s.key !== key) this.#drop(s);
      else if (s.loaded && s.alive && (!found || (module !== undefined && !found.modules.includes(module) && s.modules.includes(module)))) found = s;
    }
    if (found) {
      this.#spares.delete(found);
      this.#refillSoon();
    } else this.#fill(key);
    return found;
  }

  /**
   * A child server whose class lives in `modules` started: spares spawned from now on import
   * them while they wait (the most recent MAX_PRELOAD), so the next such `toDist()` imports
   * nothing. Spares already waiting are replaced when they lack a module just learned.
   */
  learn(modules: readonly string[]): void {
    if (this.#noPreload) return;
    let added = false;
    for (const m of modules) {
      const at = this.#modules.indexOf(m);
      if (at === 0) continue;
      if (at > 0) this.#modules.splice(at, 1);
      else added = true;
      this.#modules.unshift(m);
    }
    this.#modules.length = Math.min(this.#modules.length, MAX_PRELOAD);
    if (added && this.#spares.size > 0) this.#refillSoon(true);
  }

  /** Spares loaded and holding every class module learned so far (for tests and benchmarks). */
  ready(): number {
    let n = 0;
    for (const s of this.#spares) if (s.loaded && s.alive && this.#modules.every((m) => s.modules.includes(m))) n++;
    return n;
  }

  /** Process ids of the spares (for tests and tools). */
  pids(): number[] {
    return [...this.#spares].map((s) => s.proc.pid);
  }

  /**
   * Replace taken spares once `toDist()` calls pause for REFILL_DELAY_MS: spawning is ~2–5 ms
   * of this process's time and a start competes for the CPU with the taken spare's first
   * answer, which this keeps off that path.
   */
  #refillSoon(renew = false): void {
    clearTimeout(this.#refill);
    this.#refill = setTimeout(() => {
      // Spares that lack a module learned since they started make way for ones that have it.
      if (renew) for (const s of this.#spares) if (this.#modules.some((m) => !s.modules.includes(m))) this.#drop(s);
      this.#fill(spareKey());
    }, REFILL_DELAY_MS);
    this.#refill.unref();
  }

  #fill(key: string): void {
    while (this.#spares.size < this.#target && this.#failures < 3) {
      const conf: SpareConfig = { depth: this.depth, modules: this.#noPreload ? [] : [...this.#modules] };
      this.#spares.add(new Spare(key, conf, (s, loaded) => this.#gone(s, loaded)));
      this.#hookExit();
    }
  }

  #gone(s: Spare, loaded: boolean): void {
    if (!this.#spares.delete(s)) return;
    this.#failures = loaded ? 0 : this.#failures + 1;
    // One that died before loading may have failed on a preloaded module: preload no more.
    if (!loaded && s.modules.length) this.#noPreload = true;
    if (this.#failures >= 3) process.stderr.write(`actorscope: warm pool: spare child servers fail to start, refilling stopped${s.out.text ? `: ${s.out.lastLines(3)}` : ""}\n`);
    this.#fill(spareKey());
  }

  #drop(s: Spare): void {
    this.#spares.delete(s);
    s.proc.kill("SIGKILL");
  }

  /** Spares die with this process (on a signal or kill -9, their IPC link closing ends them). */
  #hookExit(): void {
    if (this.#exitHook) return;
    this.#exitHook = true;
    process.on("exit", () => {
      for (const s of this.#spares) s.proc.kill("SIGKILL");
    });
  }
}

/** This process's warm pool. */
export const warmPool = new WarmPool();

/**
 * Configure how this process starts child servers. `warm: n` keeps n spare children started
 * and loaded so the next `toDist()` takes one: its first answer costs the import of the class's
 * module only, not a process start and the library's load. Taken spares are replaced in the
 * background; a `toDist()` after `process.env` or the working directory changed spawns afresh.
 * Spares never keep the process alive and die with it. `warm: 0` (the default) kills them.
 *
 * Resolves once the pool holds `n` loaded spares (for `warm: 0`, once the old ones exited).
 *
 * @example
 * await configureChildren({ warm: 2 });
 * const a = new Worker("w").toDist(); // takes a spare: answers in a few ms
 */
export function configureChildren(opts: ChildrenOptions): Promise<void> {
  return warmPool.configure(opts.warm ?? 0);
}
