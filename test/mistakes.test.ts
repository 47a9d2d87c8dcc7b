/**
 * Mistakes a new user makes, each ending in a hint instead of a disaster: a script without
 * the `if (import.meta.main)` guard, a class no child can import, a class instance or a
 * generator passed as a value, two classes of one name, readable agent ids. Real child
 * processes and gRPC servers throughout; every process started here is stopped and awaited.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AgentCreationError,
  AgentServerError,
  AsyncResult,
  CodecError,
  Distributable,
  Msg,
  RpcAgentServerLauncher,
  RpcClient,
  connect,
  dist,
  loadAgentsFromDir,
  type Remote,
} from "../src/index.ts";
import { MAX_CHILD_DEPTH, liveChildren, setChildImport } from "../src/client/child-server.ts";
import { closeAllConnections, connectionFor } from "../src/client/connections.ts";
import { isId, isObjectId } from "../src/core/ids.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { encodeValue } from "../src/core/codec.ts";
import { Tally } from "./fixtures/grpc-agents.ts";
import { Box, Money, Point } from "./fixtures/mistakes/agents.ts";
import { Helper, SpawnsAtTopLevel } from "./fixtures/mistakes/child-top-level.ts";
import { make } from "./fixtures/mistakes/local-class.ts";
import { Twin as TwinA } from "./fixtures/mistakes/twins/a.ts";
import { Twin as TwinB } from "./fixtures/mistakes/twins/b.ts";
import { childTracker } from "./helpers/children.ts";
import { rejection, startServer } from "./helpers/grpc.ts";

const FIXTURES = join(import.meta.dir, "fixtures", "mistakes");
const children = childTracker();
const child = children.child;

afterAll(async () => {
  await children.stopAll();
  await closeAllConnections();
  expect(liveChildren()).toBe(0);
});

/** Pids of live processes whose environment holds `marker` (a /proc scan: finds what a marker file may miss). */
function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, "latin1").includes(marker)) out.push(Number(d));
    } catch {
      // Gone, or not ours.
    }
  }
  return out;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("a script without the if (import.meta.main) guard", () => {
  test("fails its toDist() with an error naming the guard; one child was spawned and nothing is left running", async () => {
    const dir = await mkdtemp(join(tmpdir(), "as-mistakes-"));
    const marker = join(dir, "pids");
    try {
      await using script = Bun.spawn([process.execPath, join(FIXTURES, "unguarded-script.ts")], {
        env: { ...process.env, AS_TEST_MARKER: marker },
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
        timeout: 20_000,
      });
      const [out] = await Promise.all([new Response(script.stdout).text(), new Response(script.stderr).text()]);
      expect(await script.exited).toBe(0);
      expect(out).toContain("ERROR FAILED_PRECONDITION");
      expect(out).toContain("if (import.meta.main)");
      expect(out).toContain("unguarded-script.ts");
      expect(out).not.toContain("RESULT");
      // The script itself and the one child it spawned ran the top level; no grandchild did.
      const pids = readFileSync(marker, "utf8").trim().split("\n").map(Number);
      expect(pids.length).toBe(2);
      expect(pids[0]).toBe(script.pid);
      for (const pid of pids) expect(isAlive(pid)).toBe(false);
      expect(processesWith(marker)).toEqual([]);
    } finally {
      // Whatever a failure left behind: kill it before the next test.
      for (const pid of processesWith(marker)) process.kill(pid, "SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const how of ["plain", "caught", "unawaited"] as const) {
    test(`a child whose module calls toDist() at its top level (${how}) refuses to start: FAILED_PRECONDITION naming the guard`, async () => {
      process.env.AS_TEST_TOPLEVEL = how;
      try {
        const p = child(new SpawnsAtTopLevel().toDist());
        const err = await rejection(p.hi());
        expect(err).toBeInstanceOf(AgentCreationError);
        expect(err.code).toBe("FAILED_PRECONDITION");
        expect(err.message).toContain("if (import.meta.main)");
        expect(err.message).toContain("toDist() of Helper");
        expect(err.message).toContain("child-top-level.ts");
        await p.stop();
        expect(liveChildren()).toBe(0);
      } finally {
        delete process.env.AS_TEST_TOPLEVEL;
      }
    });
  }

  test("while a child server imports its class's module, toDist() throws at once and spawns nothing", () => {
    setChildImport(1, { module: "file:///app/main.ts", classes: ["Main"] });
    try {
      const before = liveChildren();
      expect(() => new Helper().toDist()).toThrow(/if \(import\.meta\.main\)/);
      expect(() => Helper.toDist(true)).toThrow(AgentCreationError);
      expect(liveChildren()).toBe(before);
    } finally {
      setChildImport(0);
    }
  });

  test(`child servers nested ${MAX_CHILD_DEPTH} deep refuse to spawn another`, () => {
    setChildImport(MAX_CHILD_DEPTH);
    try {
      expect(() => new Helper().toDist()).toThrow(new RegExp(`nested ${MAX_CHILD_DEPTH} deep`));
    } finally {
      setChildImport(0);
    }
  });

  test("a method of a child-mode object may still put an object in a child server of its own", async () => {
    const b = child(new Box("outer").toDist());
    const pid = await b.pid();
    expect(await b.nested()).toBe(`inner in ${pid}`);
  });
});

describe("a class no child server can import", () => {
  test("a class from bun -e fails toDist() at once, saying it must live in a module file", async () => {
    const code = [
      `import { Distributable, dist } from ${JSON.stringify(join(import.meta.dir, "../src/index.ts"))};`,
      "@dist class Ev extends Distributable {}",
      "try { new Ev().toDist(); console.log('SPAWNED'); } catch (e) { console.log('ERROR', e.code, e.message); }",
    ].join("\n");
    await using p = Bun.spawn([process.execPath, "-e", code], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 20_000 });
    const out = await new Response(p.stdout).text();
    expect(await p.exited).toBe(0);
    expect(out).toContain("ERROR FAILED_PRECONDITION class Ev was defined in `bun -e` code");
    expect(out).toContain("top level of a module file");
    expect(out).not.toContain("SPAWNED");
  });

  test("a class declared inside a function: NOT_FOUND saying it must be at the top level of its module", async () => {
    const Local = make();
    const p = child(new Local().toDist());
    const err = await rejection(remoteState(p)!.ready);
    expect(err).toBeInstanceOf(AgentCreationError);
    expect(err.code).toBe("NOT_FOUND");
    expect(err.message).toContain("class Local is not defined at the top level of");
    expect(err.message).toContain("local-class.ts");
    expect(err.message).toContain("inside a function");
    await p.stop();
  });
});

describe("values that would arrive broken are refused, naming what and why", () => {
  let box: Remote<Box>;
  const getBox = (): Remote<Box> => (box ??= child(new Box("main").toDist()));

  test("a class instance as an argument: CodecError naming the class and the fix, nothing sent", async () => {
    const err = await rejection(getBox().echo(new Point(1, 2)));
    expect(err).toBeInstanceOf(CodecError);
    expect(err.message).toContain("an instance of class Point cannot be sent as a value");
    expect(err.message).toContain("toDist()");
    expect(await getBox().label).toBe("main");
  });

  test("a method returning a class instance fails instead of answering a plain object", async () => {
    const err = await rejection(getBox().point());
    expect(err).toBeInstanceOf(AgentServerError);
    expect(err.message).toContain("an instance of class Point cannot be sent as a value");
  });

  test("a class with toJSON() sends its JSON data", async () => {
    expect(await getBox().money()).toEqual({ cents: 250, currency: "EUR" } as unknown as Money);
    expect(await getBox().echo(new Money(5))).toEqual({ cents: 5, currency: "EUR" } as unknown as Money);
  });

  test("a sync generator result or a local generator inside a value: refused, only a RemoteStream travels", async () => {
    const gen = await rejection(getBox().numbers());
    expect(gen.message).toContain("a generator (a function* result) cannot be sent as a value: only a RemoteStream");
    expect(gen.message).toContain("unserializable return value of Box.numbers");
    const nested = await rejection(getBox().nestedStream());
    expect(nested.message).toContain("an async generator");
    async function* local(): AsyncGenerator<number> {
      yield 1;
    }
    const arg = await rejection(getBox().echo(local()));
    expect(arg).toBeInstanceOf(CodecError);
    expect(arg.message).toContain("only a RemoteStream");
  });

  test("Msg, Error, Map, Set, Date, typed arrays and null-prototype objects still round-trip", async () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { k: 1 });
    const v = { m: new Map([[1, new Set(["a"])]]), d: new Date(5), f: new Float32Array([1.5]), e: new RangeError("r"), bare };
    const out = (await getBox().echo(v)) as typeof v;
    expect(out.m).toEqual(v.m);
    expect(out.d.getTime()).toBe(5);
    expect([...out.f]).toEqual([1.5]);
    expect(out.e).toBeInstanceOf(RangeError);
    expect(out.bare).toEqual({ k: 1 });
    const reply = await getBox().hello(new Msg({ name: "u", content: "there" }));
    expect(reply).toBeInstanceOf(Msg);
    expect(reply.content).toBe("hello there");
  });

  test("proxies and AsyncResults still travel as references; a server-held object returned arrives as a proxy", async () => {
    const other = child(new Box("other").toDist());
    expect(await getBox().via(other, "through")).toBe("through");
    const pending = other.echo("later");
    expect(pending).toBeInstanceOf(AsyncResult);
    expect(await getBox().echo(pending)).toBe("later");
    const sib = await getBox().sibling();
    expect(remoteState(sib)).toBeDefined();
    expect(await sib.label).toBe("main-sibling");
  });
});

