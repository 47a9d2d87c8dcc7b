/**
 * Object ids. A server constructing the remote copy of an object presets the id so the
 * constructor of `Distributable` picks it up: the copy keeps the caller's `oid` from the
 * first line of its constructor on. Generated ids are 32 random hex characters; ids chosen by
 * users (`createAgent(…, "alice")`) are any 1–128 characters of `[A-Za-z0-9._:-]`, checked by
 * `isObjectId` wherever an id comes in.
 */
import { randomId } from "./ids.ts";

let preset: string | undefined;

/** Run `make` with `oid` as the id the next `Distributable` constructed takes. */
export function withPresetOid<T>(oid: string, make: () => T): T {
  const prev = preset;
  preset = oid;
  try {
    return make();
  } finally {
    preset = prev;
  }
}

/** The preset id (consumed), or a fresh random one. */
export function takeOid(): string {
  const p = preset;
  if (p !== undefined) {
    preset = undefined;
    return p;
  }
  return randomId();
}
