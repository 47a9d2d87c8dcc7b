/**
 * The seed's WebAgent: "crawling" a page takes S seconds. With `work = "blocking"` that is
 * `Bun.sleepSync` (the seed's `time.sleep`, or a crawler's parsing): blocking work does not
 * overlap on one event loop, so five local agents take 5·S and five agents in five child
 * servers take S. With `work = "io"` it is `await Bun.sleep` (waiting on the network), which
 * overlaps inside one server too — the right model when all agents share one server.
 */
import { AgentBase, Msg, asyncFunc, dist } from "actorscope";

@dist
export class WebAgent extends AgentBase {
  /** Work of one crawl, in seconds. A constructor argument, so the server-side copy gets it too. */
  readonly sleepSeconds: number;

  /** How the crawl spends its time: blocking the thread, or awaiting (I/O). */
  readonly work: "blocking" | "io";

  constructor(name: string, sleepSeconds = 5, work: "blocking" | "io" = "blocking") {
    super(name);
    this.sleepSeconds = sleepSeconds;
    this.work = work;
  }

  /** Pretend to crawl `url` and find the answer to `query` in it. */
  async getAnswer(url: string, query: string): Promise<string> {
    if (this.work === "io") await Bun.sleep(this.sleepSeconds * 1000);
    else Bun.sleepSync(this.sleepSeconds * 1000);
    return `Answer from ${this.name} (${url}: ${query})`;
  }

  @asyncFunc
  override async reply(x?: Msg): Promise<Msg> {
    const m = await x;
    const { url, query } = (m?.content ?? {}) as { url: string; query: string };
    return new Msg({ name: this.name, role: "assistant", content: await this.getAnswer(url, query) });
  }
}
