/**
 * `MemorySink`: a `ReportSink` that keeps everything in memory — for tests of an agent that uses
 * `EndCall`, and for trying the kit without an outbox. It records every call (drafts,
 * `markEnding`, `store`, `deliver`) and can be told to fail or to be slow. Nothing is durable:
 * never use it in production.
 */
import type { DeliveryOutcome, Ending, ReportSink } from "../reports/sink.js";

export interface MemorySinkOptions {
  /** `store` returns this (true). */
  storeResult?: boolean;
  /** `deliver` reports delivered (true). */
  delivered?: boolean;
  /** `check` throws this error when set. */
  checkError?: Error | null;
  /** Milliseconds each `markEnding` / `store` / `deliver` takes (0). */
  delayMs?: number;
}

const decoder = new TextDecoder();

export class MemorySink implements ReportSink {
  readonly drafts: { endId: string; body: Uint8Array }[] = [];
  readonly endings: { endId: string; ending: Ending; draftBody: Uint8Array }[] = [];
  readonly stored: { endId: string; body: Uint8Array }[] = [];
  readonly deliveries: { endId: string; withinMs?: number | undefined }[] = [];
  readonly scopes: { endId: string; scope: string | null }[] = [];
  closed = false;
  checks = 0;

  constructor(readonly options: MemorySinkOptions = {}) {}

  private async delay(): Promise<void> {
    const ms = this.options.delayMs ?? 0;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  async check(): Promise<void> {
    this.checks += 1;
    if (this.options.checkError) throw this.options.checkError;
  }

  scope(endId: string, scope: string | null): void {
    this.scopes.push({ endId, scope });
  }

  async saveDraft(endId: string, body: Uint8Array): Promise<void> {
    this.drafts.push({ endId, body });
  }

  async markEnding(endId: string, ending: Ending, draftBody: Uint8Array): Promise<boolean> {
    await this.delay();
    this.endings.push({ endId, ending, draftBody });
    return true;
  }

  async store(endId: string, body: Uint8Array): Promise<boolean> {
    await this.delay();
    this.stored.push({ endId, body });
    return this.options.storeResult ?? true;
  }

  async deliver(endId: string, options?: { withinMs?: number }): Promise<DeliveryOutcome> {
    await this.delay();
    this.deliveries.push({ endId, withinMs: options?.withinMs });
    const delivered = this.options.delivered ?? true;
    return {
      delivered,
      stored: this.options.storeResult ?? true,
      dead: false,
      attempts: 1,
      lastStatus: delivered ? 200 : 503,
      lastError: delivered ? null : "503",
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** The last stored final report, parsed. */
  lastReport(): Record<string, unknown> | null {
    const last = this.stored[this.stored.length - 1];
    return last ? (JSON.parse(decoder.decode(last.body)) as Record<string, unknown>) : null;
  }

  /** The last crash draft, parsed. */
  lastDraft(): Record<string, unknown> | null {
    const last = this.drafts[this.drafts.length - 1];
    return last ? (JSON.parse(decoder.decode(last.body)) as Record<string, unknown>) : null;
  }
}
