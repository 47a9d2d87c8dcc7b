#!/usr/bin/env bun
/**
 * Many idle agents on one independent server (in its own process): creation rate through
 * `X.toDist(conf, ...)` with a bounded number in flight, and the server's resident memory per
 * agent (`getServerInfo().mem` before and after). Quick mode creates 10k; the full run 10k
 * and then 100k (on a fresh server each). Then 40,000 model configs set at once (their keys
 * registered for masking: linear, not a re-sort per key).
 *
 *   bun bench/scale.ts [--quick]
 */
import { RpcClient, type Remote } from "../src/index.ts";
import { remoteState } from "../src/client/proxy-state.ts";
import { Idle } from "./fixtures/bench-agents.ts";
import { serverProcess } from "./grpc.ts";
import { pumpCalls, quick, runSection, type Row } from "./lib.ts";

const IN_FLIGHT = 512;

async function createRows(count: number): Promise<Row[]> {
  const l = await serverProcess({ maxQueue: 65_536 });
  const conf = { host: l.host, port: l.port };
  const client = new RpcClient(l.host, l.port);
  try {
    // Warm the connection and the server's code paths, then measure from an idle server.
    await pumpCalls(200, 50, async (i) => {
      const a = Idle.toDist(conf, `warm${i}`);
      await remoteState(a)!.ready;
      await a.delete();
    });
    await Bun.sleep(100);
    const before = await client.getServerInfo();
    const t = performance.now();
    let last: Remote<Idle> | undefined;
    await pumpCalls(count, IN_FLIGHT, (i) => {
      const a = Idle.toDist(conf, `A${i}`) as Remote<Idle>;
      if (i === count - 1) last = a;
      return remoteState(a)!.ready;
    });
    const ms = performance.now() - t;
    await Bun.sleep(200);
    const after = await client.getServerInfo();
    if (after.size - before.size !== count) throw new Error(`expected ${count} more agents, the server holds ${after.size - before.size}`);
    // The server still answers promptly with all of them held.
    const t1 = performance.now();
    const m = await last!.reply();
    const replyMs = performance.now() - t1;
    if (m.name !== `A${count - 1}`) throw new Error("wrong reply");
    const k = count >= 1000 ? `${count / 1000}k` : String(count);
    return [
      { id: `scale.create.${k}`, name: `independent: create ${k} idle agents (${IN_FLIGHT} in flight)`, value: count / (ms / 1000), unit: "agents/s", budget: { text: "≥ 20k/s (AgentScope 881/s)", min: 20_000 } },
      { id: `scale.mem.${k}`, name: `independent: server RSS per idle agent (${k} held)`, value: ((after.mem - before.mem) * 1048576) / count, unit: "B", note: `server RSS ${before.mem} → ${after.mem} MiB; an async reply with ${k} held took ${replyMs.toFixed(2)} ms` },
    ];
  } finally {
    client.close();
    await l.shutdown();
  }
}

/** `setModelConfigs` with 40,000 configs, each with a key every later message is masked for. */
async function modelConfigRow(): Promise<Row> {
  const l = await serverProcess();
  const client = new RpcClient(l.host, l.port);
  try {
    await client.isAlive();
    const list = Array.from({ length: 40_000 }, (_, i) => ({ config_name: `c-${i}`, model_type: "openai_chat", model_name: "m", api_key: `sk-proj-${i}-0123456789abcdef` }));
    const t0 = performance.now();
    if (!(await client.setModelConfigs(list))) throw new Error("setModelConfigs refused");
    const ms = performance.now() - t0;
    // Registering each key used to re-sort every key registered before it: 11 s for this.
    return { id: "scale.modelconfigs.40k", name: "independent: setModelConfigs with 40,000 keyed configs", value: ms, unit: "ms", budget: { text: "≤ 1 s (linear key registration)", max: 1000 } };
  } finally {
    client.close();
    await l.shutdown();
  }
}

if (import.meta.main) {
  await runSection("scale (one independent server)", async () => {
    const rows = await createRows(10_000);
    if (!quick) rows.push(...(await createRows(100_000)));
    rows.push(await modelConfigRow());
    return rows;
  });
}
