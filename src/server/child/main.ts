/**
 * Entry point of a child agent server (spawned by `toDist()` with Bun IPC). It imports the
 * module that defines the class — so a script's `if (import.meta.main)` block does not run
 * here — serves the parent over IPC, and exits when the parent goes away.
 */
import { takeChildConfig } from "../../core/child-config.ts";
import { childMain } from "./run.ts";

await childMain(await takeChildConfig());
