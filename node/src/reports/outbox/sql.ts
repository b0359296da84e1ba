/**
 * `SqlOutbox`: the dialect-neutral outbox (SQLite and PostgreSQL subclass it) — the same queries
 * as Python's `SessionWrites`/`DeliveryLeases`/`SqlCore`, for what an agent process needs: crash
 * drafts under a lease (with scope), the accepted end, final reports (which replace the draft:
 * the final always wins), leases for in-process delivery, the attempt log, and the write probe.
 * Every write is durable when its promise resolves; leases are measured on the database's clock.
 */

import { randomBytes } from "node:crypto";
import { jsonText } from "../json.js";
import {
  ATTEMPTS_TABLE,
  TABLE,
  draftKey,
  type DeliverySettings,
  type OutboxRecord,
  type StoreResult,
} from "./base.js";
import { COLUMNS, MIGRATED_INDEXES, MIGRATIONS, NO_FINAL, SCHEMA, rowRecord } from "./schema.js";
import type { Params, Tx } from "./tx.js";
import { ensureSchema, type Component, type Step } from "./versions.js";

/** Seconds since the epoch; stands in for the database's clock in tests. */
export type Clock = () => number;

/** What a draft / final row is sent with (stored with the row, so relays send it alike). */
export interface RowSettings {
  headers?: Record<string, string>;
  delivery?: DeliverySettings;
}

export interface DraftOptions extends RowSettings {
  owner: string;
  /** seconds */
  lease: number;
  scope?: string | null;
}

/** numbers Python keeps as floats in a row's `delivery` JSON */
const DELIVERY_FLOATS = ["schedule", "jitter", "timeout"];

export function deliveryText(d: DeliverySettings | undefined): string {
  return jsonText(d ?? {}, DELIVERY_FLOATS);
}

function chunks<T>(xs: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}

export abstract class SqlOutbox {
  /** appended to the claim's SELECT (PostgreSQL: `FOR UPDATE SKIP LOCKED`) */
  protected claimLock = "";
  /** run first in a schema transaction (PostgreSQL: an advisory lock) */
  protected schemaLockSql = "";
  protected blobType = "BLOB";
  protected readonly injectedClock: Clock | undefined;

  constructor(clock?: Clock) {
    this.injectedClock = clock;
  }

  /** Run `fn` in one transaction (serialised with every other on this outbox). */
  abstract transaction<T>(write: boolean, fn: (tx: Tx) => Promise<T>): Promise<T>;
  abstract close(): Promise<void>;
  /** The outbox's name for messages (never a password). */
  abstract describe(): string;
  protected abstract columns(tx: Tx): Promise<Set<string>>;

  /** The database's clock (PostgreSQL's server clock, the SQLite host's). */
  protected async now(_tx: Tx): Promise<number> {
    return this.injectedClock ? this.injectedClock() : Date.now() / 1000;
  }

  /** Create or migrate the outbox's tables (once, however many processes open it). */
  protected async openSchema(): Promise<void> {
    const create: Step = async (tx) => {
      for (const stmt of SCHEMA.replace("{blob}", this.blobType).split(";")) {
        if (stmt.trim()) await tx.run(stmt);
      }
    };
    const addColumn =
      (name: string, decl: string): Step =>
      async (tx) => {
        if (!(await this.columns(tx)).has(name)) await tx.run(`ALTER TABLE ${TABLE} ADD COLUMN ${name} ${decl}`);
        const index = MIGRATED_INDEXES[name];
        if (index) await tx.run(index);
      };
    const outbox: Component = {
      name: "outbox",
      create,
      migrations: MIGRATIONS.map(([n, d]) => addColumn(n, d)),
    };
    await this.transaction(true, async (tx) => {
      if (this.schemaLockSql) await tx.run(this.schemaLockSql);
      await ensureSchema(tx, outbox);
    });
  }

  private async getIn(tx: Tx, key: string): Promise<OutboxRecord | null> {
    const rows = await tx.run(`SELECT ${COLUMNS} FROM ${TABLE} WHERE end_id = :id`, { id: key });
    return rows.length ? rowRecord(rows[0]!) : null;
  }

  /** The row with this key (a final report's end_id, or `draftKey(end_id)` for a draft). */
  get(key: string): Promise<OutboxRecord | null> {
    return this.transaction(false, (tx) => this.getIn(tx, key));
  }

  /** Write a row and remove it in one transaction: throws when the outbox cannot be written. */
  async probe(): Promise<void> {
    const key = "endcall-probe-" + randomBytes(6).toString("hex");
    await this.transaction(true, async (tx) => {
      const now = await this.now(tx);
      await tx.run(
        `INSERT INTO ${TABLE} (end_id, status, url, body, next_attempt_at, created_at,` +
          " updated_at) VALUES (:k, 'dead', '', :b, :now, :now, :now)",
        { k: key, b: new Uint8Array(), now },
      );
      await tx.run(`DELETE FROM ${TABLE} WHERE end_id = :k`, { k: key });
    });
  }

