/**
 * The agent-side report path (Python's `endcall.reports.pipeline.ReportPipeline`), the durable
 * `ReportSink`: checkpoint crash drafts (leased, renewed by heartbeats), make an accepted end
 * durable at once, commit the final report before any send (it replaces the draft: the final
 * always wins), and deliver it for a bounded in-process window; what is left stays in the
 * outbox, unleased, for Python's relays (`endcall outbox deliver`, `endcall serve`,
 * `endcall.prewarm`).
 *
 * Nothing here throws into the session except `check`. If the outbox cannot be used (read-only
 * path, disk full, database down) the final report is kept in memory, delivered from there,
 * and storing it is tried again in the background and at `close`; only a report neither stored
 * nor delivered is logged whole (one JSON line starting with `{"endcall_unsaved_report":`).
 */

import { OutboxError, describe } from "./errors.js";
import type { Post } from "./http.js";
import { Heartbeats } from "./heartbeats.js";
import { log } from "./log.js";
import { MemoryReport, OwedWrites, logUnsaved } from "./memory.js";
import { makeOwner, type OutboxRecord } from "./outbox/base.js";
import type { SqlOutbox } from "./outbox/sql.js";
import { SqliteOutbox } from "./outbox/sqlite.js";
import { RetryPolicy } from "./retry.js";
import { Sender, systemClock, type Clock, type DeadCallback } from "./sender.js";
import type { DeliveryOutcome, Ending, ReportSink } from "./sink.js";
import { checkOutbox, openChecked } from "./storage.js";
import type { Webhook } from "./webhook.js";

/** lease kept on a draft / a report being delivered (seconds) */
export const DEFAULT_LEASE = 90;
/** a lease always covers one request timeout plus this much */
export const LEASE_MARGIN = 60;
/** an outbox that did not open is tried again after this long, doubling up to the max */
export const REOPEN_FIRST = 1;
export const REOPEN_MAX = 30;
/** `close` waits this long for an outbox that still owes writes */
export const SETTLE_AT_CLOSE = 10;

/** The lease to hold for requests of `timeout` s: at least `timeout` + margin (≥ 1 s). */
export function leaseFor(timeout: number, lease = DEFAULT_LEASE, margin = LEASE_MARGIN): number {
  return Math.max(lease, timeout + Math.max(1, margin));
}

/** One attempt's timeout with `left` seconds of the in-process window left (≥ 1 s). */
export function attemptTimeout(timeout: number, left: number): number {
  return Math.max(Math.min(timeout, 1), Math.min(timeout, left));
}

/** The accepted end as the outbox row's `ending` (what Python's `protocol.with_ending` reads). */
export function endingFields(e: Ending): Record<string, unknown> {
  return {
    ended_reason: e.reason,
    initiator: e.initiator ? { kind: e.initiator.kind, identity: e.initiator.identity } : null,
    request_id: e.request_id,
    meta: e.meta,
    channel: e.channel ?? null,
    requested_at: e.requested_at == null ? null : Math.round(e.requested_at * 1000) / 1000,
  };
}

export interface PipelineOptions {
  /** an open outbox (not closed by the pipeline), or where to open one (default:
   * `$ENDCALL_OUTBOX`, else the user data dir) — a SQLite path or a `postgresql://` DSN */
  outbox?: SqlOutbox | string;
  /** names this process for leases (default `"<hostname>:<pid>:<random>"`) */
  owner?: string;
  /** seconds; raised to cover one request timeout plus `leaseMargin` */
  lease?: number;
  leaseMargin?: number;
  clock?: Clock;
  /** the HTTP layer (tests) */
  post?: Post;
  policy?: RetryPolicy;
  /** called when a report goes dead (also logged) */
  onDead?: DeadCallback;
  /** seconds `close` waits for owed writes */
  settleAtClose?: number;
  /** seconds between draft renewals */
  heartbeat?: number;
}

