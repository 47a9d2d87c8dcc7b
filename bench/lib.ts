/** Small helpers shared by the benchmarks: timing, medians, tables, machine facts. */
import { cpus, totalmem } from "node:os";

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

/** One row of a benchmark table. */
export interface Row {
  name: string;
  value: number;
  unit: string;
  /** The raw floor this row is compared with, same unit. */
  floor?: number;
  /** The budget (DESIGN §5) as text. */
  budget?: string;
  ok?: boolean;
}

/** Print rows as an aligned table. */
export function printTable(title: string, rows: Row[]): void {
  console.log(`\n${title}`);
  const lines = rows.map((r) => [
    r.name,
    `${fmt(r.value)} ${r.unit}`,
    r.floor === undefined ? "" : `${fmt(r.floor)} ${r.unit}`,
    r.floor === undefined ? "" : `${(r.value / r.floor).toFixed(2)}×`,
    r.budget ?? "",
    r.ok === undefined ? "" : r.ok ? "ok" : "OVER",
  ]);
  const head = ["row", "value", "raw floor", "ratio", "budget", ""];
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const out = (l: string[]) => console.log(l.map((c, i) => c.padEnd(w[i]!)).join("  ").trimEnd());
  out(head);
  out(w.map((n) => "-".repeat(n)));
  lines.forEach(out);
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(3);
}

/** Facts about the machine, stored with results. */
export function machine(): Record<string, unknown> {
  return { bun: Bun.version, cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), date: new Date().toISOString() };
}

/** Merge `section` into a JSON results file. */
export async function saveResults(file: string, section: string, rows: Row[]): Promise<void> {
  const f = Bun.file(file);
  const prev = (await f.exists()) ? ((await f.json()) as Record<string, unknown>) : {};
  prev.machine = machine();
  prev[section] = rows;
  await Bun.write(file, JSON.stringify(prev, null, 2));
}
