#!/usr/bin/env bun
/**
 * The seed's `dist_main.py`: five WebAgents answering a query, run locally and distributed.
 *
 *   bun examples/web-search/dist_main.ts [--sleep S] [--host H --port P] [--token T]
 *
 * Without --host/--port each agent gets its own child server (child mode). With them the
 * agents are created on a running server (start one with dist_server.ts or `as-server start
 * --agent-dir examples/web-search`).
 */
import { parseArgs } from "node:util";
import { AsyncResult, Msg, type DistConf, type Remote } from "../../src/index.ts";
import { WebAgent } from "./web-agent.ts";

const QUERY = "example query";
const URLS = ["page_1", "page_2", "page_3", "page_4", "page_5"];

type Agent = WebAgent | Remote<WebAgent>;

function initWithoutDist(sleep: number): WebAgent[] {
  return URLS.map((_, i) => new WebAgent(`W${i}`, sleep));
}

function initWithDist(sleep: number, conf: DistConf): Remote<WebAgent>[] {
  return URLS.map((_, i) => new WebAgent(`W${i}`, sleep).toDist(conf));
}

async function run(agents: Agent[]): Promise<number> {
  const start = performance.now();
  const results: Array<Msg | Promise<Msg> | AsyncResult<Msg>> = [];
  for (const [i, url] of URLS.entries()) {
    results.push(agents[i]!.reply(new Msg({ name: "system", role: "system", content: { url, query: QUERY } })));
  }
  for (const r of results) console.log(`[${(await r).name}] ${(await r).content}`);
  return (performance.now() - start) / 1000;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      sleep: { type: "string", default: "5" },
      host: { type: "string" },
      port: { type: "string" },
      token: { type: "string" },
    },
  });
  const sleep = Number(values.sleep);
  if (!(sleep >= 0)) throw new Error(`--sleep must be a number of seconds, not ${values.sleep}`);
  const conf: DistConf = values.host ? { host: values.host, port: Number(values.port), token: values.token } : {};

  const t0 = performance.now();
  const simple = initWithoutDist(sleep);
  const distributed = initWithDist(sleep, conf);
  // Creation is asynchronous; wait until every agent answers so init time is honest.
  await Promise.all(distributed.map((a) => a.name));
  console.log(`init time: ${((performance.now() - t0) / 1000).toFixed(3)} s`);
  console.log(`sequential (local) time: ${(await run(simple)).toFixed(3)} s`);
  console.log(`distributed time: ${(await run(distributed)).toFixed(3)} s`);
  await Promise.all(distributed.map((a) => (conf.host ? a.delete() : a.stop())));
}
