/**
 * Non-blocking writer of the agent's `endcall.*` participant attributes (protocol.md §5).
 * `update({...})` returns at once: updates are merged and written in order by one background
 * loop, so a slow or failing `setAttributes` never blocks or breaks the end path. A write that
 * gets no answer within `timeoutMs` is tried again (`attempts` in all, merged under newer
 * values; writing the same values twice is harmless): rtc-node's `setAttributes` waits for the
 * server's answer to its request id, and on livekit-server that answer is now and then never
 * seen (while the agents SDK writes `lk.agent.state` at the same moment), so the write hung for
 * its whole bound and its values were dropped. Without permission (or once the room is gone)
 * it logs once and goes on. Port of Python's `endcall.agent.attributes`.
 */
import { logger } from "./log.js";
import { sleep, withTimeout } from "./waits.js";

/** Bound of one `setAttributes` call, and how many calls a batch gets when they time out. */
export const ATTRIBUTE_ATTEMPT_MS = 2_000;
export const ATTRIBUTE_ATTEMPTS = 3;

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
    private readonly timeoutMs = ATTRIBUTE_ATTEMPT_MS,
    private readonly attempts = ATTRIBUTE_ATTEMPTS,
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
    let tries = 0;
    while (!this.closed && Object.keys(this.pending).length) {
      const batch = this.pending;
      this.pending = {};
      if (Object.entries(batch).every(([k, v]) => this.writtenValues[k] === v)) continue;
      try {
        const r = await withTimeout(Promise.resolve().then(() => this.target.setAttributes(batch)), this.timeoutMs);
        if (!r.done) {
          tries += 1;
          if (tries < this.attempts && !this.closed) {
            this.pending = { ...batch, ...this.pending }; // again, newer values first
            continue;
          }
          throw new Error(`timed out after ${this.timeoutMs} ms, ${tries} times`);
        }
        tries = 0;
        if (!r.ok) throw r.error;
        Object.assign(this.writtenValues, batch);
      } catch (e) {
        tries = 0;
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
