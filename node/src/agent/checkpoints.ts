/**
 * `Checkpoints`: crash drafts of the report. While the call runs, a `complete: false` draft is
 * saved through `ReportSink.saveDraft` every `checkpointInterval` (at most 30 s) and soon after
 * every conversation item or annotation (at most one per `DRAFT_MIN_INTERVAL_MS` in a burst);
 * a process that dies then still delivers the call so far. `stop` ends them before the final
 * report is stored. Port of Python's `endcall.agent.checkpoints`.
 */
import type { ReportSink } from "../reports/sink.js";
import type { Annotations } from "./annotations.js";
import type { Call } from "./call.js";
import { logger } from "./log.js";
import { draftDocument, encodeDocument } from "./report.js";
import { sleep, withTimeout } from "./waits.js";

export const CHECKPOINT_INTERVAL_MS = 30_000;
export const DRAFT_MIN_INTERVAL_MS = 2_000;
const STOP_TIMEOUT_MS = 5_000;

export class Checkpoints {
  readonly intervalMs: number;
  private timer: ReturnType<typeof setInterval> | null = null;
  private running: Promise<void> | null = null;
  private dirty = false;
  private stopped = false;

  constructor(
    private readonly call: Call,
    private readonly sink: ReportSink,
    private readonly annotations: Annotations,
    intervalMs = CHECKPOINT_INTERVAL_MS,
  ) {
    this.intervalMs = Math.max(1_000, Math.min(intervalMs, CHECKPOINT_INTERVAL_MS));
  }

  /** A draft now, then every interval. */
  start(): void {
    if (this.stopped || this.timer !== null) return;
    this.schedule();
    this.timer = setInterval(() => this.schedule(), this.intervalMs);
    this.timer.unref?.();
  }

  /** A draft soon (the call changed). */
  schedule(): void {
    if (this.stopped || !this.call.started) return;
    if (this.running !== null) {
      this.dirty = true;
      return;
    }
    this.running = this.save().finally(() => {
      this.running = null;
    });
  }

  /** No more drafts; waits (bounded) for one being written. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.running !== null) {
      const r = await withTimeout(this.running, STOP_TIMEOUT_MS);
      if (!r.done) logger.warn("a draft checkpoint was still running at the end");
    }
  }

  /** A draft without the session's history: the body of a row written in a hurry. */
  minimalDraft(): Uint8Array {
    const call = this.call;
    return encodeDocument(
      draftDocument({
        endId: call.endId,
        ctx: call.ctx,
        session: null,
        roomName: call.roomName(),
        startedAt: call.startedAt,
        annotations: this.annotations.snapshot(),
        annotationsSource: this.annotations.source,
        section: {},
      }),
    );
  }

  /** The current draft's body. */
  draft(): Uint8Array {
    const call = this.call;
    return encodeDocument(
      draftDocument({
        endId: call.endId,
        ctx: call.ctx,
        session: call.session,
        roomName: call.roomName(),
        startedAt: call.startedAt,
        annotations: this.annotations.snapshot(),
        annotationsSource: this.annotations.source,
      }),
    );
  }

  private async save(): Promise<void> {
    while (!this.stopped) {
      this.dirty = false;
      try {
        await this.sink.saveDraft(this.call.endId, this.draft());
      } catch (e) {
        logger.error("could not checkpoint the draft", e);
      }
      if (!this.dirty) return;
      await sleep(DRAFT_MIN_INTERVAL_MS); // a burst of turns: one draft per interval
    }
  }
}
