/**
 * Small helpers shared by the benchmarks: timing, medians, rows, tables, machine facts, and
 * the section protocol of `bench/run.ts` (each section is its own script; run.ts spawns it
 * with `--json <file>` and collects its rows, so one section's leftovers never skew another).
 */
import { cpus, loadavg, totalmem } from "node:os";

/** True when the quick mode was asked for (`--quick`). */
export const quick = process.argv.includes("--quick");

/** Median and p99 of samples (any unit). */
export function stats(xs: number[]): { median: number; p99: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: at(0.5), p99: at(0.99) };
}

/** Run `f` `rounds` times and return the median of its results. */
export async function medianOf(rounds: number, f: () => Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < rounds; i++) xs.push(await f());
  return stats(xs).median;
}

/** How a row is judged against DESIGN §5. */
export interface Budget {
  /** As printed, e.g. "≤ 1.5× raw IPC". */
  text: string;
  /** Largest allowed `ratio` (cost relative to the floor). */
  maxRatio?: number;
  /** Largest allowed value (times). */
  max?: number;
  /** Smallest allowed value (rates). */
  min?: number;
}

/** One row of a benchmark table. */
export interface Row {
  /** Stable key (`child.sync`, `floor.ipc.rtt`): floors are named by it. */
  id?: string;
  name: string;
  /** Median over rounds (or over all samples, for per-call latencies). */
  value: number;
  unit: string;
  /** 99th percentile of per-call samples, same unit, when measured per call. */
  p99?: number;
  /** Sequential time per call: the median over rounds of a round's mean, same unit. */
  mean?: number;
  /** The floor's `mean`, for paired rows. */
  floorMean?: number;
  /** The raw floor this row is compared with, same unit (resolved from `floorId` by run.ts). */
  floor?: number;
  /** Id of the floor row (a row of the floors section, or of this section). */
  floorId?: string;
  /** The round values, for the JSON. */
  rounds?: number[];
  /** The budget (DESIGN §5) as text, or with a check. */
  budget?: string | Budget;
  ok?: boolean;
  /** A note printed under the table (e.g. why a row was skipped). */
  note?: string;
}

/** Rates (calls/s, MB/s…) are better when higher; everything else is a cost. */
export function isRate(unit: string): boolean {
  return unit.includes("/s");
}

/** Cost relative to the floor: value/floor for times, floor/value for rates (so > 1 is slower). */
export function ratioOf(r: Row): number | undefined {
  if (r.floor === undefined || !(r.floor > 0) || !(r.value > 0)) return undefined;
  return isRate(r.unit) ? r.floor / r.value : r.value / r.floor;
}

/** Fill `floor` from `floorId` and `ok` from the budget, given every row of the run. */
export function judge(rows: Row[], all: Row[]): void {
  const byId = new Map(all.filter((r) => r.id).map((r) => [r.id!, r]));
  for (const r of rows) {
    if (r.floorId && r.floor === undefined) {
      const f = byId.get(r.floorId);
      if (f && f.unit === r.unit) r.floor = f.value;
    }
    if (typeof r.budget === "object") {
      const b = r.budget;
      const ratio = ratioOf(r);
      const checks: boolean[] = [];
      if (b.maxRatio !== undefined && ratio !== undefined) checks.push(ratio <= b.maxRatio);
      if (b.max !== undefined) checks.push(r.value <= b.max);
      if (b.min !== undefined) checks.push(r.value >= b.min);
      if (checks.length) r.ok = checks.every(Boolean);
    }
  }
}

function budgetText(b: Row["budget"]): string {
  return b === undefined ? "" : typeof b === "string" ? b : b.text;
}

/** Print rows as an aligned table. */
export function printTable(title: string, rows: Row[]): void {
  console.log(`\n${title}`);
  const lines = rows.map((r) => {
    const ratio = ratioOf(r);
    return [
      r.name,
      `${fmt(r.value)} ${r.unit}`,
      r.p99 === undefined ? "" : `${fmt(r.p99)}`,
      r.floor === undefined ? "" : `${fmt(r.floor)} ${r.unit}`,
      ratio === undefined ? "" : `${ratio.toFixed(2)}×`,
      budgetText(r.budget),
      r.ok === undefined ? "" : r.ok ? "ok" : "OVER",
    ];
  });
  const head = ["row", "median", "p99", "raw floor", "ratio", "budget", ""];
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const out = (l: string[]) => console.log(l.map((c, i) => c.padEnd(w[i]!)).join("  ").trimEnd());
  out(head);
  out(w.map((n) => "-".repeat(n)));
  lines.forEach(out);
  for (const r of rows) {
    if (r.note) console.log(`  note: ${r.name}: ${r.note}`);
    if (r.mean !== undefined && r.floorMean !== undefined) {
      console.log(`  note: ${r.name}: as sequential time per call (median of round means): ${fmt(r.mean)} vs ${fmt(r.floorMean)} ${r.unit} (${(r.mean / r.floorMean).toFixed(2)}×)`);
    }
  }
}

