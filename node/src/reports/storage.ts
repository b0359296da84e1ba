/**
 * Where the outbox lives (Python's `storage`): an outbox that cannot be opened or written is an
 * `OutboxError` when the agent starts — naming the outbox (never a password), the cause, and
 * what to do — not drafts silently skipped later; a SQLite outbox on storage that dies with the
 * container (overlay, tmpfs) or on a network filesystem is warned about once per path.
 */

import { existsSync, readFileSync, realpathSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { log } from "./log.js";
import { SqliteOutbox } from "./outbox/sqlite.js";

import { OutboxError, describe } from "./errors.js";
import { defaultOutboxPath } from "./outbox/base.js";
import { openOutbox } from "./outbox/open.js";
import type { Clock, SqlOutbox } from "./outbox/sql.js";
import { redact } from "./redact.js";

const WHAT_TO_DO =
  "Point ENDCALL_OUTBOX (or the pipeline's outbox option) at a writable volume or a PostgreSQL database";

/** filesystems whose files are gone when the container (or the machine) goes */
const EPHEMERAL_FS = new Set(["overlay", "overlayfs", "aufs", "tmpfs", "ramfs"]);
/** network filesystems: SQLite's file locks are not reliable there */
const NETWORK_FS = new Set([
  "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "lustre", "gpfs",
]);
const warned = new Set<string>();

function unescape(field: string): string {
  return field.replaceAll("\\040", " ").replaceAll("\\011", "\t").replaceAll("\\012", "\n");
}

/** The type of the filesystem holding `path` (its nearest existing ancestor), or null. */
export function filesystemType(path: string, mountinfo = "/proc/self/mountinfo"): string | null {
  let p = resolve(path);
  while (!existsSync(p) && p !== dirname(p)) p = dirname(p);
  let target: string;
  let lines: string[];
  try {
    target = realpathSync(p);
    lines = readFileSync(mountinfo, "utf-8").split("\n");
  } catch {
    return null;
  }
  let best = "";
  let kind: string | null = null;
  for (const line of lines) {
    const at = line.indexOf(" - ");
    if (at < 0) continue;
    const fields = line.slice(0, at).split(/\s+/).filter((f) => f);
    const right = line.slice(at + 3).split(/\s+/).filter((f) => f);
    if (fields.length < 5 || !right.length) continue;
    const mount = unescape(fields[4]!);
    const inside = target === mount || target.startsWith(mount.replace(/\/+$/, "") + "/");
    if (inside && mount.length >= best.length) {
      best = mount;
      kind = right[0]!;
    }
  }
  return kind;
}

/** Why a SQLite outbox at `path` may lose reports, or null when it looks durable. */
export function storageWarning(path: string, mountinfo?: string): string | null {
  const kind = filesystemType(path, mountinfo);
  if (kind !== null && EPHEMERAL_FS.has(kind)) {
    return (
      `the outbox ${path} is on ${kind}, which does not survive the container: reports not yet` +
      " delivered are lost with it. Mount a volume and point ENDCALL_OUTBOX at it, or use a" +
      " PostgreSQL outbox (ENDCALL_OUTBOX=postgresql://...)"
    );
  }
  if (kind !== null && NETWORK_FS.has(kind)) {
    return (
      `the outbox ${path} is on a network filesystem (${kind}): SQLite is not safe to share` +
      " there. Keep the SQLite outbox on a local volume of one host, or use a PostgreSQL outbox" +
      " for several hosts"
    );
  }
  return null;
}

/** Throw `OutboxError` unless `outbox` can be written (a row written and removed); warn once
 * per path about a SQLite outbox on storage that will not last. */
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
  if (outbox instanceof SqliteOutbox && outbox.path !== ":memory:" && !warned.has(outbox.path)) {
    const why = storageWarning(outbox.path);
    if (why !== null) {
      warned.add(outbox.path);
      log.warn(`endcall: ${why}`);
    }
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
