/**
 * `as-server stop`: ask a running server to stop (it drains and exits). Unlike AgentScope's
 * CLI, whose success and failure messages were swapped, the exit code says what happened:
 * 0 stopped, 1 not alive or refused.
 */
import { defineCommand } from "citty";
import { log } from "../log.ts";
import { clientArgs, openClient, safeMessage, targetOf } from "./client-args.ts";

/** `as-server stop`. */
export const stop = defineCommand({
  meta: { name: "stop", description: "Stop a running agent server" },
  args: clientArgs,
  async run({ args }) {
    const t = targetOf(args);
    const where = `${t.host}:${t.port}`;
    const client = await openClient(t);
    try {
      if (!(await client.isAlive())) {
        log.error(`no agent server is alive at ${where}`);
        process.exitCode = 1;
      } else if (await client.stop()) {
        log.success(`agent server at ${where} stopped`);
      } else {
        log.error(`agent server at ${where} refused to stop`);
        process.exitCode = 1;
      }
    } catch (e) {
      log.error(`cannot stop the agent server at ${where}: ${safeMessage(e, t)}`);
      process.exitCode = 1;
    } finally {
      client.close();
    }
  },
});
