/**
 * Answers of a `Batch` call or a wait `Session`, gathered into messages: answers ready in the
 * same turn of the event loop share one message, a message is sent at once when it reaches
 * `FLUSH_BYTES`, and a large value travels alone, so no message is bigger than one answer needs.
 */
import type { Response } from "../../../core/protocol.ts";
import { toReply } from "../../../wire/grpc-proto.ts";
import { withJoinedFrames } from "../../../core/split-frame.ts";

/** Answers are sent at once when the pending ones reach this many bytes. */
export const FLUSH_BYTES = 256 * 1024;

/** One answer of a message: the item's index (Batch) or id (Session). */
export type Answer = { index: number; reply: ReturnType<typeof toReply> };

/** Gathers answers and hands them to `write` as messages. */
export class AnswerBuffer {
  readonly #write: (answers: Answer[]) => void;
  #out: Answer[] = [];
  #bytes = 0;
  #scheduled: ReturnType<typeof setImmediate> | undefined;

  constructor(write: (answers: Answer[]) => void) {
    this.#write = write;
  }

  /** Add the answer to item `index`; it goes out with this turn's others, or at once when large. */
  add(index: number, r: Response): void {
    const size = r.t === "value" ? r.value.byteLength : 64;
    if (this.#bytes > 0 && this.#bytes + size > FLUSH_BYTES) this.flush();
    // A split value is written at once or joined: its leaves are a method's live arrays.
    this.#out.push({ index, reply: toReply(size < FLUSH_BYTES ? withJoinedFrames(r) : r) });
    this.#bytes += size;
    if (this.#bytes >= FLUSH_BYTES) this.flush();
    else this.#scheduled ??= setImmediate(() => this.flush());
  }

  /** Send what is gathered now. */
  flush(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    if (this.#out.length === 0) return;
    const answers = this.#out;
    this.#out = [];
    this.#bytes = 0;
    this.#write(answers);
  }
}
