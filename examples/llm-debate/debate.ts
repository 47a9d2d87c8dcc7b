#!/usr/bin/env bun
/**
 * Three DialogAgents on agent servers — Pro, Con and a Judge — debate a topic in turns for N
 * rounds, each calling any OpenAI-compatible chat endpoint (Ollama, llama.cpp server, vLLM,
 * OpenAI, …). AgentScope's distributed debate, in Bun.
 *
 *   LLM_BASE_URL=http://localhost:11434/v1 LLM_MODEL=llama3.2 \
 *     bun examples/llm-debate/debate.ts [--rounds N] [--topic T]
 *                                       [--host H --port P [--token T] [--send-config]]
 *
 * Env: LLM_BASE_URL (default http://localhost:11434/v1), LLM_MODEL (default llama3.2),
 * LLM_API_KEY (optional). Without --host/--port each agent gets its own child server, which
 * inherits the model config built from these variables. With them the agents are created on a
 * running server (see README.md) that holds a model config named `debate` — its own, from
 * `--model-config-path`, so the key never leaves it; or, with --send-config, the one built
 * from these variables, sent by `RpcClient.setModelConfigs`.
 */
import { parseArgs } from "node:util";
import { DialogAgent, Msg, RpcClient, init, type DistConf, type Remote } from "actorscope";

/** The model config every debater uses. */
export const CONFIG_NAME = "debate";

/** Who takes part, in speaking order. */
export const DEBATERS = [
  { name: "Pro", sysPrompt: "You are Pro. You argue FOR the topic. Answer the other side's points directly, in at most 80 words." },
  { name: "Con", sysPrompt: "You are Con. You argue AGAINST the topic. Answer the other side's points directly, in at most 80 words." },
  {
    name: "Judge",
    sysPrompt: "You are the Judge. After each round, say in at most 60 words who argued better so far and why. In the last round, name the winner.",
  },
] as const;

/** The model config for child mode, from the environment. */
export function configFromEnv(env: Record<string, string | undefined> = process.env) {
  return {
    config_name: CONFIG_NAME,
    model_type: "openai_chat",
    model_name: env.LLM_MODEL || "llama3.2",
    client_args: { base_url: env.LLM_BASE_URL || "http://localhost:11434/v1" },
    generate_args: { temperature: 0.7, max_tokens: 256 },
    ...(env.LLM_API_KEY ? { api_key: env.LLM_API_KEY } : {}),
  };
}

/**
 * Run the debate: every turn is printed as `[Name] text`, token by token as the speaker's
 * model streams it, and then shown to the other two.
 */
export async function debate(agents: Array<Remote<DialogAgent>>, topic: string, rounds: number): Promise<void> {
  const opening = new Msg({
    name: "Moderator",
    role: "user",
    content: `Topic: ${topic}. Pro argues for it, Con against it, and the Judge weighs in after each round. ${rounds} round(s).`,
  });
  console.log(`[Moderator] ${opening.content}`);
  await Promise.all(agents.map((a) => a.observe(opening)));
  for (let round = 1; round <= rounds; round++) {
    console.log(`\n--- round ${round} of ${rounds} ---`);
    for (const speaker of agents) {
      // replyStream() runs on the speaker's server, prompting its model with everything it
      // has seen; its chunks arrive here as the model produces them (and the whole reply
      // lands in the speaker's memory).
      const name = await speaker.name;
      process.stdout.write(`[${name}] `);
      let text = "";
      for await (const chunk of speaker.replyStream()) {
        process.stdout.write(chunk);
        text += chunk;
      }
      process.stdout.write("\n");
      const said = new Msg({ name, role: "assistant", content: text.trim() });
      await Promise.all(agents.filter((a) => a !== speaker).map((a) => a.observe(said)));
    }
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "2" },
      topic: { type: "string", default: "Remote work is better than working in an office" },
      host: { type: "string" },
      port: { type: "string" },
      token: { type: "string" },
      "send-config": { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) {
    console.error(`--rounds must be a positive integer, not ${values.rounds}`);
    process.exit(2);
  }
  let conf: DistConf = {};
  if (values.host || values.port) {
    conf = { host: values.host ?? "localhost", port: Number(values.port) };
    if (values.token) conf.token = values.token;
    if (values["send-config"]) {
      const client = new RpcClient(conf.host!, conf.port!, values.token ? { token: values.token } : {});
      try {
        await client.setModelConfigs([configFromEnv()]);
      } finally {
        client.close();
      }
    }
  } else {
    init({ modelConfigs: [configFromEnv()] });
  }

  // X.toDist(conf, ...args) creates each agent on its server without building it here.
  const agents = DEBATERS.map((d) => DialogAgent.toDist(conf, d.name, { sysPrompt: d.sysPrompt, modelConfigName: CONFIG_NAME }));
  let failed = false;
  try {
    const t0 = performance.now();
    await debate(agents, values.topic, rounds);
    console.log(`\ndebate finished in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    failed = true;
    console.error(`debate failed: ${(e as Error).message}`);
    if (!conf.host) console.error(`is an OpenAI-compatible server running at ${configFromEnv().client_args.base_url}? (set LLM_BASE_URL / LLM_MODEL)`);
  } finally {
    // Child servers are stopped; agents on an independent server are deleted from it.
    await Promise.all(agents.map((a) => a[Symbol.asyncDispose]()));
  }
  if (failed) process.exit(1);
}
