/**
 * The seed's WebAgent: "crawling" a page is S seconds of *blocking* work (`Bun.sleepSync`,
 * standing in for the seed's `time.sleep` or a crawler's parsing). Blocking work does not
 * overlap on one event loop, so five local agents take 5·S; five distributed ones take S.
 */
import { AgentBase, Msg, asyncFunc, dist } from "../../src/index.ts";

@dist
export class WebAgent extends AgentBase {
  /** Work of one crawl, in seconds. A constructor argument, so the server-side copy gets it too. */
  readonly sleepSeconds: number;

  constructor(name: string, sleepSeconds = 5) {
    super(name);
    this.sleepSeconds = sleepSeconds;
  }

  /** Pretend to crawl `url` and find the answer to `query` in it. */
  getAnswer(url: string, query: string): string {
    Bun.sleepSync(this.sleepSeconds * 1000);
    return `Answer from ${this.name} (${url}: ${query})`;
  }

  @asyncFunc
  override async reply(x?: Msg): Promise<Msg> {
    const m = await x;
    const { url, query } = (m?.content ?? {}) as { url: string; query: string };
    return new Msg({ name: this.name, role: "assistant", content: this.getAnswer(url, query) });
  }
}