  // -- the agent's writes ------------------------------------------------------------------

  private async upsertDraft(tx: Tx, endId: string, p: Params, bodySql: string, endingSql: string): Promise<boolean> {
    if ((await this.getIn(tx, endId)) !== null) return false; // the final report exists
    const rows = await tx.run(
      `INSERT INTO ${TABLE} (end_id, status, is_draft, url, headers, body, attempts,` +
        " next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at, delivery," +
        " ending, scope) VALUES (:key, 'draft', 1, :url, :h, :b, 0, :now, :o, :exp, :now," +
        " :now, :d, :ending, :scope)" +
        ` ON CONFLICT (end_id) DO UPDATE SET url = :url, headers = :h, ${bodySql}` +
        " lease_owner = :o, lease_expires_at = :exp, updated_at = :now, delivery = :d," +
        ` scope = COALESCE(:scope, ${TABLE}.scope)` +
        `${endingSql} WHERE ${TABLE}.status = 'draft' RETURNING end_id`,
      { key: draftKey(endId), ...p },
    );
    return rows.length > 0;
  }

  private async draftParams(tx: Tx, url: string, body: Uint8Array, o: DraftOptions): Promise<Params> {
    const now = await this.now(tx);
    return {
      scope: o.scope ?? null,
      url,
      h: jsonText(o.headers),
      b: body,
      now,
      o: o.owner,
      exp: now + o.lease,
      d: deliveryText(o.delivery),
      ending: null,
    };
  }

  /** Insert or refresh the session's crash draft and renew its lease; false (nothing written)
   * if a final report is stored or a relay took the draft over. */
  saveDraft(endId: string, url: string, body: Uint8Array, o: DraftOptions): Promise<boolean> {
    return this.transaction(true, async (tx) => {
      const p = await this.draftParams(tx, url, body, o);
      return this.upsertDraft(tx, endId, p, "body = :b,", "");
    });
  }

  /** Record an accepted end on the session's draft (creating it with `body` if there is none
   * yet) and renew its lease; false if the draft can no longer change. `ending` is the row's
   * JSON as Python writes it (`ended_reason`, `initiator`, `request_id`, `meta`...). */
  markEnding(endId: string, ending: Record<string, unknown>, url: string, body: Uint8Array, o: DraftOptions): Promise<boolean> {
    return this.transaction(true, async (tx) => {
      const p = await this.draftParams(tx, url, body, o);
      p.ending = jsonText(ending);
      return this.upsertDraft(tx, endId, p, "", ", ending = :ending");
    });
  }

  /** The running session's heartbeat: extend the lease on its crash draft (still ours, still a
   * draft); false when it was taken over or is gone. */
  renewDraft(endId: string, owner: string, lease: number): Promise<boolean> {
    return this.transaction(true, async (tx) => {
      const now = await this.now(tx);
      const rows = await tx.run(
        `UPDATE ${TABLE} SET lease_expires_at = :exp, updated_at = :now` +
          " WHERE end_id = :key AND status = 'draft' AND lease_owner = :o RETURNING end_id",
        { key: draftKey(endId), o: owner, exp: now + lease, now },
      );
      return rows.length > 0;
    });
  }

  /** Delete the session's draft unless a relay took it; true if it was deleted. */
  discardDraft(endId: string): Promise<boolean> {
    return this.transaction(true, async (tx) => {
      const rows = await tx.run(
        `DELETE FROM ${TABLE} WHERE end_id = :key AND status = 'draft' RETURNING end_id`,
        { key: draftKey(endId) },
      );
      return rows.length > 0;
    });
  }

  /** Commit the final report, leased to `owner`, and drop the session's draft unless a relay
   * already took it. "exists": a final report with this end_id was already stored (kept). */
  async store(endId: string, url: string, body: Uint8Array, o: { owner: string; lease: number } & RowSettings): Promise<StoreResult> {
    const [res] = await this.writeMany([[endId, url, body]], [], o);
    return res!;
  }

