/**
 * The agent of the progress example: a crawler that reports progress through a callback and
 * asks its caller a question through another one. Both run in the caller's process.
 */
import { Distributable, dist } from "actorscope";

/** What the caller lends the crawler to ask a human. */
export interface Human {
  ask(question: string): Promise<string>;
}

@dist
export class Crawler extends Distributable {
  /** "Fetches" each page (a short sleep stands in for the network) and reports after each. */
  async crawl(pages: string[], progress: (done: number, total: number, page: string) => Promise<void>, msPerPage = 60): Promise<number> {
    let bytes = 0;
    for (let i = 0; i < pages.length; i++) {
      await Bun.sleep(msPerPage);
      bytes += pages[i]!.length * 1000;
      await progress(i + 1, pages.length, pages[i]!);
    }
    return bytes;
  }

  /** Asks the caller whether to go deeper; crawls a second round only on "y". */
  async followLinks(human: Human, progress: (done: number, total: number, page: string) => Promise<void>): Promise<string> {
    const answer = (await human.ask("Follow the 3 links found? [y/n] ")).trim().toLowerCase();
    if (answer !== "y") return "stopped at the caller's request";
    const bytes = await this.crawl(["/a", "/b", "/c"], progress, 30);
    return `followed 3 links (${bytes} bytes)`;
  }
}
