/**
 * What an independent server needs from this folder: `as-server start --agent-dir
 * examples/llm-debate` serves the `@dist` classes the folder's files export, and the debate's
 * agents are DialogAgents.
 */
export { DialogAgent } from "actorscope";
