/**
 * The reports wing of endcall-agent: the durable outbox shared with Python's relays, Standard
 * Webhooks signing and delivery, and `ReportPipeline` (the `ReportSink` the agent uses).
 */

export type { DeliveryOutcome, Ending, ReportSink } from "./sink.js";
export { ReportPipeline, leaseFor, endingFields, type PipelineOptions } from "./pipeline.js";
export { Webhook, webhookFromEnv, keyId, DEFAULT_SCHEDULE, DEFAULT_JITTER, type WebhookInit } from "./webhook.js";
export { RetryPolicy, parseRetryAfter } from "./retry.js";
export { sign, signedHeaders } from "./signing.js";
export { OutboxError, SchemaTooNew } from "./errors.js";
export { openOutbox } from "./outbox/open.js";
export { SqlOutbox } from "./outbox/sql.js";
export { SqliteOutbox } from "./outbox/sqlite.js";
export { PostgresOutbox } from "./outbox/postgres.js";
export { checkOutbox, openChecked } from "./storage.js";
export { defaultOutboxPath, draftKey, makeOwner, type OutboxRecord } from "./outbox/base.js";
export { setReportLogger, type ReportLogger } from "./log.js";