type Loaded = OutboxRecord | MemoryReport;

export class ReportPipeline implements ReportSink {
  readonly webhook: Webhook;
  readonly owner: string;
  readonly lease: number;
  readonly clock: Clock;
  settleAtClose: number;
  private ob: SqlOutbox | null;
  private readonly target: string | undefined;
  private readonly ownOutbox: boolean;
  private reopenAt: number | null = null;
  private reopenDelay = REOPEN_FIRST;
  private opening: Promise<SqlOutbox | null> | null = null;
  private readonly scopes = new Map<string, string>();
  private readonly heartbeats: Heartbeats;
  private readonly owed: OwedWrites;
  private readonly memory: Map<string, MemoryReport>;
  private readonly fresh = new Map<string, OutboxRecord>();
  /** until when (performance.now() ms) we surely hold a row's lease */
  private readonly leaseUntil = new Map<string, number>();
  private readonly headers: Record<string, string>;
  private readonly delivery: OutboxRecord["delivery"];
  private readonly sender: Sender;
  private closed = false;
  private exitHook: (() => void) | null = null;

  constructor(webhook: Webhook, o: PipelineOptions = {}) {
    this.webhook = webhook;
    this.owner = o.owner ?? makeOwner();
    this.lease = leaseFor(webhook.timeout, o.lease ?? DEFAULT_LEASE, o.leaseMargin ?? LEASE_MARGIN);
    this.clock = o.clock ?? systemClock;
    this.settleAtClose = o.settleAtClose ?? SETTLE_AT_CLOSE;
    this.ob = typeof o.outbox === "object" ? o.outbox : null;
    this.target = typeof o.outbox === "string" ? o.outbox : undefined;
    this.ownOutbox = typeof o.outbox !== "object";
    this.heartbeats = new Heartbeats(() => this.outbox(), this.owner, this.lease, o.heartbeat);
    this.owed = new OwedWrites((m) => this.storeAgain(m, true), (m) => this.recordDelivered(m));
    this.memory = this.owed.reports;
    this.headers = { ...webhook.headers };
    this.delivery = webhook.delivery();
    this.sender = new Sender(this.ob, webhook.secrets, {
      owner: this.owner,
      policy: o.policy ?? new RetryPolicy(webhook.schedule, webhook.jitter),
      timeout: webhook.timeout,
      post: o.post,
      clock: this.clock,
      onDelivered: (id, status) => this.markDelivered(id, status),
      onDead: o.onDead,
    });
  }

  /** The outbox reports are stored in (null until opened, or while it fails). */
  get currentOutbox(): SqlOutbox | null {
    return this.ob;
  }

  async check(): Promise<void> {
    if (this.ob) {
      await checkOutbox(this.ob);
      return;
    }
    let ob: SqlOutbox;
    try {
      ob = await openChecked(this.target);
    } catch (e) {
      this.reopenAt = performance.now() + this.reopenDelay * 1000;
      this.reopenDelay = Math.min(this.reopenDelay * 2, REOPEN_MAX);
      throw e;
    }
    if (this.ob) {
      await ob.close(); // opened concurrently: keep the first
      return;
    }
    this.ob = ob;
    this.sender.outbox = ob;
    this.reopenAt = null;
    this.reopenDelay = REOPEN_FIRST;
  }

  /** The outbox, opened on first use; an outbox that failed to open is tried again once its
   * backoff is over (a database that starts after the worker). */
  private async outbox(): Promise<SqlOutbox | null> {
    if (this.ob || this.closed) return this.ob;
    if (this.reopenAt !== null && performance.now() < this.reopenAt) return null;
    if (!this.opening) {
      const failedBefore = this.reopenAt !== null;
      this.opening = this.check()
        .then(() => {
          if (failedBefore) log.info("endcall: the outbox opens now");
          return this.ob;
        })
        .catch((e: unknown) => {
          if (!failedBefore) log.error(`endcall: ${describe(e)} (trying again in the background)`);
          return null;
        })
        .finally(() => {
          this.opening = null;
        });
    }
    return this.opening;
  }

