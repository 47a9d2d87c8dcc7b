/**
 * How the Redis pool stores a task in Redis: one value per task under `<prefix>r:<task>`, a
 * tag byte then a body.
 *
 * | tag | body | written by |
 * |-----|------|------------|
 * | `P` | the id of the server running the task | `prepare` (SET NX), refreshed by the lease |
 * | `V` | the encoded value (codec frame bytes) | `set` of a task that returned |
 * | `E` | the wire error as UTF-8 JSON | `set` of a task that threw |
 *
 * The same bytes are published on the task's channel (`<prefix>d:<task>`) when the entry is
 * small, or `L` ("it landed, GET it") when it is not. Decoding never trusts the bytes: an
 * entry that is none of the above is an INTERNAL error, never a value.
 */
import { AgentServerError, type WireError } from "../../core/errors.ts";
import type { Outcome } from "./types.ts";

export const TAG_PENDING = 0x50; // "P"
export const TAG_VALUE = 0x56; // "V"
export const TAG_ERROR = 0x45; // "E"
/** Published instead of a large entry: "it landed, GET it". */
export const TAG_LANDED = 0x4c; // "L"

/**
 * Largest entry published whole. Redis drops a subscriber connection whose output buffer
 * passes `client-output-buffer-limit pubsub` (32 MiB hard, 8 MiB for 60 s by default), which
 * would cut off every remote waiter of that server; bigger results are announced and fetched.
 */
export const PUBLISH_WHOLE_MAX = 64 * 1024;

/** An outcome as a Redis entry: a tag byte, then the value bytes or the wire error as JSON. */
export function encodeOutcome(o: Outcome): Buffer {
  if (o.ok) {
    const b = Buffer.allocUnsafe(1 + o.value.byteLength);
    b[0] = TAG_VALUE;
    b.set(o.value, 1);
    return b;
  }
  return Buffer.concat([Buffer.of(TAG_ERROR), Buffer.from(JSON.stringify(o.error), "utf8")]);
}

/** Read an entry written by `prepare` or `encodeOutcome`; anything else is INTERNAL. */
export function decodeEntry(b: Buffer, task: string): Outcome | "pending" {
  switch (b[0]) {
    case TAG_PENDING:
      return "pending";
    case TAG_VALUE:
      // A copy: the reply buffer may be a view into a larger socket buffer.
      return { ok: true, value: new Uint8Array(b.subarray(1)) };
    case TAG_ERROR: {
      let w: Partial<WireError> | null = null;
      try {
        w = JSON.parse(b.subarray(1).toString("utf8")) as Partial<WireError> | null;
      } catch {
        // Malformed: reported below.
      }
      if (typeof w?.code === "string" && typeof w.message === "string") return { ok: false, error: w as WireError };
    }
  }
  throw new AgentServerError(`result of task ${task} is malformed in Redis`, { code: "INTERNAL" });
}
