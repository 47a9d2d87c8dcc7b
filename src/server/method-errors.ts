/** How errors a called method threw become wire errors (kept apart from the servicer, which only routes them). */
import { AgentServerError, errorToWire, type WireError } from "../core/errors.ts";

/** Marks an error as thrown by the called method (not by the servicer around it). */
export class ThrownByMethod {
  constructor(readonly error: unknown) {}
}

/**
 * An error a method threw. A system error from the method's own remote calls (say, a
 * reference whose server is gone) keeps its code and its message naming that server, and is
 * marked as raised inside the method — so the caller does not take it for this server's own.
 */
export function userError(e: unknown, hideStacks: boolean | undefined): WireError {
  if (e instanceof AgentServerError && e.code !== "UNKNOWN") {
    const remote: WireError["remote"] = { name: e.name, message: e.message };
    if (!hideStacks && e.stack) remote.stack = e.stack;
    return { code: e.code, message: e.message, remote };
  }
  return errorToWire(e, { hideStacks });
}
