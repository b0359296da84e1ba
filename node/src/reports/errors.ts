/**
 * The errors the reports wing raises: `OutboxError` (the outbox cannot be opened or written; the
 * message names it and says what to do) and `SchemaTooNew` (the database was set up by a newer
 * endcall). Mirrors Python's `endcall.reports.storage.OutboxError` and
 * `endcall.reports.outbox.versions.SchemaTooNew`.
 */

export class OutboxError extends Error {
  override name = "OutboxError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export class SchemaTooNew extends Error {
  override name = "SchemaTooNew";
}

/** "Name: message" of any thrown value, for logs and `last_error` (never a stack). */
export function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}
