#!/usr/bin/env bun
/**
 * Large arguments: a sync echo of 1 MB, 10 MB and 30 MB `Uint8Array`s (there and back),
 * in child mode against the raw Bun IPC echo of the same bytes, and in independent mode
 * against the raw grpc-js echo of the same bytes. 30 MB (even 30 MiB) fits under the default
 * 32 MiB message limit, so nothing is raised. Larger values need the launcher's
 * `maxMessageBytes` and `configureLimits({ maxMessageBytes })` on the client; a child server
 * cannot take them (it does not inherit the client's limit, and `DistConf` has no option).
 *
 *   bun bench/large.ts [--quick]
 */
import type { Remote } from "../src/index.ts";
import { Echo } from "./fixtures/bench-agents.ts";
import { rawClient } from "./fixtures/grpc-raw.ts";
import { LARGE_MB, ipcEcho, ipcEnvelope, payload } from "./floors.ts";
import { serverProcess } from "./grpc.ts";
import { here, pairedMsRow, quick, runSection, spawnReady, type Row } from "./lib.ts";

const ROUNDS = quick ? 3 : 5;
/** Echo rows; each paired with the raw echo of the same bytes (`floor`) in alternating rounds. */
async function echoRows(mode: "child" | "independent", e: Remote<Echo>, floor: (b: Uint8Array) => Promise<unknown>): Promise<Row[]> {
  const rows: Row[] = [];
  for (const mb of LARGE_MB) {
    const b = payload(mb);
    const check = async () => {
      const r = (await e.echo(b)) as Uint8Array;
      if (r.byteLength !== b.byteLength) throw new Error("wrong echo");
    };
    const row = await pairedMsRow({ id: `${mode === "child" ? "child" : "grpc"}.large.${mb}MB`, name: `${mode}: sync echo of ${mb} MB` }, ROUNDS, () => floor(b), check);
    // DESIGN.md §5 / issue 20: at most one copy of a large payload per hop, like the raw floors.
    const raw = mode === "child" ? "raw Bun IPC" : "raw grpc-js";
    if (mb >= 10) row.budget = { text: `≤ 1.15× ${raw}${mb === 10 && mode === "independent" ? " (AgentScope 82 ms)" : ""}`, maxRatio: 1.15 };
    if (mb === 1) row.budget = "AgentScope 7.7 ms";
    rows.push(row);
  }
  return rows;
}

async function childRows(): Promise<Row[]> {
  const e = new Echo().toDist();
  await e.echo(0);
  const raw = await ipcEcho();
  try {
    return await echoRows("child", e, (b) => raw.send(ipcEnvelope(b)));
  } finally {
    await raw.stop();
    await e.stop();
  }
}

async function independentRows(): Promise<Row[]> {
  const l = await serverProcess();
  const e = new Echo().toDist({ host: l.host, port: l.port });
  await e.echo(0);
  const srv = await spawnReady<{ port: number }>([process.execPath, here("./fixtures/grpc-echo-server.ts")]);
  const raw = rawClient(srv.ready.port);
  try {
    return await echoRows("independent", e, (b) => raw.echo(b));
  } finally {
    raw.close();
    srv.proc.kill();
    await l.shutdown();
  }
}

if (import.meta.main) {
  await runSection("large arguments", async () => [...(await childRows()), ...(await independentRows())]);
}
