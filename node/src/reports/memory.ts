/**
 * Reports kept in memory because the outbox refused them (Python's `memory`): a `MemoryReport`
 * is delivered from memory meanwhile, and `OwedWrites` keeps trying in the background what the
 * outbox owes it — committing it, or once delivered from memory, recording it as delivered
 * (which replaces the crash draft) — every `RETRY_FIRST` s doubling to `RETRY_MAX`, and for a
 * while at close. A report neither stored nor delivered is logged whole, once
 * (`unsavedReportLine`), so it can be recovered from the logs.
 */

import { createHash } from "node:crypto";
import { log } from "./log.js";
import type { OutboxRecord } from "./outbox/base.js";

/** a logged body is cut here (the rest named by its size and SHA-256) */
export const MAX_LOGGED_BODY = 1024 * 1024;
export const RETRY_FIRST = 0.25;
export const RETRY_MAX = 5;

/** The one-line JSON log record of a report the outbox could not keep. */
export function unsavedReportLine(endId: string, url: string, body: Uint8Array, error: string): string {
  const doc: Record<string, unknown> = { end_id: endId, url, error };
  let b = body;
  if (b.byteLength > MAX_LOGGED_BODY) {
    doc.truncated = true;
    doc.size = b.byteLength;
    doc.sha256 = createHash("sha256").update(b).digest("hex");
    b = b.subarray(0, MAX_LOGGED_BODY);
  }
  try {
    doc.body = new TextDecoder("utf-8", { fatal: true }).decode(b);
  } catch {
    doc.body_b64 = Buffer.from(b).toString("base64");
  }
  return JSON.stringify({ endcall_unsaved_report: doc });
}

export class MemoryReport {
  attempts = 0;
  status: "pending" | "delivered" | "dead" = "pending";
  lastStatus: number | null = null;
  lastError: string | null = null;
  nextAttemptAt: number;
  /** the outbox holds it (it failed later): never logged whole */
  stored = false;
  /** delivered from memory, and written to the outbox as delivered since */
  settled = false;
  settleFailed = false;
  logged = false;

  constructor(
    readonly endId: string,
    readonly url: string,
    readonly body: Uint8Array,
    readonly createdAt: number,
  ) {
    this.nextAttemptAt = createdAt;
  }

  record(headers: Record<string, string>, delivery: OutboxRecord["delivery"]): OutboxRecord {
    return {
      endId: this.endId,
      status: "pending",
      isDraft: false,
      url: this.url,
      headers,
      body: this.body,
      attempts: this.attempts,
      nextAttemptAt: this.nextAttemptAt,
      lastError: this.lastError,
      lastStatus: this.lastStatus,
      leaseOwner: null,
      leaseExpiresAt: null,
      createdAt: this.createdAt,
      updatedAt: this.createdAt,
      deliveredAt: null,
      delivery,
      ending: null,
      scope: null,
    };
  }
}

/** Log a report that is neither stored nor delivered, whole, once. */
export function logUnsaved(rec: OutboxRecord | MemoryReport, why?: string): void {
  if (!(rec instanceof MemoryReport) || rec.stored || rec.logged || rec.status === "delivered") return;
  rec.logged = true;
  const error = why ?? `not stored and not delivered (${rec.lastError ?? rec.status})`;
  log.error(unsavedReportLine(rec.endId, rec.url, rec.body, error));
}

export class OwedWrites {
  readonly reports = new Map<string, MemoryReport>();
  private task: Promise<void> | null = null;
  private closing = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly store: (m: MemoryReport) => Promise<boolean>,
    private readonly settle: (m: MemoryReport) => Promise<boolean>,
  ) {}

  owed(): MemoryReport[] {
    return [...this.reports.values()].filter(
      (m) => (m.status === "pending" && !m.stored) || (m.status === "delivered" && !m.settled),
    );
  }

  async tryOnce(): Promise<void> {
    for (const m of this.owed()) {
      if (m.status === "pending") await this.store(m);
      else if (await this.settle(m)) m.settled = true;
    }
  }

  /** Keep trying in the background until nothing is owed. */
  kick(): void {
    if (this.task || this.closing) return;
    this.task = (async () => {
      let delay = RETRY_FIRST;
      while (!this.closing && this.owed().length) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, delay * 1000);
          t.unref();
          this.wake = () => {
            clearTimeout(t);
            r();
          };
        });
        this.wake = null;
        if (this.closing) break;
        await this.tryOnce();
        delay = Math.min(delay * 2, RETRY_MAX);
      }
    })().finally(() => {
      this.task = null;
    });
  }

  /** Stop the background retries, then keep trying for up to `within` seconds. */
  async close(within: number): Promise<void> {
    this.closing = true;
    this.wake?.();
    await this.task;
    const deadline = performance.now() + within * 1000;
    let delay = RETRY_FIRST;
    for (;;) {
      await this.tryOnce();
      const left = deadline - performance.now();
      if (!this.owed().length || left <= 0) return;
      await new Promise((r) => setTimeout(r, Math.min(delay * 1000, left)));
      delay = Math.min(delay * 2, RETRY_MAX);
    }
  }
}
