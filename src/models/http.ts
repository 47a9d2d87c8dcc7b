/**
 * One HTTP request to a model endpoint, with what every model call needs: a deadline (an idle
 * deadline for streams), cancellation by the caller's signal and by the served remote call
 * (`currentCall()`), and failures turned into `ModelError`s that name the config, keep the
 * status and the start of the body, and never carry a key or a URL's query string.
 */
import { currentCall } from "../core/call-context.ts";
import { ModelError, ModelHttpError, truncate } from "./errors.ts";

/** Default deadline of a model request, seconds (local models on a CPU can be slow). */
export const DEFAULT_TIMEOUT_SECONDS = 300;

/** At most this much of an error body is read (the message keeps less). */
const ERROR_BODY_BYTES = 16 * 1024;

/** What to send. */
export interface ModelRequestInit {
  /** The config the request is for (named in every error). */
  configName: string;
  /** Full endpoint URL (only its origin and path ever appear in messages). */
  url: string;
  /** Request headers, credentials included. */
  headers: Record<string, string>;
  /** Sent as JSON. */
  body: unknown;
  /** Deadline, ms: for the whole request, or between chunks once `touch()` is used. */
  timeoutMs: number;
  /** The caller's signal, if any. */
  signal?: AbortSignal | undefined;
}

/**
 * A POST to a model endpoint.
 *
 * @example
 * const req = new ModelRequest({ configName, url, headers, body, timeoutMs: 60_000 });
 * const json = await req.json();
 */
export class ModelRequest {
  readonly #init: ModelRequestInit;
  readonly #ctl = new AbortController();
  /** Signals from outside: the caller's and the remote call's. Their abort means "cancelled". */
  readonly #outside: AbortSignal[];
  readonly #signal: AbortSignal;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timedOut = false;
  #idle = false;

  constructor(init: ModelRequestInit) {
    this.#init = init;
    this.#outside = [init.signal, currentCall()?.signal].filter((s): s is AbortSignal => s !== undefined);
    this.#signal = this.#outside.length ? AbortSignal.any([this.#ctl.signal, ...this.#outside]) : this.#ctl.signal;
    this.#arm();
  }

  /** `POST origin/path`, for messages: no credentials, query or fragment. */
  get where(): string {
    return `POST ${safeUrl(this.#init.url)}`;
  }

  /** Send; resolves with the response once an OK status arrived. */
  async send(): Promise<Response> {
    let res: Response;
    try {
      if (this.#signal.aborted) throw this.#signal.reason;
      res = await fetch(this.#init.url, {
        method: "POST",
        headers: this.#init.headers,
        body: JSON.stringify(this.#init.body),
        signal: this.#signal,
      });
    } catch (e) {
      this.close();
      throw this.failure(e);
    }
    if (!res.ok) {
      const body = await readPrefix(res, ERROR_BODY_BYTES).catch(() => "");
      this.close();
      throw new ModelHttpError({ configName: this.#init.configName, status: res.status, statusText: res.statusText, where: this.where, body });
    }
    return res;
  }

  /** Send and parse the JSON answer. */
  async json(): Promise<unknown> {
    const res = await this.send();
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw this.failure(e);
    } finally {
      this.close();
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new ModelError(`model config '${this.#init.configName}': ${this.where} answered with something that is not JSON: ${truncate(text.trim(), 200)}`, {
        code: "INTERNAL",
        configName: this.#init.configName,
      });
    }
  }

  /** Data arrived: from now on the deadline is an idle deadline, pushed back by every chunk. */
  touch(): void {
    this.#idle = true;
    this.#arm();
  }

  /** Stop the timer and release the connection (a no-op for a body already read). */
  close(): void {
    clearTimeout(this.#timer);
    this.#ctl.abort();
  }

  /** The `ModelError` to throw for `e`, a failure during this request. */
  failure(e: unknown): ModelError {
    if (e instanceof ModelError) return e;
    const { configName, timeoutMs } = this.#init;
    const head = `model config '${configName}': ${this.where}`;
    if (this.#timedOut) {
      return new ModelError(`${head} timed out: ${this.#idle ? "no data for" : "no answer within"} ${timeoutMs} ms`, { code: "DEADLINE_EXCEEDED", configName });
    }
    const cancelled = this.#outside.find((s) => s.aborted);
    if (cancelled) return new ModelError(`${head} was cancelled`, { code: "CANCELLED", configName, cause: cancelled.reason });
    // Only the message of a network error: the error object itself may hold the full URL.
    return new ModelError(`${head} failed: ${e instanceof Error ? e.message : String(e)}`, { code: "UNAVAILABLE", configName });
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timedOut = true;
      this.#ctl.abort();
    }, this.#init.timeoutMs);
  }
}

/** `origin + path` of `url`: what may appear in messages. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "(invalid url)";
  }
}

/** The first `max` bytes of a body as text; the rest is not read. */
async function readPrefix(res: Response, max: number): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < max) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return new TextDecoder().decode(Buffer.concat(chunks).subarray(0, max));
}
