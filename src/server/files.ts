/**
 * File downloads confined to one directory: the real path of the request (symlinks
 * resolved) must stay inside the real path of the file dir; `..`, absolute paths outside
 * and symlinks leading out are refused with PERMISSION_DENIED.
 *
 * Two ways to serve one: `readConfined` reads the whole file (the IPC binding, where one
 * message carries it and the message limit bounds it), `openConfined` opens it for a
 * transport that streams it in chunks (gRPC), so a download costs a chunk, not the file.
 */
import type { FileHandle } from "node:fs/promises";
import { NotFoundError, PermissionDeniedError, ResourceExhaustedError } from "../core/errors.ts";

/** Largest file served when the caller names no bound. */
export const DEFAULT_MAX_FILE_BYTES = 32 * 1024 * 1024;

/**
 * node:fs, node:fs/promises and node:path, loaded on the first download: every server
 * (child servers included) imports this module, and loading them costs ~10 ms at start.
 */
let nodeMods: Promise<[typeof import("node:fs"), typeof import("node:fs/promises"), typeof import("node:path")]> | undefined;
const node = () => (nodeMods ??= Promise.all([import("node:fs"), import("node:fs/promises"), import("node:path")]));

/** Resolve `path` under `dir`, refusing anything that leaves it. */
export async function confinedPath(dir: string, path: string): Promise<string> {
  if (typeof path !== "string" || path.length === 0 || path.includes("\0")) throw new PermissionDeniedError("bad file path");
  const [, { realpath }, { isAbsolute, relative, resolve, sep }] = await node();
  const inside = (root: string, p: string): boolean => {
    const r = relative(root, p);
    return r === "" || (!r.startsWith(`..${sep}`) && r !== ".." && !isAbsolute(r));
  };
  const root = await realpath(dir);
  const target = resolve(root, path);
  if (!inside(root, target)) throw new PermissionDeniedError(`${path} is outside the server's file dir`);
  let real: string;
  try {
    real = await realpath(target);
  } catch {
    throw new NotFoundError(`file ${path} not found`);
  }
  if (!inside(root, real)) throw new PermissionDeniedError(`${path} is outside the server's file dir`);
  return real;
}

/** A confined regular file, open for reading; the caller closes `handle`. */
export interface ConfinedFile {
  handle: FileHandle;
  /** Its size when opened: a download sends at most this many bytes. */
  size: number;
}

/**
 * Open a regular file under `dir` (at most `maxBytes` long) for reading. `dir` undefined means
 * the server has no file dir: every download is refused.
 *
 * The file is opened non-blocking and without following a last-component symlink, and the
 * *open handle* is checked to be a regular file: a FIFO (whose plain open would wait for a
 * writer forever) or a file swapped for a link after `confinedPath` never gets read.
 */
export async function openConfined(dir: string | undefined, path: string, maxBytes = DEFAULT_MAX_FILE_BYTES): Promise<ConfinedFile> {
  if (!dir) throw new PermissionDeniedError("this server has no file dir to download from");
  const real = await confinedPath(dir, path);
  const [{ constants }, { open }] = await node();
  let handle: FileHandle;
  try {
    handle = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch {
    throw new NotFoundError(`${path} is not a file`);
  }
  try {
    const s = await handle.stat();
    if (!s.isFile()) throw new NotFoundError(`${path} is not a file`);
    if (s.size > maxBytes) throw new ResourceExhaustedError(`${path} is ${s.size} bytes, over ${maxBytes}`);
    return { handle, size: s.size };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** Read a whole file under `dir` (bounded by `maxBytes`); `dir` undefined refuses, as `openConfined` does. */
export async function readConfined(dir: string | undefined, path: string, maxBytes = DEFAULT_MAX_FILE_BYTES): Promise<Uint8Array> {
  const { handle, size } = await openConfined(dir, path, maxBytes);
  try {
    const out = new Uint8Array(size);
    let at = 0;
    // A file that shrank since it was opened ends early; one that grew is cut at its size then.
    while (at < size) {
      const { bytesRead } = await handle.read(out, at, size - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    return at === size ? out : out.subarray(0, at);
  } finally {
    await handle.close();
  }
}
