/**
 * Makes attempts for outbox rows and records each outcome (Python's `delivery.Sender`): the
 * row's own `delivery` settings (schedule, jitter, timeout, key ids) win over the sender's;
 * a row is signed only with the secrets whose key ids it names (none of ours: deferred, not
 * sent); after the last scheduled attempt fails the report is dead. Outbox errors while
 * recording are logged and swallowed (the worst case is one more duplicate, same id and body).
 */

import { describe } from "./errors.js";
import { attempt, nodePost, type AttemptResult, type Post } from "./http.js";
import { log } from "./log.js";
import type { OutboxRecord } from "./outbox/base.js";
import type { SqlOutbox } from "./outbox/sql.js";
import { RetryPolicy } from "./retry.js";
import { MAX_TIMEOUT, keyId } from "./webhook.js";

/** how long a row this sender cannot sign waits before it is offered again (seconds) */
export const MISSING_KEY_DEFER = 300;

/** Time in Unix seconds and a sleep (seconds); tests inject their own. */
export interface Clock {
  time(): number;
  sleep(seconds: number): Promise<void>;
}

export const systemClock: Clock = {
  time: () => Date.now() / 1000,
  sleep: (s) => new Promise((r) => setTimeout(r, Math.max(0, s) * 1000)),
};

export type DeadCallback = (rec: OutboxRecord) => void;

export interface SenderOptions {
  owner: string;
  policy?: RetryPolicy;
  /** seconds */
  timeout?: number;
  post?: Post;
  clock?: Clock;
  onDelivered?: (id: string, status: number) => Promise<void>;
  onDead?: DeadCallback;
}

export class Sender {
  outbox: SqlOutbox | null;
  readonly secrets: readonly string[];
  readonly owner: string;
  readonly policy: RetryPolicy;
  readonly timeout: number;
  readonly clock: Clock;
  private readonly keys: Map<string, string>;
  private readonly post: Post;
  private readonly onDelivered: SenderOptions["onDelivered"];
  private readonly onDead: DeadCallback | undefined;

  constructor(outbox: SqlOutbox | null, secrets: readonly string[], o: SenderOptions) {
    if (!secrets.length) throw new Error("at least one webhook secret is required to sign reports");
    this.outbox = outbox;
    this.secrets = [...secrets];
    this.keys = new Map(this.secrets.map((s) => [keyId(s), s]));
    this.owner = o.owner;
    this.policy = o.policy ?? new RetryPolicy();
    this.timeout = o.timeout ?? 15;
    this.clock = o.clock ?? systemClock;
    this.post = o.post ?? nodePost;
    this.onDelivered = o.onDelivered;
    this.onDead = o.onDead;
  }

  /** One attempt for `rec`; the result and the next attempt time (null when delivered or
   * dead). `keepLease`: keep owning the row that long; `record: false`: write nothing. */
  async send(
    rec: OutboxRecord,
    o: { keepLease?: number | null; timeout?: number; record?: boolean } = {},
  ): Promise<[AttemptResult, number | null]> {
    const record = o.record ?? true;
    const secrets = this.secretsFor(rec);
    if (!secrets.length) return this.missingKey(rec, record);
    const [policy, rowTimeout] = this.settings(rec);
    const timeout = o.timeout ?? rowTimeout;
    let res = await attempt(this.post, rec.url, rec.endId, rec.body, secrets, {
      timeout,
      headers: rec.headers,
      now: this.clock.time(),
    });
    let nxt: number | null = null;
    if (res.outcome === "retry") {
      nxt = policy.nextAttemptAt(rec.attempts + 1, this.clock.time(), res.retryAfter);
      if (nxt === null) res = { ...res, outcome: "dead", error: `retries exhausted; last: ${res.error}`, retryAfter: null };
    }
    if (record && this.outbox) {
      try {
        await this.record(rec, res, nxt, o.keepLease ?? null);
      } catch (e) {
        log.error(`endcall: could not record attempt for ${rec.endId}: ${describe(e)}`);
      }
    }
    if (res.outcome === "dead") this.dead(rec, res);
    const line = `endcall report ${rec.endId} attempt ${rec.attempts + 1}: ${res.outcome} (${res.error ?? res.status})`;
    if (res.outcome === "delivered") log.debug(line);
    else log.warn(line);
    return [res, nxt];
  }