  /** Final reports to store and deliveries to mark, in one transaction (Python's
   * `write_many`); the store results. */
  writeMany(
    stores: ReadonlyArray<readonly [string, string, Uint8Array]>,
    delivered: ReadonlyArray<readonly [string, number]>,
    o: { owner: string; lease: number } & RowSettings,
  ): Promise<StoreResult[]> {
    const h = jsonText(o.headers);
    const d = deliveryText(o.delivery);
    return this.transaction(true, async (tx) => {
      const now = await this.now(tx);
      let out: StoreResult[] = [];
      if (stores.length) out = await this.storeRows(tx, stores, h, d, o.owner, now, now + o.lease);
      const byCode = new Map<number, string[]>();
      for (const [id, code] of delivered) byCode.set(code, [...(byCode.get(code) ?? []), id]);
      for (const [code, ids] of byCode) {
        for (const part of chunks(ids, 200)) {
          const params: Params = { s: code, now };
          part.forEach((id, j) => (params[`i${j}`] = id));
          const list = part.map((_, j) => `:i${j}`).join(", ");
          const rows = await tx.run(
            `UPDATE ${TABLE} SET status = 'delivered', attempts = attempts + 1,` +
              " last_status = :s, last_error = NULL, lease_owner = NULL," +
              " lease_expires_at = NULL, delivered_at = :now, updated_at = :now" +
              ` WHERE end_id IN (${list}) AND status <> 'delivered'` +
              " RETURNING end_id, attempts",
            params,
          );
          await this.logAttempts(tx, rows, now, "delivered", code, null);
        }
      }
      return out;
    });
  }

  private async storeRows(
    tx: Tx,
    items: ReadonlyArray<readonly [string, string, Uint8Array]>,
    h: string,
    d: string,
    owner: string,
    now: number,
    exp: number,
  ): Promise<StoreResult[]> {
    const first = new Map<string, number>();
    items.forEach(([id], i) => {
      if (!first.has(id)) first.set(id, i);
    });
    const stored = new Set<string>();
    for (const part of chunks([...first.values()], 100)) {
      const params: Params = { h, d, now, o: owner, exp };
      const drafts: Params = {};
      const values: string[] = [];
      part.forEach((i, j) => {
        const [id, url, body] = items[i]!;
        params[`i${j}`] = id;
        params[`u${j}`] = url;
        params[`b${j}`] = body;
        drafts[`k${j}`] = draftKey(id);
        values.push(`(:i${j}, 'pending', 0, :u${j}, :h, :b${j}, 0, :now, :o, :exp, :now, :now, :d)`);
      });
      const rows = await tx.run(
        `INSERT INTO ${TABLE} (end_id, status, is_draft, url, headers, body, attempts,` +
          " next_attempt_at, lease_owner, lease_expires_at, created_at, updated_at," +
          ` delivery) VALUES ${values.join(", ")}` +
          " ON CONFLICT (end_id) DO NOTHING RETURNING end_id",
        params,
      );
      for (const r of rows) stored.add(String(r[0]));
      await tx.run(
        `DELETE FROM ${TABLE} WHERE status = 'draft'` +
          ` AND end_id IN (${Object.keys(drafts).map((k) => ":" + k).join(", ")})`,
        drafts,
      );
    }
    return items.map(([id], i) => (stored.has(id) && first.get(id) === i ? "stored" : "exists"));
  }

  markDelivered(endId: string, owner: string, statusCode: number): Promise<void> {
    return this.writeMany([], [[endId, statusCode]], { owner, lease: 0 }).then(() => undefined);
  }

  // -- the senders' side --------------------------------------------------------------------

  /** Take/extend the lease for an attempt (status `delivering`) if free, ours or expired;
   * the updated row, or null (someone else holds it, or it is not sendable). */
  renew(endId: string, owner: string, lease: number): Promise<OutboxRecord | null> {
    return this.transaction(true, async (tx) => {
      const now = await this.now(tx);
      const rows = await tx.run(
        `UPDATE ${TABLE} SET status = 'delivering', lease_owner = :o,` +
          " lease_expires_at = :exp, updated_at = :now" +
          " WHERE end_id = :id AND status IN ('pending', 'delivering')" +
          " AND (lease_owner IS NULL OR lease_owner = :o OR lease_expires_at <= :now)" +
          `${NO_FINAL} RETURNING ${COLUMNS}`,
        { id: endId, o: owner, exp: now + lease, now },
      );
      return rows.length ? rowRecord(rows[0]!) : null;
    });
  }

  /** Lease up to `limit` due rows (pending, stale delivering, abandoned drafts). */
  claim(owner: string, o: { limit: number; lease: number }): Promise<OutboxRecord[]> {
    return this.transaction(true, async (tx) => {
      const now = await this.now(tx);
      const rows = await tx.run(
        `SELECT end_id FROM ${TABLE}` +
          " WHERE status IN ('draft', 'pending', 'delivering')" +
          " AND next_attempt_at <= :now" +
          " AND (lease_owner IS NULL OR lease_expires_at <= :now)" +
          `${NO_FINAL} ORDER BY next_attempt_at LIMIT :lim` +
          this.claimLock,
        { now, lim: o.limit },
      );
      const out: OutboxRecord[] = [];
      for (const [id] of rows) {
        const upd = await tx.run(
          `UPDATE ${TABLE} SET status = 'delivering', lease_owner = :o,` +
            " lease_expires_at = :exp, updated_at = :now WHERE end_id = :id" +
            ` RETURNING ${COLUMNS}`,
          { o: owner, exp: now + o.lease, now, id },
        );
        out.push(...upd.map(rowRecord));
      }
      return out;
    });
  }

