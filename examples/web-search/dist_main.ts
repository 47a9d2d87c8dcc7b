#!/usr/bin/env bun
/**
 * The seed's `dist_main.py`: five WebAgents answering a query, run locally and distributed.
 *
 *   bun examples/web-search/dist_main.ts [--sleep S] [--work blocking|io] [--host H --port P] [--token T]
 *
 * Without --host/--port each agent gets its own child server (child mode). With them the
 * agents are created on a running server (start one with dist_server.ts or `as-server start
 * --agent-dir examples/web-search`). One server runs its agents on one event loop, so there
 * the crawl defaults to `--work io` (awaited, overlapping); blocking work would take 5·S on
 * one server — spread it over several servers or use child mode.
 */
import { parseArgs } from "node:util";
import { AsyncResult, Msg, type DistConf, type Remote } from "actorscope";
import { WebAgent } from "./web-agent.ts";

const QUERY = "example query";
const URLS = ["page_1", "page_2", "page_3", "page_4", "page_5"];

type Agent = WebAgent | Remote<WebAgent>;

function initWithoutDist(sleep: number, work: "blocking" | "io"): WebAgent[] {
  return URLS.map((_, i) => new WebAgent(`W${i}`, sleep, work));
}

function initWithDist(sleep: number, work: "blocking" | "io", conf: DistConf): Remote<WebAgent>[] {
  return URLS.map((_, i) => new WebAgent(`W${i}`, sleep, work).toDist(conf));
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

async function runSequential(agents: WebAgent[]): Promise<number> {
  const start = performance.now();
  for (const [i, url] of URLS.entries()) {
    const r = await agents[i]!.reply(new Msg({ name: "system", role: "system", content: { url, query: QUERY } }));
    console.log(`[${r.name}] ${r.content}`);
  }
  return (performance.now() - start) / 1000;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      sleep: { type: "string", default: "5" },
      host: { type: "string" },
      port: { type: "string" },
      token: { type: "string" },
      work: { type: "string" },
    },
  });
  const sleep = Number(values.sleep);
  if (!(sleep >= 0)) throw new Error(`--sleep must be a number of seconds, not ${values.sleep}`);
  const conf: DistConf = values.host ? { host: values.host, port: Number(values.port), token: values.token } : {};
  const work = values.work ?? (values.host ? "io" : "blocking");
  if (work !== "blocking" && work !== "io") throw new Error(`--work must be blocking or io, not ${work}`);
  console.log(`mode: ${values.host ? `independent (${values.host}:${values.port})` : "child"}, work: ${work}`);

  const t0 = performance.now();
  const simple = initWithoutDist(sleep, work);
  const distributed = initWithDist(sleep, work, conf);
  // Creation is asynchronous; wait until every agent answers so init time is honest.
  await Promise.all(distributed.map((a) => a.name));
  console.log(`init time: ${((performance.now() - t0) / 1000).toFixed(3)} s`);
  // Local agents are awaited one after another, as in the seed's loop over results.
  console.log(`sequential (local) time: ${(await runSequential(simple)).toFixed(3)} s`);
  console.log(`distributed time: ${(await run(distributed)).toFixed(3)} s`);
  await Promise.all(distributed.map((a) => (conf.host ? a.delete() : a.stop())));
}
