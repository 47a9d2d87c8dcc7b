/**
 * Loading agent classes from files (`agentDir`, `loadCustomClassFromFile`): which files load,
 * what is collected, what a broken file does, and a server serving what it loaded.
 */
import { afterAll, describe, expect, spyOn, test } from "bun:test";
import { consola } from "consola";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentBase, Distributable, Msg, RpcClient, connect, loadAgentsFromDir, loadCustomClassFromFile } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { entryOf } from "../src/core/registry.ts";
import { rejection, startServer } from "./helpers/grpc.ts";

const DIR = join(import.meta.dir, "fixtures", "agent-dir");
const names = (classes: Function[]) => classes.map((c) => entryOf(c)?.name ?? c.name).sort();

afterAll(() => closeAllConnections());

describe("loadAgentsFromDir", () => {
  test("loads every agent file (sibling imports, .js, nested .mts), reports and skips the broken one", async () => {
    const warn = spyOn(consola, "warn").mockImplementation((() => {}) as never);
    try {
      const classes = await loadAgentsFromDir(DIR);
      expect(names(classes)).toEqual(["Hidden", "JsCounter", "Speaker"]);
      const warnings = warn.mock.calls.map((c) => String(c[0]));
      expect(warnings.length).toBe(1);
      expect(warnings[0]).toContain(join(DIR, "broken.ts"));
      expect(warnings[0]).toContain("broken on purpose");
    } finally {
      warn.mockRestore();
    }
  });

  test('"actorscope" inside agent files is this package: same AgentBase, same registry', async () => {
    const [speaker] = await loadCustomClassFromFile(join(DIR, "speaker.ts"));
    expect(speaker).toBeDefined();
    expect(speaker!.prototype).toBeInstanceOf(AgentBase);
    expect(speaker!.prototype).toBeInstanceOf(Distributable);
    expect(entryOf(speaker!)?.module).toBe(Bun.pathToFileURL(join(DIR, "speaker.ts")).href);
  });

  test("loadCustomClassFromFile rejects with the error of a file that fails to load", async () => {
    const e = await rejection(loadCustomClassFromFile(join(DIR, "broken.ts")));
    expect(e.message).toContain("broken on purpose");
  });

  test("skips node_modules, dot-files, dot-dirs, *.d.ts, *.test.ts and other extensions", async () => {
    const dir = await mkdtemp(join(tmpdir(), "as-agent-dir-"));
    try {
      const mark = (tag: string) => `(globalThis as any).__asLoaded = [...((globalThis as any).__asLoaded ?? []), ${JSON.stringify(tag)}];\nexport {};\n`;
      await mkdir(join(dir, "node_modules", "pkg"), { recursive: true });
      await mkdir(join(dir, ".hidden"), { recursive: true });
      await mkdir(join(dir, "sub"), { recursive: true });
      await writeFile(join(dir, "node_modules", "pkg", "index.ts"), mark("node_modules"));
      await writeFile(join(dir, ".hidden", "x.ts"), mark("dot-dir"));
      await writeFile(join(dir, ".x.ts"), mark("dot-file"));
      await writeFile(join(dir, "types.d.ts"), mark("d.ts"));
      await writeFile(join(dir, "thing.test.ts"), mark("test"));
      await writeFile(join(dir, "notes.md"), mark("md"));
      await writeFile(join(dir, "a.ts"), mark("a.ts"));
      await writeFile(join(dir, "sub", "b.mjs"), "globalThis.__asLoaded = [...(globalThis.__asLoaded ?? []), 'b.mjs'];\n");
      (globalThis as { __asLoaded?: string[] }).__asLoaded = [];
      expect(await loadAgentsFromDir(dir)).toEqual([]);
      expect((globalThis as { __asLoaded?: string[] }).__asLoaded).toEqual(["a.ts", "b.mjs"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("a server with agentDir", () => {
  test("serves the classes it loaded, and only those", async () => {
    const warn = spyOn(consola, "warn").mockImplementation((() => {}) as never);
    try {
      await using s = await startServer({ agentDir: DIR, customAgentClasses: [] });
      const client = new RpcClient(s.host, s.port);
      const oid = "5".repeat(32);
      expect(await client.createAgent({ className: "Speaker", args: ["sam"] }, oid)).toBe(true);
      const sam = connect<{ reply(x: Msg): Msg }>({ ...s.conf, oid });
      const m = await sam.reply(new Msg({ name: "user", content: "hi" }));
      expect(m.content).toBe("sam says hi");
      const js = "6".repeat(32);
      await client.createAgent({ className: "JsCounter", args: [41] }, js);
      expect(await connect<{ inc(): number }>({ ...s.conf, oid: js }).inc()).toBe(42);
      // Registered in this process, but not given to this server: a client cannot create it.
      const e = await rejection(client.createAgent({ className: "Tally" }));
      expect(e.code).toBe("NOT_FOUND");
    } finally {
      warn.mockRestore();
    }
  });
});