  /** The secrets to sign `rec` with: those whose key ids it names (all of ours if none). */
  secretsFor(rec: OutboxRecord): string[] {
    const keys = rec.delivery?.keys;
    if (!Array.isArray(keys) || !keys.length) return [...this.secrets];
    return keys.flatMap((k) => {
      const s = typeof k === "string" ? this.keys.get(k) : undefined;
      return s ? [s] : [];
    });
  }

  /** The retry policy and request timeout for `rec`: the row's own, else ours. */
  settings(rec: OutboxRecord): [RetryPolicy, number] {
    const d = rec.delivery ?? {};
    let policy = this.policy;
    let timeout = this.timeout;
    const { schedule, jitter, timeout: t } = d;
    if (Array.isArray(schedule) && schedule.length && schedule.every((x) => typeof x === "number" && x >= 0 && x < Infinity)) {
      const j = typeof jitter === "number" && jitter >= 0 && jitter < 1 ? jitter : policy.jitter;
      policy = new RetryPolicy(schedule, j, policy.maxRetryAfter, policy.random);
    }
    if (typeof t === "number" && t > 0 && t <= MAX_TIMEOUT) timeout = t;
    return [policy, timeout];
  }

  private async missingKey(rec: OutboxRecord, record: boolean): Promise<[AttemptResult, number | null]> {
    const keys = (Array.isArray(rec.delivery?.keys) ? rec.delivery.keys : []).join(", ");
    const error =
      `no secret for key id ${keys}: this sender's secrets (${[...this.keys.keys()].join(", ")}) are` +
      " not the ones the agent signs with; give it the agent's ENDCALL_WEBHOOK_SECRET" +
      " (and ENDCALL_WEBHOOK_SECRETS)";
    log.error(`endcall: cannot sign report ${rec.endId}: ${error}`);
    const until = this.clock.time() + MISSING_KEY_DEFER;
    if (record && this.outbox) {
      try {
        await this.outbox.defer(rec.endId, this.owner, { until, error });
      } catch (e) {
        log.error(`endcall: could not defer ${rec.endId}: ${describe(e)}`);
      }
    }
    return [{ outcome: "retry", status: null, error, retryAfter: null, elapsed: 0 }, until];
  }

  private dead(rec: OutboxRecord, res: AttemptResult): void {
    log.error(
      `endcall: report ${rec.endId} is dead after ${rec.attempts + 1} attempts (last error:` +
        ` ${res.error ?? res.status}); replay it with \`endcall outbox replay ${rec.endId}\` or` +
        " `endcall outbox replay --dead`",
    );
    if (this.onDead) {
      try {
        this.onDead(rec);
      } catch (e) {
        log.error(`endcall: the onDead callback failed for ${rec.endId}: ${describe(e)}`);
      }
    }
  }

  private async record(rec: OutboxRecord, res: AttemptResult, nxt: number | null, keepLease: number | null): Promise<void> {
    const ob = this.outbox!;
    if (res.outcome === "delivered") {
      if (this.onDelivered) await this.onDelivered(rec.endId, res.status ?? 200);
      else await ob.markDelivered(rec.endId, this.owner, res.status ?? 200);
      return;
    }
    await ob.markFailed(rec.endId, this.owner, {
      dead: res.outcome === "dead",
      nextAttemptAt: nxt ?? this.clock.time(),
      statusCode: res.status,
      error: res.error ?? "",
      keepLease,
    });
  }
}
