#!/usr/bin/env bun
/**
 * A chain of 10 agents with trivial work: time from the first call to the final result when
 * each AsyncResult is handed straight to the next agent (the servers resolve the references
 * between themselves: promise pipelining), against the caller awaiting each hop itself.
 * Over 2 independent servers (own processes, agents alternating) and over 10 child servers.
 *
 *   bun bench/chain.ts [--quick]
 */
import { Msg, type AsyncResult, type Remote } from "../src/index.ts";
import { Adder } from "../test/fixtures/pipeline-agents.ts";
import { serverProcess } from "./grpc.ts";
import { quick, runSection, stats, type Row } from "./lib.ts";

const ROUNDS = quick ? 20 : 100;

const start = () => new Msg({ name: "u", metadata: { value: 0 } });
function check(m: Msg): void {
  if ((m.metadata as { value: number }).value !== 10) throw new Error("wrong chain result");
}

async function pipelined(agents: Array<Remote<Adder>>): Promise<void> {
  let r: AsyncResult<Msg> | Msg = start();
  for (const a of agents) r = a.reply(r);
  check(await r);
}

async function awaited(agents: Array<Remote<Adder>>): Promise<void> {
  let m = start();
  for (const a of agents) m = await a.reply(m);
  check(m);
}

async function chainRows(label: string, key: string, agents: Array<Remote<Adder>>): Promise<Row[]> {
  await Promise.all(agents.map((a) => a.name));
  for (let i = 0; i < 5; i++) {
    await pipelined(agents);
    await awaited(agents);
  }
  const p: number[] = [];
  const w: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    let t = performance.now();
    await pipelined(agents);
    p.push(performance.now() - t);
    t = performance.now();
    await awaited(agents);
    w.push(performance.now() - t);
  }
  return [
    { id: `chain.${key}.pipelined`, name: `10-hop chain, ${label}: pipelined (servers resolve refs)`, value: stats(p).median, p99: stats(p).p99, unit: "ms", floorId: `chain.${key}.awaited` },
    { id: `chain.${key}.awaited`, name: `10-hop chain, ${label}: caller awaits each hop`, value: stats(w).median, p99: stats(w).p99, unit: "ms" },
  ];
}

async function grpcChain(): Promise<Row[]> {
  const servers = await Promise.all([0, 1].map(() => serverProcess({ customAgentClasses: [Adder] })));
  try {
    const agents = Array.from({ length: 10 }, (_, i) => new Adder(`A${i}`, 0).toDist({ host: servers[i % 2]!.host, port: servers[i % 2]!.port }));
    return await chainRows("2 gRPC servers", "grpc", agents);
  } finally {
    await Promise.all(servers.map((s) => s.shutdown()));
  }
}

async function childChain(): Promise<Row[]> {
  const agents = Array.from({ length: 10 }, (_, i) => new Adder(`A${i}`, 0).toDist());
  try {
    return await chainRows("10 child servers", "child", agents);
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
  }
}

if (import.meta.main) {
  await runSection("10-agent chain (ratio = pipelined / awaited)", async () => [...(await grpcChain()), ...(await childChain())]);
}
