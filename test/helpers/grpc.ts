/**
 * Helpers for independent-mode (gRPC) tests: launch a real in-process server on a free port
 * and dispose of it with `await using`, and capture the error a promise rejects with.
 */
import { RpcAgentServerLauncher, type LauncherOptions } from "../../src/index.ts";
import { grpcAgentClasses } from "../fixtures/grpc-agents.ts";

/** A launched server that shuts down at the end of its `await using` scope. */
export type TestServer = RpcAgentServerLauncher & AsyncDisposable & { conf: { host: string; port: number } };

/** Launch a server on a free loopback port serving the fixture classes (plus `opts`). */
export async function startServer(opts: LauncherOptions = {}): Promise<TestServer> {
  const l = new RpcAgentServerLauncher({ port: 0, customAgentClasses: grpcAgentClasses, shutdownGraceMs: 1000, ...opts });
  await l.launch();
  return Object.assign(l, {
    conf: { host: l.host, port: l.port },
    [Symbol.asyncDispose]: () => l.shutdown(),
  });
}

/** The error `p` rejects with; fails the test if it resolves. */
export async function rejection(p: PromiseLike<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error("expected the promise to reject, but it resolved");
}
