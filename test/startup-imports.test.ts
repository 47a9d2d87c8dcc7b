/**
 * What a child server loads at start (issue 20). Every child imports the package root and the
 * child entry's graph; Node built-ins cost 3–13 ms each to load under Bun (node:url, node:fs,
 * node:fs/promises, node:crypto, node:async_hooks…), so the modules on that path import them
 * only where used, lazily — except node:async_hooks (AsyncLocalStorage serves every call).
 */
import { expect, test } from "bun:test";

const ROOT = new URL("..", import.meta.url).pathname;
/** Built-ins allowed at the top level of the start-up graph, and why. */
const ALLOWED = new Set(["node:async_hooks"]);

test("the child server's start-up graph imports no Node built-in at its top level", async () => {
  // Resolve the graph in a fresh process (a plugin sees every relative import).
  const script = `
    const seen = new Set();
    Bun.plugin({ name: "trace", setup(b) { b.onResolve({ filter: /\\.ts$/ }, (a) => { seen.add(require("node:path").resolve(require("node:path").dirname(a.importer), a.path)); return undefined; }); } });
    await import(${JSON.stringify(`${ROOT}src/server/child/run.ts`)});
    await import(${JSON.stringify(`${ROOT}src/index.ts`)});
    console.log(JSON.stringify([...seen]));`;
  const p = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  const files = JSON.parse(await new Response(p.stdout).text()) as string[];
  expect(await p.exited).toBe(0);
  const inGraph = files.filter((f) => f.startsWith(`${ROOT}src/`));
  expect(inGraph.length).toBeGreaterThan(40);
  const offenders: string[] = [];
  for (const f of inGraph) {
    const text = await Bun.file(f).text();
    for (const m of text.matchAll(/^import\s+(?!type\b)[^;]*?from\s+"(node:[^"]+)"/gm)) {
      if (!ALLOWED.has(m[1]!)) offenders.push(`${f.slice(ROOT.length)}: ${m[1]}`);
    }
  }
  expect(offenders).toEqual([]);
});
