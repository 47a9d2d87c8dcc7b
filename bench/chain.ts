#!/usr/bin/env bun
/**
 * A chain of 10 agents over 2 independent servers with trivial work: time from the first call
 * to the final result when each AsyncResult is handed straight to the next agent (the servers
 * resolve it between themselves), against the caller awaiting each hop itself.
 *
 *   bun bench/chain.ts [--quick]
 */
import { Msg, RpcAgentServerLauncher, type AsyncResult } from "../src/index.ts";
import { Adder } from "../test/fixtures/pipeline-agents.ts";
import { medianOf, printTable, saveResults, type Row } from "./lib.ts";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 20 : 100;

const servers = [new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Adder] }), new RpcAgentServerLauncher({ port: 0, customAgentClasses: [Adder] })];
// Servers in their own processes, as in a deployment: in-process they would share the
// caller's event loop and serialise every hop.
await Promise.all(servers.map((s) => s.launch({ inSubprocess: true })));
try {
  const agents = Array.from({ length: 10 }, (_, i) => new Adder(`A${i}`, 0).toDist({ host: servers[i % 2]!.host, port: servers[i % 2]!.port }));
  await Promise.all(agents.map((a) => a.name));
  const start = () => new Msg({ name: "u", metadata: { value: 0 } });
  const check = (m: Msg) => {
    if ((m.metadata as { value: number }).value !== 10) throw new Error("wrong chain result");
  };
  for (let i = 0; i < 5; i++) {
    let r: AsyncResult<Msg> | Msg = start();
    for (const a of agents) r = a.reply(r);
    check(await r);
  }
  const pipelined = await medianOf(ROUNDS, async () => {
    const t = performance.now();
    let r: AsyncResult<Msg> | Msg = start();
    for (const a of agents) r = a.reply(r);
    check(await r);
    return performance.now() - t;
  });
  const awaited = await medianOf(ROUNDS, async () => {
    const t = performance.now();
    let m = start();
    for (const a of agents) m = await a.reply(m);
    check(m);
    return performance.now() - t;
  });
  const rows: Row[] = [
    { name: "10-hop chain, pipelined (servers resolve refs)", value: pipelined, unit: "ms", floor: awaited },
    { name: "10-hop chain, caller awaits each hop", value: awaited, unit: "ms" },
  ];
  printTable("10-agent chain over 2 gRPC servers (ratio = pipelined / awaited)", rows);
  await saveResults(new URL("./results.json", import.meta.url).pathname, "chain", rows);
  await Promise.all(agents.map((a) => a.delete()));
} finally {
  await Promise.all(servers.map((s) => s.shutdown()));
}
