/**
 * The outbox contract shared with Python (`endcall.reports.outbox.base`): one durable row per
 * report, keyed by its `webhook-id` (a final report by its `end_id`, its crash draft by
 * `<end_id>.draft`), moving `draft` → `pending` ⇄ `delivering` → `delivered` | `dead`. Holds the
 * row type, the names (tables, env var), the owner id and the default location.
 */

import { randomBytes } from "node:crypto";
import { homedir, hostname } from "node:os";
import { join } from "node:path";

export type Status = "draft" | "pending" | "delivering" | "delivered" | "dead";
export const STATUSES: readonly Status[] = ["draft", "pending", "delivering", "delivered", "dead"];
export type StoreResult = "stored" | "exists";
export const OUTBOX_ENV = "ENDCALL_OUTBOX";
export const TABLE = "endcall_outbox";
export const ATTEMPTS_TABLE = "endcall_outbox_attempts";
export const DRAFT_SUFFIX = ".draft";

/** How a row is to be delivered (`Webhook.delivery()`): never a secret. */
export interface DeliverySettings {
  schedule?: number[];
  jitter?: number;
  timeout?: number;
  keys?: string[];
  [key: string]: unknown;
}

/** One report in the outbox (Python's `OutboxRecord`); times are Unix seconds (float). */
export interface OutboxRecord {
  endId: string;
  status: Status;
  isDraft: boolean;
  url: string;
  headers: Record<string, string>;
  body: Uint8Array;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  lastStatus: number | null;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  createdAt: number;
  updatedAt: number;
  deliveredAt: number | null;
  delivery: DeliverySettings;
  ending: Record<string, unknown> | null;
  scope: string | null;
}

/** The row key (and `webhook-id`) of a session's crash draft: `<end_id>.draft`. */
export function draftKey(endId: string): string {
  return endId + DRAFT_SUFFIX;
}

/** The session's `end_id` of a row key (a draft key or a final report's). */
export function sessionOf(key: string): string {
  return key.endsWith(DRAFT_SUFFIX) ? key.slice(0, -DRAFT_SUFFIX.length) : key;
}

/** An owner id naming this host and process: `"<hostname>:<pid>:<8 hex digits>"`. */
export function makeOwner(token?: string): string {
  return `${hostname()}:${process.pid}:${token || randomBytes(4).toString("hex")}`;
}

/** platformdirs' `user_data_dir("endcall", appauthor=False)`, as Python finds it. */
function userDataDir(env: NodeJS.ProcessEnv): string {
  if (process.platform === "win32") {
    return join(env.LOCALAPPDATA || join(homedir(), "AppData", "Local"), "endcall");
  }
  if (process.platform === "darwin") return join(homedir(), "Library", "Application Support", "endcall");
  const xdg = env.XDG_DATA_HOME?.trim();
  return join(xdg ? xdg : join(homedir(), ".local", "share"), "endcall");
}

/** `$ENDCALL_OUTBOX` if set (a SQLite path or a `postgresql://` URL), else
 * `<user data dir>/endcall/outbox.sqlite3` — the same place Python's relays look. */
export function defaultOutboxPath(env: NodeJS.ProcessEnv = process.env): string {
  const given = env[OUTBOX_ENV];
  if (given) return given;
  return join(userDataDir(env), "outbox.sqlite3");
}