  scope(endId: string, scope: string | null): void {
    if (scope) this.scopes.set(endId, scope);
  }

  private draftOptions(endId: string) {
    return {
      owner: this.owner,
      lease: this.lease,
      headers: this.headers,
      delivery: this.delivery,
      scope: this.scopes.get(endId) ?? null,
    };
  }

  async saveDraft(endId: string, body: Uint8Array): Promise<void> {
    try {
      const ob = await this.outbox();
      if (!ob) return;
      if (await ob.saveDraft(endId, this.webhook.url, body, this.draftOptions(endId))) this.beat(endId);
    } catch (e) {
      log.warn(`endcall: could not save the draft of ${endId}: ${describe(e)}`);
    }
  }

  async markEnding(endId: string, ending: Ending, draftBody: Uint8Array): Promise<boolean> {
    try {
      const ob = await this.outbox();
      if (!ob) return false;
      const marked = await ob.markEnding(endId, endingFields(ending), this.webhook.url, draftBody, this.draftOptions(endId));
      if (marked) this.beat(endId);
      return marked;
    } catch (e) {
      log.error(`endcall: could not record the accepted end of ${endId}: ${describe(e)}`);
      return false;
    }
  }

  /** One attempt at committing the final report; throws what the outbox throws. */
  private async storeNow(endId: string, body: Uint8Array): Promise<void> {
    const ob = await this.outbox();
    if (!ob) throw new OutboxError("outbox unavailable");
    const started = performance.now();
    const res = await ob.store(endId, this.webhook.url, body, {
      owner: this.owner,
      lease: this.lease,
      headers: this.headers,
      delivery: this.delivery,
    });
    if (res === "stored") {
      this.leaseUntil.set(endId, started + this.lease * 1000);
      const now = this.clock.time();
      this.fresh.set(endId, {
        endId,
        status: "pending",
        isDraft: false,
        url: this.webhook.url,
        headers: this.headers,
        body,
        attempts: 0,
        nextAttemptAt: now,
        lastError: null,
        lastStatus: null,
        leaseOwner: this.owner,
        leaseExpiresAt: now + this.lease,
        createdAt: now,
        updatedAt: now,
        deliveredAt: null,
        delivery: this.delivery,
        ending: null,
        scope: null,
      });
    } else {
      log.info(`endcall: report ${endId} was already stored; kept as is`);
    }
  }

  async store(endId: string, body: Uint8Array): Promise<boolean> {
    let error: string;
    try {
      await this.storeNow(endId, body);
      this.heartbeats.stop(endId); // the final report replaced the draft
      return true;
    } catch (e) {
      error = describe(e);
    }
    try {
      this.memory.set(endId, new MemoryReport(endId, this.webhook.url, body, this.clock.time()));
      log.error(
        `endcall: report ${endId} could not be stored (${error}); kept in memory, stored as soon as` +
          " the outbox works again, and delivered from memory meanwhile (logged whole only if both fail)",
      );
      this.owed.kick();
    } catch {
      /* never into the session */
    }
    return false;
  }

  /** Retry committing a report kept in memory; true once it is in the outbox. */
  private async storeAgain(mem: MemoryReport, quiet = false): Promise<boolean> {
    try {
      await this.storeNow(mem.endId, mem.body);
    } catch (e) {
      if (!quiet) log.warn(`endcall: the outbox still fails for ${mem.endId}: ${describe(e)}`);
      return false;
    }
    this.memory.delete(mem.endId);
    this.heartbeats.stop(mem.endId);
    log.info(`endcall: report ${mem.endId} is stored after all`);
    return true;
  }

  private async markDelivered(endId: string, status: number): Promise<void> {
    if (this.ob) await this.ob.markDelivered(endId, this.owner, status);
  }