describe("two @dist classes with one name", () => {
  test("one agent dir holding both fails to load, naming both files", async () => {
    const err = await rejection(loadAgentsFromDir(join(FIXTURES, "twins")));
    expect(err).toBeInstanceOf(AgentCreationError);
    expect(err.code).toBe("ALREADY_EXISTS");
    expect(err.message).toContain("two different @dist classes are named Twin");
    expect(err.message).toContain(join(FIXTURES, "twins", "a.ts"));
    expect(err.message).toContain(join(FIXTURES, "twins", "b.ts"));
  });

  test("a server launched on that agent dir refuses to start with the same error", async () => {
    const l = new RpcAgentServerLauncher({ port: 0, agentDir: join(FIXTURES, "twins") });
    const err = await rejection(l.launch());
    expect(err.message).toContain("two different @dist classes are named Twin");
    await l.shutdown();
  });

  test("a launcher given both as customAgentClasses refuses to start, naming both", async () => {
    const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: [TwinA, TwinB] });
    const err = await rejection(l.launch());
    expect(err.message).toContain("two different @dist classes are named Twin");
    await l.shutdown();
  });

  test("in child mode each is still found by its module", async () => {
    const [a, b] = [child(new TwinA().toDist()), child(new TwinB().toDist())];
    expect([await a.which(), await b.which()]).toEqual(["a", "b"]);
  });

  test("the same module imported again registers its class again without complaint", async () => {
    const again = (await import(`./fixtures/mistakes/twins/a.ts?again=${Date.now()}`)) as { Twin: typeof TwinA };
    expect(again.Twin).not.toBe(TwinA);
    const p = child(new again.Twin().toDist());
    expect(await p.which()).toBe("a");
  });
});

