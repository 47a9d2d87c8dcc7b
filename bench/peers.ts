#!/usr/bin/env bun
/**
 * Peers a TypeScript user would pick instead, doing the same work as the actorscope rows:
 * - Cap'n Web (`capnweb`): a WebSocket session to a `Bun.serve` server in its own process;
 * - Comlink over a Bun Worker (a thread of this process, structured clone over postMessage).
 * Rows: echo round trip, pipelined echo, and the seed scenario (5 agents, S s of blocking
 * work each: 5 server processes / 5 workers), with its init and teardown.
 *
 *   bun bench/peers.ts [--quick]
 */
import { newWebSocketRpcSession } from "capnweb";
import * as Comlink from "comlink";
import { WINDOW } from "./floors.ts";
import { here, latencyRow, quick, runSection, spawnReady, stats, throughputRow, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 5;
const N = quick ? 2000 : 10_000;
const PIPE = quick ? 10_000 : 40_000;
const S = 1;

interface PeerAgent {
  echo<T>(v: T): Promise<T>;
  work(seconds: number, name: string): Promise<{ name: string; content: string }>;
}

interface Peer {
  agent: PeerAgent;
  stop(): Promise<void>;
}

async function capnweb(): Promise<Peer> {
  const srv = await spawnReady<{ port: number }>([process.execPath, here("./fixtures/capnweb-server.ts")]);
  const agent = newWebSocketRpcSession<PeerAgent & Disposable>(`ws://127.0.0.1:${srv.ready.port}/`) as unknown as PeerAgent & Disposable;
  return {
    agent,
    async stop() {
      agent[Symbol.dispose]();
      srv.proc.kill();
      await srv.proc.exited;
    },
  };
}

async function comlink(): Promise<Peer> {
  const w = new Worker(here("./fixtures/comlink-worker.ts"));
  const agent = Comlink.wrap<PeerAgent>(w as unknown as Comlink.Endpoint) as unknown as PeerAgent;
  return {
    agent,
    async stop() {
      const closed = new Promise((r) => w.addEventListener("close", r, { once: true }));
      w.terminate();
      await closed;
    },
  };
}

async function peerRows(key: string, label: string, make: () => Promise<Peer>): Promise<Row[]> {
  const rows: Row[] = [];
  const p = await make();
  await p.agent.echo(0);
  rows.push(await latencyRow({ id: `peer.${key}.rtt`, name: `${label}: echo round trip` }, ROUNDS, N, (i) => p.agent.echo(i)));
  rows.push(await throughputRow({ id: `peer.${key}.pipe`, name: `${label}: pipelined echo (${WINDOW} in flight)` }, ROUNDS, PIPE, WINDOW, (i) => p.agent.echo(i)));
  await p.stop();

  // The seed scenario: five agents, each S s of blocking work, run together.
  const inits: number[] = [];
  const stops: number[] = [];
  const seeds: number[] = [];
  for (let r = 0; r < (quick ? 1 : 3); r++) {
    const t0 = performance.now();
    const agents = await Promise.all(Array.from({ length: 5 }, make));
    await Promise.all(agents.map((a) => a.agent.echo(0)));
    inits.push(performance.now() - t0);
    await Promise.all(agents.map((a, i) => a.agent.work(0, `W${i}`)));
    const t1 = performance.now();
    const out = await Promise.all(agents.map((a, i) => a.agent.work(S, `W${i}`)));
    seeds.push(performance.now() - t1);
    if (out.some((m, i) => m.name !== `W${i}`)) throw new Error("wrong seed answer");
    const t2 = performance.now();
    await Promise.all(agents.map((a) => a.stop()));
    stops.push(performance.now() - t2);
  }
  rows.push({ id: `peer.${key}.init5`, name: `${label}: init of 5 agents`, value: stats(inits).median, unit: "ms", rounds: inits });
  rows.push({ id: `peer.${key}.seed`, name: `${label}: seed scenario S=${S} (5 agents)`, value: stats(seeds).median, unit: "ms", rounds: seeds });
  rows.push({ id: `peer.${key}.stop5`, name: `${label}: teardown of 5`, value: stats(stops).median, unit: "ms", rounds: stops });
  return rows;
}

if (import.meta.main) {
  await runSection("peers", async () => [
    ...(await peerRows("capnweb", "Cap'n Web (WebSocket, process)", capnweb)),
    ...(await peerRows("comlink", "Comlink (Bun Worker)", comlink)),
  ]);
}
