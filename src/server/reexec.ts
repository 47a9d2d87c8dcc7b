/**
 * `as-server start` runs itself again, in place, with a server's start settings
 * (`src/core/server-env.ts`) when its environment lacks them: they are read by Bun's allocator
 * before any JavaScript runs, so setting them in `process.env` would do nothing. `execve`
 * keeps the process id, its open stdio and its parent — scripts that wait for the listening
 * line, or `kill` the pid they started, see one process, as before. It costs one more start
 * of the runtime (~25 ms), once.
 *
 * Nothing happens when every setting is set already (an operator's own value is kept), on
 * platforms without `execve`, for a process holding an IPC channel from its parent (it would
 * not survive), or when `execve` is not reachable: the server then runs with the defaults.
 */
import type { Pointer } from "bun:ffi";
import { isCompiled } from "../client/spawn.ts";
import { SERVER_START_ENV, START_ENV_ADDED, withStartEnv } from "../core/server-env.ts";

/** C libraries to find `execve` in, by platform. */
const LIBC: Readonly<Record<string, readonly string[]>> = {
  linux: ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1"],
  darwin: ["/usr/lib/libSystem.B.dylib"],
};

/**
 * Replace this process with itself under the server start settings, if it lacks any; returns
 * only when it did not (nothing to do, or not possible here).
 */
export async function reexecWithStartEnv(): Promise<void> {
  if (Object.keys(SERVER_START_ENV).every((k) => process.env[k] !== undefined)) return;
  if (process.env[START_ENV_ADDED] !== undefined || process.env.NODE_CHANNEL_FD !== undefined) return;
  const libs = LIBC[process.platform];
  if (!libs) return;
  let ffi: typeof import("bun:ffi");
  try {
    ffi = await import("bun:ffi");
  } catch {
    return; // A runtime without FFI: run with the defaults.
  }
  const { dlopen, FFIType, ptr } = ffi;
  let execve: ((path: Pointer, argv: Pointer, envp: Pointer) => number) | undefined;
  for (const name of libs) {
    try {
      execve = dlopen(name, { execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } }).symbols.execve;
      break;
    } catch {
      // Not this C library: try the next.
    }
  }
  if (!execve) return;
  // The compiled binary's argv[1] is its own entry (/$bunfs/…), which it adds again at start.
  const args = isCompiled() ? [process.execPath, ...process.argv.slice(2)] : [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
  const env = Object.entries(withStartEnv(process.env)).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
  const argv = args.map(cString);
  const envp = env.map(cString);
  // The strings stay referenced (argv, envp) until execve has copied them.
  execve(ptr(argv[0]!), ptr(pointers(argv, ptr)), ptr(pointers(envp, ptr)));
}

function cString(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

/** A NULL-terminated array of the strings' addresses. */
function pointers(strings: Buffer[], ptr: (b: Buffer) => Pointer): BigUint64Array {
  const a = new BigUint64Array(strings.length + 1);
  strings.forEach((b, i) => (a[i] = BigInt(ptr(b))));
  return a;
}