/** The same rows as a Markdown table. */
export function markdownTable(rows: Row[]): string {
  const out = ["| row | median | p99 | raw floor | ratio | budget | |", "|---|---:|---:|---:|---:|---|---|"];
  for (const r of rows) {
    const ratio = ratioOf(r);
    out.push(
      `| ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.p99 === undefined ? "" : fmt(r.p99)} | ${r.floor === undefined ? "" : `${fmt(r.floor)} ${r.unit}`} | ${ratio === undefined ? "" : `${ratio.toFixed(2)}×`} | ${budgetText(r.budget)} | ${r.ok === undefined ? "" : r.ok ? "ok" : "**over**"} |`,
    );
  }
  return out.join("\n");
}

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 10_000) return Math.round(n).toLocaleString("en-US");
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(3);
}

/** Facts about the machine, stored with results. */
export function machine(): Record<string, unknown> {
  return {
    bun: Bun.version,
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    memGiB: Math.round(totalmem() / 2 ** 30),
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
    date: new Date().toISOString(),
  };
}

/** Merge `section` into a JSON results file. */
export async function saveResults(file: string, section: string, rows: Row[]): Promise<void> {
  const f = Bun.file(file);
  const prev = (await f.exists()) ? ((await f.json()) as Record<string, unknown>) : {};
  prev.machine = machine();
  prev[section] = rows;
  await Bun.write(file, JSON.stringify(prev, null, 2));
}

/**
 * Run one benchmark section. Under run.ts (`--json <file>`) the rows go to that file; run on
 * its own, the section prints its table (floors of other sections are not known then).
 */
export async function runSection(title: string, body: () => Promise<Row[]>): Promise<void> {
  const rows = await body();
  const at = process.argv.indexOf("--json");
  if (at >= 0 && process.argv[at + 1]) {
    await Bun.write(process.argv[at + 1]!, JSON.stringify({ title, rows }));
  } else {
    judge(rows, rows);
    printTable(title, rows);
  }
  // Leftover handles (channels, sockets) must not keep a section alive.
  process.exit(0);
}

/** Wall time one round of a row may take, ms: rounds of slow transports get fewer calls. */
export const ROUND_MS = quick ? 400 : 2000;

/** Time up to `n` sequential calls of `f`, stopping after `budgetMs`; per-call samples in µs. */
export async function sampleUs(n: number, f: (i: number) => Promise<unknown>, budgetMs = Infinity): Promise<number[]> {
  const xs: number[] = [];
  const end = performance.now() + budgetMs;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f(i);
    const now = performance.now();
    xs.push((now - t) * 1000);
    if (now > end && i >= 50) break;
  }
  return xs;
}

function mean(xs: number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/**
 * A per-call latency row: `rounds` rounds of up to `n` sequential calls (each round at most
 * ROUND_MS) after a warm-up. Median and p99 are over every single call of every round (robust
 * to the scheduling hiccups of a shared machine); `mean` is the median over rounds of a
 * round's time per call (sequential µs/call, as bun-stack-notes measured the floors).
 */
export async function latencyRow(row: Omit<Row, "value" | "unit" | "p99">, rounds: number, n: number, f: (i: number) => Promise<unknown>, warm = Math.min(1000, n)): Promise<Row> {
  await sampleUs(warm, f, ROUND_MS / 2);
  const all: number[] = [];
  const means: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const xs = await sampleUs(n, f, ROUND_MS);
    means.push(mean(xs));
    all.push(...xs);
  }
  return { ...row, value: stats(all).median, p99: stats(all).p99, mean: stats(means).median, unit: "µs", rounds: means };
}

/**
 * A latency row paired with its floor: rounds of the floor and of the row alternate, so both
 * see the same machine load (this VM is shared); the row's `floor` is the floor's per-call
 * median over the same rounds (and `floorMean` its median round mean).
 */