  /** After a delivery from memory: write the report to the outbox as delivered, replacing
   * its crash draft in the same transaction (no relay sends the draft later). */
  private async recordDelivered(mem: MemoryReport): Promise<boolean> {
    try {
      const ob = await this.outbox();
      if (!ob) throw new OutboxError("outbox unavailable");
      await ob.writeMany([[mem.endId, this.webhook.url, mem.body]], [[mem.endId, mem.lastStatus ?? 200]], {
        owner: this.owner,
        lease: this.lease,
        headers: this.headers,
        delivery: this.delivery,
      });
    } catch (e) {
      if (!mem.settleFailed) log.warn(`endcall: could not record ${mem.endId} as delivered yet: ${describe(e)}`);
      mem.settleFailed = true;
      return false;
    }
    this.heartbeats.stop(mem.endId);
    return true;
  }

  private async load(endId: string): Promise<Loaded | null> {
    const mem = this.memory.get(endId);
    if (mem) return mem;
    return this.ob ? this.ob.get(endId) : null;
  }

  async deliver(endId: string, options: { withinMs?: number } = {}): Promise<DeliveryOutcome> {
    try {
      return await this.deliverLoop(endId, options.withinMs);
    } catch (e) {
      log.error(`endcall: delivering ${endId} failed: ${describe(e)}`);
      const mem = this.memory.get(endId);
      return {
        delivered: false,
        stored: mem ? mem.stored : this.ob !== null,
        dead: false,
        attempts: mem?.attempts ?? 0,
        lastStatus: mem?.lastStatus ?? null,
        lastError: describe(e),
      };
    }
  }

