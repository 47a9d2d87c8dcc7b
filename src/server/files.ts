/**
 * File downloads confined to one directory: the real path of the request (symlinks
 * resolved) must stay inside the real path of the file dir; `..`, absolute paths outside
 * and symlinks leading out are refused with PERMISSION_DENIED.
 */
import { realpath, stat } from "node:fs/promises";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { NotFoundError, PermissionDeniedError, ResourceExhaustedError } from "../rpc/errors.ts";

/** Resolve `path` under `dir`, refusing anything that leaves it. */
export async function confinedPath(dir: string, path: string): Promise<string> {
  if (typeof path !== "string" || path.length === 0 || path.includes("\0")) throw new PermissionDeniedError("bad file path");
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

/** Read a whole file under `dir` (bounded by `maxBytes`). */
export async function readConfined(dir: string, path: string, maxBytes = 32 * 1024 * 1024): Promise<Uint8Array> {
  const real = await confinedPath(dir, path);
  const s = await stat(real);
  if (!s.isFile()) throw new NotFoundError(`${path} is not a file`);
  if (s.size > maxBytes) throw new ResourceExhaustedError(`${path} is ${s.size} bytes, over ${maxBytes}`);
  return new Uint8Array(await Bun.file(real).arrayBuffer());
}

function inside(root: string, p: string): boolean {
  const r = relative(root, p);
  return r === "" || (!r.startsWith(`..${sep}`) && r !== ".." && !isAbsolute(r));
}
