/**
 * The shape of the source tree, checked like grpc-js checks its build: no runtime import cycle
 * under src/, imports run one way (core ← client ← server), core and the models load neither
 * grpc-js nor ioredis, and no source file grows past ~400 lines.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../src");

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith(".ts") && !p.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/**
 * The modules a file loads when it is evaluated: static `import`/`export … from` that bring
 * at least one value (type-only imports are erased), not `import()` (loaded later, on demand).
 */
function runtimeImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?([^;]*?)\s+from\s+["']([^"']+)["']|^\s*import\s+["']([^"']+)["']/gm;
  for (const m of text.matchAll(re)) {
    const spec = m[4] ?? m[5]!;
    if (m[2]) continue; // import type / export type
    const clause = m[3] ?? "";
    const named = /^\{([\s\S]*)\}$/.exec(clause.trim());
    if (named && named[1]!.split(",").map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith("type "))) continue;
    out.push(spec);
  }
  return out;
}

const files = sources(SRC);
const graph = new Map<string, string[]>();
for (const f of files) {
  const deps: string[] = [];
  for (const spec of runtimeImports(f)) if (spec.startsWith(".")) deps.push(resolve(dirname(f), spec));
  graph.set(f, deps.filter((d) => graph.has(d) || files.includes(d)));
}
const rel = (f: string) => relative(SRC, f);

/** Every cycle found by a depth-first walk (each reported once, as a path). */
function cycles(): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const walk = (f: string) => {
    state.set(f, 1);
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      if (state.get(d) === 1) found.push([...stack.slice(stack.indexOf(d)), d].map(rel));
      else if (!state.has(d)) walk(d);
    }
    stack.pop();
    state.set(f, 2);
  };
  for (const f of files) if (!state.has(f)) walk(f);
  return found;
}

describe("architecture", () => {
  test("no runtime import cycle under src/", () => {
    expect(cycles()).toEqual([]);
  });

  test("the cycle check sees a cycle when there is one", () => {
    const a = join(SRC, "__a.ts");
    const b = join(SRC, "__b.ts");
    graph.set(a, [b]);
    graph.set(b, [a]);
    files.push(a, b);
    try {
      expect(cycles()).toContainEqual(["__a.ts", "__b.ts", "__a.ts"]);
    } finally {
      graph.delete(a);
      graph.delete(b);
      files.splice(files.indexOf(a), 2);
    }
  });

  test("core imports neither client/ nor server/, nor grpc-js or ioredis", () => {
    const bad: string[] = [];
    for (const f of files.filter((x) => rel(x).startsWith("core/"))) {
      for (const spec of runtimeImports(f)) {
        const target = spec.startsWith(".") ? rel(resolve(dirname(f), spec)) : spec;
        if (/^(client|server|wire)\//.test(target) || /grpc|ioredis/.test(spec)) bad.push(`${rel(f)} -> ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  test("client/ never imports server/; models/ never imports server/", () => {
    const bad: string[] = [];
    for (const f of files.filter((x) => /^(client|models)\//.test(rel(x)))) {
      for (const spec of runtimeImports(f)) {
        if (spec.startsWith(".") && rel(resolve(dirname(f), spec)).startsWith("server/")) bad.push(`${rel(f)} -> ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  test("no source file is over 420 lines", () => {
    const long = files.map((f) => [rel(f), readFileSync(f, "utf8").split("\n").length] as const).filter(([, n]) => n > 420);
    expect(long).toEqual([]);
  });
});
