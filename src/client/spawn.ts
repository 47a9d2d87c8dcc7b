/**
 * Spawning this program again, for the two kinds of server process it starts: child servers
 * (`toDist()` without host/port) and `launch({ inSubprocess: true })` servers. One place says
 * how to run ourselves (the compiled binary re-enters through a hidden subcommand; from
 * source, bun runs the entry file) and stops a process (SIGTERM, then SIGKILL); what the
 * process prints is copied, tagged, by child-output.ts. Configuration never goes on argv (any local
 * user can read a command line): child servers get it in their environment, server
 * subprocesses on their stdin.
 */
import type { Subprocess } from "bun";

/** True inside a `bun build --compile` binary (its modules live under /$bunfs/). */
export function isCompiled(): boolean {
  return import.meta.path.startsWith("/$bunfs/") || import.meta.url.startsWith("file:///$bunfs/");
}

/** Entry points of the server processes, as a hidden subcommand of the binary and as a source file. */
const ENTRIES = {
  child: { sub: "__child", file: "../server/child/main.ts" },
  server: { sub: "__server", file: "../server/launcher/main.ts" },
} as const;

/** The command that starts a `child` server or a `server` subprocess of this program. */
export function selfCommand(role: keyof typeof ENTRIES): string[] {
  const e = ENTRIES[role];
  if (isCompiled()) return [process.execPath, e.sub];
  return [process.execPath, Bun.fileURLToPath(new URL(e.file, import.meta.url))];
}

/** SIGTERM `proc` (it drains and exits), SIGKILL it after `killAfterMs`; resolves once it exited. */
export async function stopProcess(proc: Subprocess, killAfterMs: number): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
  const t = setTimeout(() => proc.kill("SIGKILL"), killAfterMs);
  await proc.exited;
  clearTimeout(t);
}
