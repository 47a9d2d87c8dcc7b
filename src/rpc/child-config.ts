/** Environment variable carrying the child's JSON config (removed by the child on start). */
export const CHILD_CONFIG_ENV = "AS_CHILD_CONFIG";

/** What a parent tells a child server at spawn (JSON in `AS_CHILD_CONFIG`). */
export interface ChildConfig {
  /** Server id the parent gave the child. */
  id: string;
  /** Token of the child's loopback listener, if it is ever asked to open one. */
  key: string;
  /** Modules to import before serving (the module defining the class). */
  modules?: string[];
  capacity: number;
  maxQueue: number;
  maxPoolSize: number;
  maxExpireTime: number;
  maxTimeoutSeconds: number;
  maxMessageBytes?: number;
  /** The parent's model configs, inherited by the child. */
  modelConfigs?: unknown;
}

/** Read the config from the environment and remove it, so processes the child spawns do not inherit it. */
export function takeChildConfig(): string | undefined {
  const json = process.env[CHILD_CONFIG_ENV];
  delete process.env[CHILD_CONFIG_ENV];
  return json;
}
