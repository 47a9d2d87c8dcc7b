/**
 * Callbacks: a remote crawl draws a progress bar in *this* terminal, and asks a question that
 * is answered here, on stdin. Runs the crawler in a child server (default) or on an independent
 * server (`--host H --port P`, started with `as-server start --agent-dir examples/progress`) —
 * the server calls back over a stream this process opened, so it needs no port of its own.
 *
 *   bun examples/progress/main.ts
 *   echo y | bun examples/progress/main.ts        # answer without a terminal
 */
import { parseArgs } from "node:util";
import { callback } from "actorscope";
import { Crawler } from "./agents.ts";

const { values } = parseArgs({ options: { host: { type: "string" }, port: { type: "string" } } });
const crawler = values.host && values.port ? new Crawler().toDist({ host: values.host, port: Number(values.port) }) : new Crawler().toDist();

const pages = Array.from({ length: 12 }, (_, i) => `/page/${i + 1}`);
const tty = process.stdout.isTTY;

/** Draws the bar in place on a terminal; prints one line per step otherwise. */
using bar = callback((done: number, total: number, page: string) => {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const line = `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} ${page}`;
  if (tty) process.stdout.write(`\r${line.padEnd(60)}`);
  else console.log(line);
});

const bytes = await crawler.crawl(pages, bar);
if (tty) process.stdout.write("\n");
console.log(`crawled ${pages.length} pages, ${bytes} bytes`);

/** The question is asked remotely and answered here: a terminal prompt, or a line on stdin. */
using human = callback({
  async ask(question: string): Promise<string> {
    process.stdout.write(question);
    for await (const line of console) {
      console.log(tty ? "" : line);
      return line;
    }
    return "n";
  },
});
console.log(await crawler.followLinks(human, bar));
if (tty) process.stdout.write("\n");
await crawler.stop();
