/**
 * An accepted end is durable before it is acknowledged: its reason, initiator, request id and
 * meta go to the session's draft row (`ReportSink.markEnding`) at once, and every ack of that
 * end waits for that write, at most `ACK_DURABLE_TIMEOUT_MS` (the browser waits 2.5 s for an
 * ack, the fallback server 3 s). Port of Python's `endcall.agent.durable_end`.
 */
import type { ReportSink } from "../reports/sink.js";
import type { EndRecord } from "./machine.js";
import { logger } from "./log.js";
import { withTimeout } from "./waits.js";

export const ACK_DURABLE_TIMEOUT_MS = 1_000;

export class DurableEnd {
  private task: Promise<boolean> | null = null;
  /** the write's outcome once known: later acks (repeated requests) need no timer */
  private outcome: boolean | null = null;

  constructor(readonly timeoutMs = ACK_DURABLE_TIMEOUT_MS) {}

  get pending(): Promise<boolean> | null {
    return this.task;
  }

  /** Start writing `record` to the sink's draft row (once). */
  begin(sink: ReportSink, record: EndRecord, minimalDraft: () => Uint8Array): void {
    if (this.task !== null || record.reason === null || record.initiator === null) return;
    const ending = {
      reason: record.reason,
      initiator: { kind: record.initiator.kind, identity: record.initiator.identity },
      request_id: record.requestId,
      meta: record.meta,
    };
    const started = Date.now();
    this.task = (async () => {
      try {
        const ok = Boolean(await sink.markEnding(record.endId, ending, minimalDraft()));
        if (!ok) logger.warn(`the accepted end of ${record.endId} is not in the outbox`);
        else if (Date.now() - started > this.timeoutMs) {
          logger.warn("recording the accepted end took longer than the ack waits");
        }
        this.outcome = ok;
        return ok;
      } catch (e) {
        logger.error(`could not record the accepted end: ${String(e)}`);
        this.outcome = false;
        return false;
      }
    })();
  }

  /** Wait (at most `timeoutMs`) for the write; true when durable. Never throws. */
  async wait(): Promise<boolean> {
    if (this.task === null) return false;
    if (this.outcome !== null) return this.outcome;
    const r = await withTimeout(this.task, this.timeoutMs);
    return r.done && r.ok && r.value;
  }
}
