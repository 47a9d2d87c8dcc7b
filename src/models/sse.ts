/**
 * A reader of server-sent events (the `text/event-stream` format streamed chat completions
 * use), per the WHATWG spec: `data:` lines joined, `event:` kept, comments skipped, events
 * ended by a blank line, any of CRLF / LF / CR as line ends (even split across chunks).
 */

/** One event. */
export interface SseEvent {
  /** The `event:` field, `"message"` when absent. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
}

/** A line longer than this is refused: a peer must not make us buffer without bound. */
export const MAX_SSE_LINE = 4 * 1024 * 1024;

/**
 * The events of `body`. `onBytes` is called whenever bytes arrive (to push an idle deadline
 * back). Stopping the iteration early cancels the body, which closes the connection.
 */
export async function* readSse(body: ReadableStream<Uint8Array>, onBytes?: () => void): AsyncGenerator<SseEvent, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let data: string[] = [];
  let event = "";
  let finished = false;

  const take = (line: string): SseEvent | undefined => {
    if (line === "") {
      const ev = data.length ? { event: event || "message", data: data.join("\n") } : undefined;
      data = [];
      event = "";
      return ev;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    return undefined;
  };

  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        buf += decoder.decode();
      } else {
        onBytes?.();
        buf += decoder.decode(value, { stream: true });
      }
      let at: number;
      while ((at = buf.search(/[\r\n]/)) >= 0) {
        // A CR at the very end may be the first half of a CRLF still in flight.
        if (buf[at] === "\r" && at === buf.length - 1 && !finished) break;
        const width = buf[at] === "\r" && buf[at + 1] === "\n" ? 2 : 1;
        const ev = take(buf.slice(0, at));
        buf = buf.slice(at + width);
        if (ev) yield ev;
      }
      if (buf.length > MAX_SSE_LINE) throw new Error(`event stream line longer than ${MAX_SSE_LINE} bytes`);
      if (finished) {
        // Servers that end the stream without a final blank line still meant their last event.
        if (buf) take(buf);
        const ev = take("");
        if (ev) yield ev;
        return;
      }
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
