/**
 * The seam between the agent wing and the reports wing: what `EndCall` asks of the report path.
 * It deals only in `end_id` (the report's `webhook-id` without the draft suffix) and the body (the
 * serialized `session.ended` document, byte-identical on every attempt) — nothing of rooms.
 * `ReportPipeline` (./pipeline.ts) is the durable implementation; `MemorySink` (test doubles) keeps
 * everything in memory. Mirrors Python's `endcall.reports.pipeline.ReportPipeline`.
 */

export interface DeliveryOutcome {
  /** a 2xx from the receiver */
  delivered: boolean;
  /** the report is committed in the outbox (a relay delivers it if we did not) */
  stored: boolean;
  /** the receiver refused it for good (410 Gone, as Python's sender: other 4xx are retried) or
   * the schedule ended */
  dead: boolean;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
}

/** The end as recorded at once when it is accepted (a crash from then on reports this reason). */
export interface Ending {
  reason: string;
  initiator: { kind: string; identity: string | null };
  request_id: string | null;
  meta: Record<string, unknown> | null;
  /** how the end was asked for (e.g. "rpc", "data", "http"); optional, as Python's row has it */
  channel?: string | null;
  /** when it was asked for, Unix seconds; optional */
  requested_at?: number | null;
}

export interface ReportSink {
  /** Open the outbox now; throws `OutboxError` (naming the outbox, the cause, what to do) when it
   * cannot be written. Called at start: an unwritable outbox is an error at start. */
  check(): Promise<void>;
  /** Name what the session's crash draft belongs to ("<room sid>/<agent identity>"), so a relay
   * may take it over early once LiveKit says the agent left. */
  scope(endId: string, scope: string | null): void;
  /** Checkpoint the crash draft (`complete: false`) and keep its lease renewed (heartbeats). */
  saveDraft(endId: string, body: Uint8Array): Promise<void>;
  /** Make an accepted end durable at once (its reason goes into the draft row). */
  markEnding(endId: string, ending: Ending, draftBody: Uint8Array): Promise<boolean>;
  /** Commit the final report before any send; true when durable. Never throws: on failure the
   * report is kept in memory, delivered from there and stored again later. */
  store(endId: string, body: Uint8Array): Promise<boolean>;
  /** Deliver per the retry schedule for at most `withinMs` (default: the in-process window).
   * Never throws. What is left stays in the outbox for relays. */
  deliver(endId: string, options?: { withinMs?: number }): Promise<DeliveryOutcome>;
  /** Stop heartbeats, wait (bounded) for owed writes, close what this pipeline opened. */
  close(): Promise<void>;
}
