export { Msg, type MsgInit, type Role } from "./agent/message.ts";
export { Memory } from "./agent/memory.ts";
export { AgentBase, type AgentOptions } from "./agent/agent-base.ts";
export { dist, asyncFunc, syncFunc, streamFunc } from "./core/decorators.ts";
export { RemoteStream } from "./client/remote-stream.ts";
export { Distributable, type DistConf } from "./client/distributable.ts";
export { ServerGroup, type ServerGroupOptions, type GroupServer, type GroupServerStatus, type PlacementStrategy } from "./client/placement.ts";
export { restartInfo, type RestartPolicy, type RestartInfo } from "./client/supervisor.ts";
export { AsyncResult } from "./client/async-result.ts";
export { callback, type Callback, type CallbackHandle, type Stubbed } from "./client/callback.ts";
export { withOptions } from "./client/proxy.ts";
export { type Remote, type RemoteHandle, type Pipelined, type CallOptions } from "./client/proxy-state.ts";
export { RetryFixedTimes, RetryExponential, type RetryStrategy, type RetryFixedTimesOptions, type RetryExponentialOptions } from "./client/retry.ts";
export {
  errors,
  AgentServerError,
  AgentServerNotAliveError,
  AgentCreationError,
  AgentCallError,
  NotFoundError,
  UnimplementedError,
  ResourceExhaustedError,
  DeadlineExceededError,
  UnauthenticatedError,
  CancelledError,
  CodecError,
  PermissionDeniedError,
  type ErrorCode,
  type RemoteErrorInfo,
} from "./core/errors.ts";
export { DEFAULT_LIMITS, type Limits } from "./core/limits.ts";
export { configureLimits } from "./client/refs.ts";
export { configureChildren, type ChildrenOptions } from "./client/warm-pool.ts";
export type { AgentInfo, ServerInfo, ClassInfo } from "./core/protocol.ts";
export { currentCall, type CallContext } from "./core/call-context.ts";
export { init, type InitOptions } from "./models/init.ts";
export type { ModelConfig } from "./models/store.ts";
export { DialogAgent, type DialogAgentOptions } from "./agent/dialog-agent.ts";
export { applyModelConfigs, loadModelConfigs, type ApplyModelConfigsOptions } from "./models/init.ts";
export { loadModel, registerModelType, modelTypes, type ModelFactory } from "./models/load.ts";
export { ChatModel } from "./models/chat-model.ts";
export { OpenAIChatModel } from "./models/openai-chat.ts";
export { PostAPIChatModel } from "./models/post-api-chat.ts";
export { ModelError, ModelConfigError, ModelHttpError } from "./models/errors.ts";
export { redact, redactConfig } from "./models/redact.ts";
export { formatMessages } from "./models/format.ts";
export type { ChatMessage, ModelResponse, ModelCallOptions, ModelInfo } from "./models/types.ts";
export { RpcAgentServerLauncher, type LauncherOptions } from "./server/launcher/launcher.ts";
export { loadCustomClassFromFile, loadAgentsFromDir } from "./server/class-loader.ts";
export { RpcClient, type RpcClientOptions } from "./client/rpc-client.ts";
export { connect, type ConnectTarget } from "./client/connect.ts";
export { listServers, type ServerRecord } from "./client/registry.ts";
export type { ClientTlsOption, PemSource } from "./core/tls.ts";
