#!/usr/bin/env bun
/**
 * The benchmark suite: every section in its own process, one after another, then one table
 * with each row's ratio to its raw floor (measured in this same run) and its budget
 * (DESIGN §5), written to bench/results.json with the machine's facts.
 *
 *   bun run bench                 full run (several minutes)
 *   bun run bench --quick         quick run (under a minute)
 *   bun run bench --only child,grpc   some sections (floors always run first)
 *   bun run bench --md            also rewrite the results table in BENCHMARKS.md
 */
import { here, judge, machine, markdownTable, printTable, quick, type Row } from "./lib.ts";

const SECTIONS = ["floors", "child", "grpc", "peers", "scale", "large", "chain", "streams", "callbacks", "redis", "load-sweep"] as const;
const TIMEOUT_MS = quick ? 120_000 : 900_000;

interface Result {
  section: string;
  title: string;
  rows: Row[];
  seconds: number;
  error?: string;
}

function chosen(): string[] {
  const at = process.argv.indexOf("--only");
  if (at < 0) return [...SECTIONS];
  const want = new Set((process.argv[at + 1] ?? "").split(",").filter(Boolean));
  for (const w of want) if (!(SECTIONS as readonly string[]).includes(w)) throw new Error(`unknown section ${w}; sections: ${SECTIONS.join(", ")}`);
  return SECTIONS.filter((s) => s === "floors" || want.has(s));
}

async function runOne(section: string): Promise<Result> {
  const out = `${process.env.TMPDIR ?? "/tmp"}/actorscope-bench-${process.pid}-${section}.json`;
  const t = performance.now();
  const proc = Bun.spawn([process.execPath, here(`./${section}.ts`), "--json", out, ...(quick ? ["--quick"] : [])], { stdio: ["ignore", "inherit", "inherit"] });
  const timer = setTimeout(() => proc.kill("SIGKILL"), TIMEOUT_MS);
  const code = await proc.exited;
  clearTimeout(timer);
  const seconds = (performance.now() - t) / 1000;
  const f = Bun.file(out);
  if (code !== 0 || !(await f.exists())) {
    return { section, title: section, rows: [], seconds, error: `exited with ${code ?? proc.signalCode}` };
  }
  const { title, rows } = (await f.json()) as { title: string; rows: Row[] };
  await f.delete();
  return { section, title, rows, seconds };
}

const started = performance.now();
const results: Result[] = [];
for (const s of chosen()) {
  process.stdout.write(`running ${s}…\n`);
  const r = await runOne(s);
  results.push(r);
  process.stdout.write(r.error ? `  ${s} FAILED (${r.error}) after ${r.seconds.toFixed(1)} s\n` : `  ${s}: ${r.rows.length} rows in ${r.seconds.toFixed(1)} s\n`);
}
const all = results.flatMap((r) => r.rows);
for (const r of results) judge(r.rows, all);
console.log(`\nactorscope benchmarks (${quick ? "quick" : "full"} run, ${((performance.now() - started) / 1000).toFixed(0)} s) — ratio = cost relative to the raw floor (×, lower is better)`);
for (const r of results) printTable(r.error ? `${r.title} (FAILED: ${r.error})` : r.title, r.rows);
const over = all.filter((r) => r.ok === false);
console.log(`\n${all.filter((r) => r.ok === true).length} rows within budget, ${over.length} over${over.length ? `: ${over.map((r) => r.id ?? r.name).join(", ")}` : ""}`);

const facts: Record<string, unknown> = { ...machine(), mode: quick ? "quick" : "full", seconds: Math.round((performance.now() - started) / 1000) };
await Bun.write(here("./results.json"), JSON.stringify({ machine: facts, sections: results }, null, 2) + "\n");
console.log(`results written to bench/results.json`);

if (process.argv.includes("--md")) {
  const file = here("../BENCHMARKS.md");
  const md = await Bun.file(file).text();
  const body = [
    `Run of ${String(facts.date)} (${String(facts.mode)}; Bun ${String(facts.bun)}, ${String(facts.cpus)} × ${String(facts.cpu)}, load average ${(facts.loadavg as number[]).join(" / ")}).`,
    "",
    ...results.flatMap((r) => [`**${r.title}**${r.error ? ` — FAILED: ${r.error}` : ""}`, "", markdownTable(r.rows), ""]),
  ].join("\n");
  const next = md.replace(/<!-- results:start -->[\s\S]*<!-- results:end -->/, `<!-- results:start -->\n${body}\n<!-- results:end -->`);
  if (next === md) console.log("BENCHMARKS.md has no results markers; not rewritten");
  else {
    await Bun.write(file, next);
    console.log("BENCHMARKS.md updated");
  }
}
process.exit(results.some((r) => r.error) ? 1 : 0);