export async function pairedLatencyRow(row: Omit<Row, "value" | "unit" | "p99" | "floor">, rounds: number, n: number, floorF: (i: number) => Promise<unknown>, f: (i: number) => Promise<unknown>): Promise<Row> {
  await sampleUs(Math.min(1000, n), floorF, ROUND_MS / 4);
  await sampleUs(Math.min(1000, n), f, ROUND_MS / 4);
  const floorAll: number[] = [];
  const floorMeans: number[] = [];
  const all: number[] = [];
  const means: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const fl = await sampleUs(n, floorF, ROUND_MS / 2);
    floorMeans.push(mean(fl));
    floorAll.push(...fl);
    const xs = await sampleUs(n, f, ROUND_MS / 2);
    means.push(mean(xs));
    all.push(...xs);
  }
  return {
    ...row,
    value: stats(all).median,
    p99: stats(all).p99,
    mean: stats(means).median,
    unit: "µs",
    rounds: means,
    floor: stats(floorAll).median,
    floorMean: stats(floorMeans).median,
  };
}

/** Like pairedLatencyRow for slow operations: `rounds` single runs of each, alternating, in ms. */
export async function pairedMsRow(row: Omit<Row, "value" | "unit" | "p99" | "floor">, rounds: number, floorF: () => Promise<unknown>, f: () => Promise<unknown>): Promise<Row> {
  await floorF();
  await f();
  const fl: number[] = [];
  const xs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let t = performance.now();
    await floorF();
    fl.push(performance.now() - t);
    t = performance.now();
    await f();
    xs.push(performance.now() - t);
  }
  const s = stats(xs);
  return { ...row, value: s.median, p99: s.p99, unit: "ms", rounds: xs, floor: stats(fl).median };
}

/**
 * A throughput row: each round issues calls through `issue` (which returns the call's
 * promise), at most `window` in flight, and measures calls per second. A warm-up sizes the
 * rounds: as many calls as fit in about ROUND_MS, at most `n`. The note gives the p99 of the
 * per-call latency (issue → settle) under that load.
 */
export async function throughputRow(row: Omit<Row, "value" | "unit" | "p99">, rounds: number, n: number, window: number, issue: (i: number) => PromiseLike<unknown>): Promise<Row> {
  const warmN = Math.min(n, 1000);
  const t0 = performance.now();
  await pumpCalls(warmN, window, issue);
  const warmRate = warmN / ((performance.now() - t0) / 1000);
  const size = Math.max(window * 2, Math.min(n, Math.round((warmRate * ROUND_MS) / 1000)));
  const rates: number[] = [];
  const lats: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    const l = await pumpCalls(size, window, issue);
    rates.push(size / ((performance.now() - t) / 1000));
    lats.push(...l);
  }
  return { ...row, value: stats(rates).median, unit: "calls/s", rounds: rates, note: row.note ?? `${size} calls a round; p99 latency of a call under this load: ${fmt(stats(lats).p99)} ms` };
}

/** Issue `n` calls keeping `window` in flight; resolves with each call's latency in ms. */
export async function pumpCalls(n: number, window: number, issue: (i: number) => PromiseLike<unknown>): Promise<number[]> {
  const lats = new Array<number>(n);
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      const t = performance.now();
      await issue(i);
      lats[i] = performance.now() - t;
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, lane));
  return lats;
}

/** Spawn a helper process that prints one JSON line when ready; returns it and that line. */
export async function spawnReady<T = Record<string, unknown>>(cmd: string[], env?: Record<string, string>): Promise<{ proc: ReturnType<typeof Bun.spawn>; ready: T; lines: AsyncIterator<string> }> {
  const proc = Bun.spawn(cmd, { stdin: "pipe", stdout: "pipe", stderr: "inherit", env: { ...process.env, ...env } });
  const lines = readLines(proc.stdout as ReadableStream<Uint8Array>);
  const first = await lines.next();
  if (first.done) throw new Error(`${cmd.join(" ")} exited before it was ready`);
  return { proc, ready: JSON.parse(first.value) as T, lines };
}

/** Lines of a byte stream. */
export async function* readLines(s: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of s) {
    buf += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) yield line;
    }
  }
  if (buf.trim()) yield buf;
}

/** Path of a file next to the benchmarks. */
export function here(rel: string): string {
  return new URL(rel, import.meta.url).pathname;
}
