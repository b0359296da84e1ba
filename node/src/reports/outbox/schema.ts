/**
 * The outbox's tables exactly as Python creates them (`endcall.reports.outbox.schema`): the same
 * DDL text (SQLite stores it verbatim in `sqlite_master`), the same migrations and indexes, the
 * `NO_FINAL` rule, and reading a row into an `OutboxRecord`. Keep byte-identical with Python.
 */

import { ATTEMPTS_TABLE, DRAFT_SUFFIX, TABLE, type OutboxRecord, type Status } from "./base.js";

export const COLUMNS =
  "end_id, status, is_draft, url, headers, body, attempts, next_attempt_at, last_error," +
  " last_status, lease_owner, lease_expires_at, created_at, updated_at, delivered_at," +
  " delivery, ending, scope";

/** Python's `SCHEMA` (with `{blob}` for the body's column type), split on `;` when run. */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS ${TABLE} (
    end_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    is_draft INTEGER NOT NULL DEFAULT 0,
    url TEXT NOT NULL,
    headers TEXT NOT NULL DEFAULT '{}',
    body {blob} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    last_status INTEGER,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION,
    delivery TEXT NOT NULL DEFAULT '{}',
    ending TEXT,
    scope TEXT
);
CREATE INDEX IF NOT EXISTS ${TABLE}_due ON ${TABLE} (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS ${ATTEMPTS_TABLE} (
    end_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS ${ATTEMPTS_TABLE}_key ON ${ATTEMPTS_TABLE} (end_id, attempt);
`;

/** columns added after the first release: `ALTER TABLE ... ADD COLUMN` on older tables */
export const MIGRATIONS: ReadonlyArray<readonly [string, string]> = [
  ["delivery", "TEXT NOT NULL DEFAULT '{}'"],
  ["ending", "TEXT"],
  ["scope", "TEXT"],
];
/** indexes of migrated columns (created by their step, on fresh tables too) */
export const MIGRATED_INDEXES: Readonly<Record<string, string>> = {
  scope: `CREATE INDEX IF NOT EXISTS ${TABLE}_scope ON ${TABLE} (scope)`,
};

/** a draft row whose session has a final report: never sent (any more) */
export const NO_FINAL =
  ` AND NOT (is_draft = 1 AND EXISTS (SELECT 1 FROM ${TABLE} f` +
  ` WHERE f.end_id = substr(${TABLE}.end_id, 1, length(${TABLE}.end_id) - ${DRAFT_SUFFIX.length})))`;

function num(v: unknown): number {
  return typeof v === "bigint" ? Number(v) : Number(v);
}

function bytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (typeof v === "string") return new TextEncoder().encode(v); // a TEXT body written by hand
  return new Uint8Array();
}

function parseJson(text: unknown): Record<string, unknown> {
  if (typeof text !== "string" || text === "") return {};
  const v: unknown = JSON.parse(text);
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/** A row of `SELECT ${COLUMNS}` as an `OutboxRecord`. */
export function rowRecord(r: readonly unknown[]): OutboxRecord {
  return {
    endId: String(r[0]),
    status: String(r[1]) as Status,
    isDraft: Boolean(num(r[2])),
    url: String(r[3]),
    headers: parseJson(r[4]) as Record<string, string>,
    body: bytes(r[5]),
    attempts: num(r[6]),
    nextAttemptAt: num(r[7]),
    lastError: r[8] == null ? null : String(r[8]),
    lastStatus: r[9] == null ? null : num(r[9]),
    leaseOwner: r[10] == null ? null : String(r[10]),
    leaseExpiresAt: r[11] == null ? null : num(r[11]),
    createdAt: num(r[12]),
    updatedAt: num(r[13]),
    deliveredAt: r[14] == null ? null : num(r[14]),
    delivery: parseJson(r[15]),
    ending: r[16] == null ? null : parseJson(r[16]),
    scope: r[17] == null ? null : String(r[17]),
  };
}
