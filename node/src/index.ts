/**
 * endcall-agent: loss-free end of a LiveKit voice-agent call for `@livekit/agents` (Node).
 *
 * `EndCall` gives a Node agent what `endcall.EndCall` gives a Python one: one end state machine
 * behind every way a call ends (RPC, data, the fallback server, the LLM's end tool, timers,
 * the customer leaving, the room or the worker going), an ack before the drain, the `endcall.*`
 * attributes, and the `session.ended` report handed to a `ReportSink` (crash drafts, store,
 * deliver). Wire `EndCall.onSessionEnd` into `defineAgent({ entry, onSessionEnd })`.
 *
 * @packageDocumentation
 */

// ------------------------------------------------------------------ the agent wing
export { EndCall, draftScope, type EndCallOptions } from "./agent/end_call.js";
export type { Allow } from "./agent/decisions.js";
export type { EndRecord, EndState, Channel, Initiator } from "./agent/machine.js";
export { EndMachine } from "./agent/machine.js";
export { END_CALL_NAME, END_CALL_DESCRIPTION } from "./agent/end_tool.js";
export type { GoodbyeOption } from "./agent/goodbye.js";
export { EndCallMisuseError } from "./agent/misuse.js";
export {
  jobConfig,
  JobConfigError,
  ReportMeta,
  dispatchMetadata,
  urlAllowed,
  parseNamedSecrets,
  leastTrusted,
  CLAIM_KEY,
  CLAIM_AUDIENCE,
  DISPATCH_KEY_ENV,
  URL_ALLOW_ENV,
  SECRETS_ENV,
  type JobConfig,
  type JobConfigOptions,
  type SecretResolver,
  type DispatchMetadataOptions,
} from "./agent/job_config.js";
export { MAX_REPORT_SIZE } from "./agent/report.js";
export type { JobContextLike, SessionLike, RoomLike } from "./agent/surface.js";

// ------------------------------------------------------------------ the reports wing
// (ReportPipeline, Webhook, webhookFromEnv, the outboxes; and the seam: ReportSink,
// DeliveryOutcome, Ending) — its own public list, src/reports/index.ts
export { ReportPipeline } from "./reports/pipeline.js";
export * from "./reports/index.js";