  private async deliverLoop(endId: string, withinMs?: number): Promise<DeliveryOutcome> {
    const window = withinMs === undefined ? this.webhook.inProcessWindow : withinMs / 1000;
    const deadline = this.clock.time() + window;
    let attempts = 0;
    let known: OutboxRecord | undefined = this.fresh.get(endId);
    this.fresh.delete(endId);
    const out = (rec: Loaded | null, delivered: boolean, dead: boolean, total: number, status: number | null, error: string | null): DeliveryOutcome => ({
      delivered,
      stored: rec === null ? false : rec instanceof MemoryReport ? rec.stored || rec.settled : true,
      dead,
      attempts: total,
      lastStatus: status,
      lastError: error,
    });
    for (;;) {
      let rec: Loaded | null;
      try {
        rec = known ?? (await this.load(endId));
        known = undefined;
      } catch (e) {
        log.error(`endcall: outbox read failed for ${endId}: ${describe(e)}`);
        return { delivered: false, stored: true, dead: false, attempts, lastStatus: null, lastError: `outbox: ${describe(e)}` };
      }
      if (!rec) return out(null, false, false, 0, null, "unknown end_id (not stored)");
      if (rec instanceof MemoryReport && rec.status === "pending" && attempts) {
        if (await this.storeAgain(rec)) continue;
      }
      const total = rec.attempts;
      const { status, lastStatus, lastError } = rec;
      if (status === "delivered") return out(rec, true, false, total, lastStatus, null);
      if (status === "dead") {
        logUnsaved(rec);
        return out(rec, false, true, total, lastStatus, lastError);
      }
      const now = this.clock.time();
      if (rec.nextAttemptAt > deadline || now >= deadline) {
        await this.release(endId);
        logUnsaved(rec);
        return out(rec, false, false, total, lastStatus, lastError);
      }
      if (rec.nextAttemptAt > now) await this.clock.sleep(rec.nextAttemptAt - now);
      const timeout = attemptTimeout(this.webhook.timeout, deadline - this.clock.time());
      if (rec instanceof MemoryReport) {
        const [res, nxt] = await this.sender.send(rec.record(this.headers, this.delivery), { timeout, record: false });
        rec.attempts += 1;
        rec.lastStatus = res.status;
        rec.lastError = res.error;
        attempts += 1;
        if (res.outcome === "delivered") {
          rec.status = "delivered";
          if (!this.memory.has(endId)) {
            // stored meanwhile (the background retry): mark it delivered there
            try {
              await this.markDelivered(endId, res.status ?? 200);
            } catch (e) {
              log.warn(`endcall: could not mark ${endId} delivered: ${describe(e)}`);
            }
            return { delivered: true, stored: true, dead: false, attempts: rec.attempts, lastStatus: res.status, lastError: null };
          }
          rec.settled = await this.recordDelivered(rec);
          if (!rec.settled) this.owed.kick();
        } else if (res.outcome === "dead") {
          rec.status = "dead";
        } else {
          rec.nextAttemptAt = nxt ?? now;
        }
        continue;
      }
      const ob = this.ob!;
      let fresh: OutboxRecord | null;
      try {
        const leaseLeft = ((this.leaseUntil.get(endId) ?? 0) - performance.now()) / 1000;
        if (rec.leaseOwner === this.owner && leaseLeft > this.webhook.timeout + 10) {
          fresh = rec; // our lease, long enough for this attempt
        } else {
          const started = performance.now();
          fresh = await ob.renew(endId, this.owner, this.lease);
          if (fresh) this.leaseUntil.set(endId, started + this.lease * 1000);
        }
        if (!fresh) {
          const again = await ob.get(endId);
          if (again && (again.status === "delivered" || again.status === "dead")) continue;
          return out(rec, false, false, total, lastStatus, "another sender holds the lease");
        }
      } catch (e) {
        log.error(`endcall: outbox failed for ${endId}, keeping it in memory: ${describe(e)}`);
        const mem = new MemoryReport(endId, rec.url, rec.body, this.clock.time());
        mem.attempts = rec.attempts;
        mem.stored = true; // the outbox has it: a relay delivers it if we do not
        this.memory.set(endId, mem);
        continue;
      }
      const [res] = await this.sender.send(fresh, { keepLease: this.lease, timeout });
      attempts += 1;
      if (res.outcome === "delivered") return out(fresh, true, false, fresh.attempts + 1, res.status, null);
      if (res.outcome === "dead") return out(fresh, false, true, fresh.attempts + 1, res.status, res.error);
    }
  }

  private async release(endId: string): Promise<void> {
    if (!this.ob || this.memory.has(endId)) return;
    try {
      await this.ob.release(endId, this.owner);
    } catch (e) {
      log.warn(`endcall: could not release ${endId}: ${describe(e)}`);
    }
  }

  /** Beat `endId`'s draft, and hand every draft still beating over to the relays if the
   * process exits without closing the pipeline (`process.exit`, an uncaught error, the SDK
   * ending an orphaned job process): on SQLite, synchronously in the `exit` event. */
  private beat(endId: string): void {
    this.heartbeats.start(endId);
    if (this.exitHook !== null || this.closed) return;
    this.exitHook = () => {
      const ob = this.ob;
      if (ob instanceof SqliteOutbox) {
        const n = ob.handOverDraftsAtExit(this.heartbeats.held(), this.owner);
        if (n > 0) log.warn(`endcall: the process exits: ${n} crash draft(s) handed over to the relays`);
      }
    };
    process.on("exit", this.exitHook);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.exitHook !== null) process.off("exit", this.exitHook);
    try {
      await this.owed.close(this.settleAtClose);
      await this.heartbeats.close();
      for (const mem of this.memory.values()) {
        if (mem.status === "pending" && !mem.stored) logUnsaved(mem, `undelivered at close (${mem.lastError})`);
      }
    } catch (e) {
      log.error(`endcall: closing the report pipeline: ${describe(e)}`);
    } finally {
      this.closed = true;
      if (this.ownOutbox && this.ob) await this.ob.close().catch(() => undefined);
    }
  }
}