  /** Record a failed attempt; false if another owner holds the lease (nothing written). */
  markFailed(
    endId: string,
    owner: string,
    o: { dead: boolean; nextAttemptAt: number; statusCode: number | null; error: string; keepLease?: number | null },
  ): Promise<boolean> {
    const keep = o.keepLease !== undefined && o.keepLease !== null;
    const error = o.error.slice(0, 2000);
    return this.transaction(true, async (tx) => {
      const now = await this.now(tx);
      const rows = await tx.run(
        `UPDATE ${TABLE} SET status = :st, attempts = attempts + 1,` +
          " last_status = :s, last_error = :e, next_attempt_at = :nxt," +
          " lease_owner = :lo, lease_expires_at = :le, updated_at = :now" +
          " WHERE end_id = :id AND status IN ('pending', 'delivering')" +
          " AND (lease_owner IS NULL OR lease_owner = :o) RETURNING end_id, attempts",
        {
          id: endId,
          st: o.dead ? "dead" : "pending",
          s: o.statusCode,
          e: error,
          nxt: o.nextAttemptAt,
          lo: keep && !o.dead ? owner : null,
          le: keep && !o.dead ? now + (o.keepLease as number) : null,
          now,
          o: owner,
        },
      );
      await this.logAttempts(tx, rows, now, o.dead ? "dead" : "failed", o.statusCode, error);
      return rows.length > 0;
    });
  }

  /** Give a leased row back without an attempt: pending again at `until`, attempts unchanged. */
  defer(endId: string, owner: string, o: { until: number; error: string }): Promise<boolean> {
    return this.transaction(true, async (tx) => {
      const now = await this.now(tx);
      const rows = await tx.run(
        `UPDATE ${TABLE} SET status = 'pending', last_error = :e, next_attempt_at = :nxt,` +
          " lease_owner = NULL, lease_expires_at = NULL, updated_at = :now" +
          " WHERE end_id = :id AND status IN ('pending', 'delivering')" +
          " AND (lease_owner IS NULL OR lease_owner = :o) RETURNING end_id",
        { id: endId, o: owner, e: o.error.slice(0, 2000), nxt: o.until, now },
      );
      return rows.length > 0;
    });
  }

  /** Drop our lease so relays may take the row when it is due. */
  release(endId: string, owner: string): Promise<void> {
    return this.transaction(true, async (tx) => {
      const now = await this.now(tx);
      await tx.run(
        `UPDATE ${TABLE} SET lease_owner = NULL, lease_expires_at = NULL,` +
          " status = CASE WHEN status = 'delivering' THEN 'pending' ELSE status END," +
          " updated_at = :now WHERE end_id = :id AND lease_owner = :o" +
          " AND status <> 'draft'",
        { id: endId, o: owner, now },
      );
    });
  }

  /** Every recorded delivery attempt of one row, oldest first. */
  attempts(
    key: string,
  ): Promise<Array<{ attempt: number; at: number; outcome: string; statusCode: number | null; error: string | null }>> {
    return this.transaction(false, async (tx) => {
      const rows = await tx.run(
        `SELECT attempt, at, outcome, status_code, error FROM ${ATTEMPTS_TABLE}` +
          " WHERE end_id = :id ORDER BY at, attempt",
        { id: key },
      );
      return rows.map((r) => ({
        attempt: Number(r[0]),
        at: Number(r[1]),
        outcome: String(r[2]),
        statusCode: r[3] == null ? null : Number(r[3]),
        error: r[4] == null ? null : String(r[4]),
      }));
    });
  }

  private async logAttempts(
    tx: Tx,
    rows: unknown[][],
    now: number,
    outcome: string,
    code: number | null,
    error: string | null,
  ): Promise<void> {
    if (!rows.length) return;
    const params: Params = { now, o: outcome, s: code, e: error };
    const values: string[] = [];
    rows.forEach(([key, n], j) => {
      params[`k${j}`] = key;
      params[`n${j}`] = Number(n);
      values.push(`(:k${j}, :n${j}, :now, :o, :s, :e)`);
    });
    await tx.run(
      `INSERT INTO ${ATTEMPTS_TABLE} (end_id, attempt, at, outcome, status_code, error)` +
        ` VALUES ${values.join(", ")}`,
      params,
    );
  }
}
