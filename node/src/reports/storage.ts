/**
 * Refusing an outbox that cannot be written (Python's `storage.check_outbox`/`open_checked`):
 * an outbox that cannot be opened or written is an `OutboxError` when the agent starts — naming
 * the outbox (never a password), the cause, and what to do — not drafts silently skipped later.
 */

import { OutboxError, describe } from "./errors.js";
import { defaultOutboxPath } from "./outbox/base.js";
import { openOutbox } from "./outbox/open.js";
import type { Clock, SqlOutbox } from "./outbox/sql.js";
import { redact } from "./redact.js";

const WHAT_TO_DO =
  "Point ENDCALL_OUTBOX (or the pipeline's outbox option) at a writable volume or a PostgreSQL database";

/** Throw `OutboxError` unless `outbox` can be written (a row written and removed). */
export async function checkOutbox(outbox: SqlOutbox): Promise<void> {
  try {
    await outbox.probe();
  } catch (e) {
    throw new OutboxError(
      `the endcall outbox ${outbox.describe()} cannot be written (${redact(describe(e))}); without` +
        ` it a report lost in flight cannot be retried. ${WHAT_TO_DO}`,
      { cause: e },
    );
  }
}

/** `openOutbox` + `checkOutbox`; every failure is an `OutboxError` naming the outbox. */
export async function openChecked(target?: string, o: { clock?: Clock } = {}): Promise<SqlOutbox> {
  const where = target ?? defaultOutboxPath();
  const shown = where.includes("://") ? (where.split("@").pop() ?? "") : where;
  let outbox: SqlOutbox;
  try {
    outbox = await openOutbox(where, o);
  } catch (e) {
    throw new OutboxError(`cannot open the endcall outbox ${shown} (${redact(describe(e))}). ${WHAT_TO_DO}`, { cause: e });
  }
  try {
    await checkOutbox(outbox);
  } catch (e) {
    await outbox.close().catch(() => undefined);
    throw e;
  }
  return outbox;
}
