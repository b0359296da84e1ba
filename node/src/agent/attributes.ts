/**
 * Non-blocking writer of the agent's `endcall.*` participant attributes (protocol.md §5).
 * `update({...})` returns at once: updates are merged and written in order by one background
 * loop, so a slow or failing `setAttributes` never blocks or breaks the end path. Without
 * permission (or once the room is gone) it logs once and goes on. Port of Python's
 * `endcall.agent.attributes`.
 */
import { logger } from "./log.js";
import { sleep, withTimeout } from "./waits.js";

export interface AttributeTarget {
  setAttributes(attributes: Record<string, string>): Promise<void>;
}

export class AttributeWriter {
  private pending: Record<string, string> = {};
  private readonly writtenValues: Record<string, string> = {};
  private running: Promise<void> | null = null;
  private warned = false;
  private closed = false;
  private gate: { until: number; promise: Promise<unknown> } | null = null;

  constructor(
    private readonly target: AttributeTarget,
    private readonly timeoutMs = 5_000,
  ) {}

  /** Attributes known to have been written (tests, diagnostics). */
  get written(): Readonly<Record<string, string>> {
    return { ...this.writtenValues };
  }

  /** Queue attributes; returns at once and never throws. `coalesceMs` > 0 lets the write wait
   * that long for more updates to merge with (repeated requests' `endcall.request_id`). */
  update(attributes: Record<string, string>, coalesceMs = 0): void {
    if (this.closed) return;
    Object.assign(this.pending, attributes);
    if (this.running === null) {
      this.running = this.flush(coalesceMs).finally(() => {
        this.running = null;
        // an update that raced the loop's end
        if (Object.keys(this.pending).length && !this.closed) this.update({});
      });
    }
  }

  /** Write nothing until `gate` settles (at most `timeoutMs` from now): the attributes that
   * acknowledge an end wait for it to be durable. */
  holdUntil(gate: Promise<unknown>, timeoutMs: number): void {
    this.gate = { promise: gate, until: Date.now() + timeoutMs };
  }

  /** Wait until every queued update has been tried; false on timeout. */
  async waitIdle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.running !== null) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      const r = await withTimeout(this.running, left);
      if (!r.done) return false;
    }
    return true;
  }

  /** Stop writing (pending updates are dropped). */
  close(): void {
    this.closed = true;
    this.pending = {};
  }

  private async flush(delayMs: number): Promise<void> {
    if (delayMs > 0) await sleep(delayMs);
    const gate = this.gate;
    if (gate !== null) {
      const left = gate.until - Date.now();
      if (left > 0) await withTimeout(gate.promise, left);
    }
    while (!this.closed && Object.keys(this.pending).length) {
      const batch = this.pending;
      this.pending = {};
      if (Object.entries(batch).every(([k, v]) => this.writtenValues[k] === v)) continue;
      try {
        const r = await withTimeout(Promise.resolve().then(() => this.target.setAttributes(batch)), this.timeoutMs);
        if (!r.done) throw new Error(`timed out after ${this.timeoutMs} ms`);
        if (!r.ok) throw r.error;
        Object.assign(this.writtenValues, batch);
      } catch (e) {
        if (!this.warned) {
          this.warned = true;
          logger.warn(
            `cannot set participant attributes ${Object.keys(batch).sort().join(", ")} (${String(e)}); ` +
              "the end path goes on without them (further failures are not logged)",
          );
        }
      }
    }
  }
}