describe("readable agent ids", () => {
  @dist
  class Local extends Distributable {}

  test("isObjectId takes 1-128 chars of [A-Za-z0-9._:-]; task ids stay 32 hex; generated ids are 32 hex", () => {
    for (const ok of ["alice", "custom_test", "a.b:c-d_E9", "x", "A".repeat(128)]) expect(isObjectId(ok)).toBe(true);
    for (const bad of ["", "A".repeat(129), "a b", "a/b", "ä", "a\n", 42, null]) expect(isObjectId(bad)).toBe(false);
    expect(isId("alice")).toBe(false);
    expect(new Local().oid).toMatch(/^[0-9a-f]{32}$/);
  });

  test("createAgent takes a readable id; connect() and the management calls reach it by that id", async () => {
    await using server = await startServer({ customAgentClasses: [Tally, Box] });
    const client = new RpcClient(server.host, server.port);
    const long = "agent.".padEnd(128, "x");
    expect(await client.createAgent({ className: "Tally", args: [1] }, "custom_test")).toBe(true);
    expect(await client.createAgent({ className: "Box", args: ["alice's box"] }, "alice")).toBe(true);
    expect(await client.createAgent({ className: "Tally" }, long)).toBe(true);
    const ids = (await client.getAgentList()).map((a) => a.id);
    expect(ids).toEqual(expect.arrayContaining(["custom_test", "alice", long]));
    const t = connect<Tally>({ ...server.conf, oid: "custom_test" });
    expect(await t.inc()).toBe(2);
    expect(t.oid).toBe("custom_test");
    // A proxy to a readable-id object passes as an argument and is called from the server.
    const alice = connect<Box>({ ...server.conf, oid: "alice" });
    expect(await alice.via(t, "hop")).toBe("hop");
    expect(await connect<Tally>({ ...server.conf, oid: long }).inc(3)).toBe(3);
    expect(await client.getAgentMemory("custom_test")).toBeNull();
    expect(await client.deleteAgent("alice")).toBe(true);
    expect((await client.getAgentList()).map((a) => a.id)).not.toContain("alice");
    client.close();
  });

  test("ids outside the alphabet or length are refused with INVALID_ARGUMENT, locally and by the server", async () => {
    await using server = await startServer({ customAgentClasses: [Tally] });
    const client = new RpcClient(server.host, server.port);
    for (const bad of ["", "A".repeat(129), "has space", "a/b", "é"]) {
      const err = await rejection(client.createAgent({ className: "Tally" }, bad));
      expect(err).toBeInstanceOf(AgentCreationError);
      expect(err.code).toBe("INVALID_ARGUMENT");
      expect(() => connect({ ...server.conf, oid: bad })).toThrow(/oid must be 1-128 characters/);
    }
    const conn = connectionFor(server.conf);
    const raw = await conn.send({ t: "create", oid: "bad id", cls: "Tally", args: encodeValue([]) });
    expect(raw.t === "error" && raw.error.code).toBe("INVALID_ARGUMENT");
    // Task ids are not object ids: they stay 32 hex.
    const wait = await conn.send({ t: "wait", task: "alice", timeoutMs: 10 });
    expect(wait.t === "error" && wait.error.code).toBe("INVALID_ARGUMENT");
    client.close();
  });
});
