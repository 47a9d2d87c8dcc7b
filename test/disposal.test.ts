/**
 * Disposal: `await using` ends an RpcClient, a ServerGroup and a launcher the way proxies end
 * theirs — closed clients say so, a shut-down launcher's port refuses connections, a group
 * finishes the placements it started and places nothing more, and a script that disposes of
 * everything exits by itself.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Distributable, RpcAgentServerLauncher, RpcClient, ServerGroup, dist } from "../src/index.ts";
import { closeAllConnections } from "../src/client/connections.ts";
import { runCli, REPO } from "./helpers/cli.ts";
import { rejection } from "./helpers/grpc.ts";

@dist
class Counter extends Distributable {
  n = 0;
  inc(): number {
    return ++this.n;
  }
}

let server: RpcAgentServerLauncher;
/** A port where nothing listens (a server launched and shut down). */
let deadPort = 0;

async function launch(port = 0): Promise<RpcAgentServerLauncher> {
  const l = new RpcAgentServerLauncher({ host: "127.0.0.1", port, customAgentClasses: [Counter], shutdownGraceMs: 200 });
  await l.launch();
  return l;
}

/** Does anything accept a TCP connection on 127.0.0.1:port? */
async function accepts(port: number): Promise<boolean> {
  try {
    const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    s.end();
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  server = await launch();
  const gone = await launch();
  deadPort = gone.port;
  await gone.shutdown();
});

afterAll(async () => {
  await server.shutdown();
  await closeAllConnections();
});

describe("RpcAgentServerLauncher", () => {
  test("await using shuts the server down at the end of the scope: its port refuses connections", async () => {
    let port = 0;
    {
      await using l = await launch();
      port = l.port;
      expect(await accepts(port)).toBe(true);
      expect(await new RpcClient("127.0.0.1", port).isAlive()).toBe(true);
    }
    expect(await accepts(port)).toBe(false);
    expect(await new RpcClient("127.0.0.1", port).isAlive()).toBe(false);
  });

  test("a scope that ends with an exception still shuts the server down", async () => {
    let port = 0;
    const e = await rejection(
      (async () => {
        await using l = await launch();
        port = l.port;
        throw new Error("boom");
      })(),
    );
    expect(e.message).toBe("boom");
    expect(await accepts(port)).toBe(false);
  });

  test("disposing a launcher that was never launched resolves at once; shutdown after it is a no-op", async () => {
    const l = new RpcAgentServerLauncher({ port: 0 });
    await l[Symbol.asyncDispose]();
    await l.shutdown();
    await l.waitUntilTerminate();
  });
});

describe("RpcClient", () => {
  test("await using closes the client: later calls fail FAILED_PRECONDITION, not UNAVAILABLE", async () => {
    let kept: RpcClient;
    {
      await using c = new RpcClient(server.host, server.port);
      expect(await c.isAlive()).toBe(true);
      kept = c;
    }
    const e = await rejection(kept.getAgentList());
    expect(e.code).toBe("FAILED_PRECONDITION");
    expect(e.message).toContain("RpcClient was closed");
    // The shared connection is still there for everyone else.
    expect(await new RpcClient(server.host, server.port).isAlive()).toBe(true);
  });
});

describe("ServerGroup", () => {
  test("await using waits for placements under way; then the group places nothing more, and its proxies keep working", async () => {
    let placed: ReturnType<typeof Counter.toDist<Counter, []>>;
    let kept: ServerGroup;
    {
      // The first server is dead: the placement must fail over before the scope may end.
      await using group = new ServerGroup([`127.0.0.1:${deadPort}`, `127.0.0.1:${server.port}`]);
      placed = Counter.toDist(group);
      kept = group;
      expect(placed.port).toBe(deadPort);
    }
    // Nothing awaited on the proxy itself: the group's disposal did.
    expect(placed.port).toBe(server.port);
    expect(kept.closed).toBe(true);
    expect(kept.status().map((s) => s.placed)).toEqual([0, 1]);
    expect(await placed.inc()).toBe(1);
    const e = (() => {
      try {
        Counter.toDist(kept);
      } catch (err) {
        return err as Error & { code?: string };
      }
      throw new Error("toDist on a closed group did not throw");
    })();
    expect(e.code).toBe("FAILED_PRECONDITION");
    expect(e.message).toContain("ServerGroup was closed");
    expect((await rejection(kept.pick())).code).toBe("FAILED_PRECONDITION");
    expect((await rejection(kept.refresh())).code).toBe("FAILED_PRECONDITION");
    await placed.delete();
  });

  test("a script that disposes of its launcher, group, proxies and client exits by itself", async () => {
    const r = await runCli([process.execPath, join(REPO, "test/fixtures/disposal-script.ts")], [String(deadPort)], { timeoutMs: 15_000 });
    expect(r.stderr).not.toContain("error");
    expect(r.stdout.trim()).toBe("done");
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
  });
});
