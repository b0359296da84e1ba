/**
 * `openOutbox(target)`: a `postgres://`/`postgresql://` URL opens a `PostgresOutbox`, anything
 * else is a SQLite file path (default: `defaultOutboxPath()`, i.e. `$ENDCALL_OUTBOX`), as
 * Python's `open_outbox`.
 */

import { defaultOutboxPath } from "./base.js";
import { PostgresOutbox } from "./postgres.js";
import type { Clock, SqlOutbox } from "./sql.js";
import { SqliteOutbox } from "./sqlite.js";

export async function openOutbox(target?: string, o: { clock?: Clock } = {}): Promise<SqlOutbox> {
  const s = target ?? defaultOutboxPath();
  if (s.startsWith("postgres://") || s.startsWith("postgresql://")) return PostgresOutbox.open(s, o);
  if (s.startsWith("postgres:") || s.startsWith("postgresql:")) {
    throw new Error(
      `${JSON.stringify(s.split("@").pop())} looks like a PostgreSQL URL with its '//' lost: give` +
        " the outbox as postgresql://user@host/db",
    );
  }
  return SqliteOutbox.open(s, o);
}
