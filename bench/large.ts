#!/usr/bin/env bun
/**
 * Large arguments: a sync echo of 1 MB, 10 MB and 30 MB `Uint8Array`s (there and back),
 * in child mode against the raw Bun IPC echo of the same bytes, and in independent mode
 * against the raw grpc-js echo of the same bytes.
 *
 *   bun bench/large.ts [--quick]
 */
import { RpcClient, type Remote } from "../src/index.ts";
import { DEFAULT_LIMITS } from "../src/rpc/limits.ts";
import { setProcessLimits } from "../src/rpc/refs.ts";
import { Echo } from "./fixtures/bench-agents.ts";
import { LARGE_MB, msRow, payload } from "./floors.ts";
import { serverProcess } from "./grpc.ts";
import { quick, runSection, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 5;
/** Above the 32 MiB default, so a 30 MB value plus framing fits on every hop. */
const MAX_BYTES = 64 * 2 ** 20;

async function echoRows(mode: "child" | "independent", e: Remote<Echo>): Promise<Row[]> {
  const rows: Row[] = [];
  for (const mb of LARGE_MB) {
    const b = payload(mb);
    const check = async () => {
      const r = (await e.echo(b)) as Uint8Array;
      if (r.byteLength !== b.byteLength) throw new Error("wrong echo");
    };
    const floorId = mode === "child" ? `floor.ipc.${mb}MB` : `floor.grpc.${mb}MB`;
    const row = await msRow({ id: `${mode === "child" ? "child" : "grpc"}.large.${mb}MB`, name: `${mode}: sync echo of ${mb} MB`, floorId }, ROUNDS, check);
    if (mode === "independent" && mb === 10) row.budget = { text: "≤ 1.3× raw grpc-js (AgentScope 82 ms)", maxRatio: 1.3 };
    if (mb === 1) row.budget = mode === "child" ? "AgentScope 7.7 ms" : "AgentScope 7.7 ms";
    rows.push(row);
  }
  return rows;
}

async function childRows(): Promise<Row[]> {
  const e = new Echo().toDist();
  await e.echo(0);
  try {
    return await echoRows("child", e);
  } finally {
    await e.stop();
  }
}

async function independentRows(): Promise<Row[]> {
  const l = await serverProcess({ maxMessageBytes: MAX_BYTES });
  // The client side: this process's codec limit, and the connection's message limit (the
  // connection is made on first use, by this RpcClient, with the larger limit).
  setProcessLimits({ ...DEFAULT_LIMITS, maxMessageBytes: MAX_BYTES });
  const client = new RpcClient(l.host, l.port, { maxMessageBytes: MAX_BYTES });
  await client.isAlive();
  const e = new Echo().toDist({ host: l.host, port: l.port });
  await e.echo(0);
  try {
    return await echoRows("independent", e);
  } finally {
    client.close();
    await l.shutdown();
  }
}

if (import.meta.main) {
  await runSection("large arguments", async () => [...(await childRows()), ...(await independentRows())]);
}
