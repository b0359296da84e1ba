import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { SchemaTooNew } from "../../src/reports/errors.js";
import { SqliteOutbox } from "../../src/reports/outbox/sqlite.js";
import { py, tempDir } from "./helpers.js";

const cleanups: Array<() => void> = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function dir(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}

function master(path: string): Array<[string, string, string]> {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY rowid")
      .raw(true)
      .all() as Array<[string, string, string]>;
  } finally {
    db.close();
  }
}

function pyOpen(path: string): string {
  return py(
    `from endcall.reports.outbox import open_outbox\nob = open_outbox(${JSON.stringify(path)})\n` +
      "with ob.transaction() as tx:\n    print(tx.run(\"SELECT component, version FROM endcall_schema\"))\nob.close()",
  ).trim();
}

describe("the SQLite schema is Python's", () => {
  it("a Node-created file has the same sqlite_master as a Python-created one", async () => {
    const d = dir();
    const ob = await SqliteOutbox.open(join(d, "node.sqlite3"));
    await ob.close();
    pyOpen(join(d, "py.sqlite3"));
    const node = master(join(d, "node.sqlite3"));
    const python = master(join(d, "py.sqlite3"));
    expect(node.length).toBeGreaterThanOrEqual(6);
    expect(node).toEqual(python);
    const journal = new Database(join(d, "node.sqlite3")).pragma("journal_mode", { simple: true });
    expect(journal).toBe("wal");
  });

  it("Python opens a Node-created outbox at version 4 and Node opens a Python-created one", async () => {
    const d = dir();
    const ob = await SqliteOutbox.open(join(d, "node.sqlite3"));
    await ob.close();
    expect(pyOpen(join(d, "node.sqlite3"))).toBe("[('outbox', 4)]");
    pyOpen(join(d, "py.sqlite3"));
    const before = master(join(d, "py.sqlite3"));
    const ob2 = await SqliteOutbox.open(join(d, "py.sqlite3"));
    await ob2.probe();
    await ob2.close();
    expect(master(join(d, "py.sqlite3"))).toEqual(before);
  });

  it("a table from before versions (no delivery/ending/scope) migrates as Python migrates it", async () => {
    const d = dir();
    const old = `CREATE TABLE endcall_outbox (
    end_id TEXT PRIMARY KEY, status TEXT NOT NULL, is_draft INTEGER NOT NULL DEFAULT 0,
    url TEXT NOT NULL, headers TEXT NOT NULL DEFAULT '{}', body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT, last_status INTEGER, lease_owner TEXT, lease_expires_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION);
    INSERT INTO endcall_outbox (end_id, status, url, body, next_attempt_at, created_at, updated_at)
    VALUES ('old1', 'pending', 'http://x/', X'7B7D', 1, 1, 1);`;
    for (const name of ["node.sqlite3", "py.sqlite3"]) {
      const db = new Database(join(d, name));
      db.exec(old);
      db.close();
    }
    const ob = await SqliteOutbox.open(join(d, "node.sqlite3"));
    const rec = await ob.get("old1");
    expect(rec?.delivery).toEqual({});
    expect(rec?.ending).toBeNull();
    await ob.close();
    pyOpen(join(d, "py.sqlite3"));
    expect(master(join(d, "node.sqlite3"))).toEqual(master(join(d, "py.sqlite3")));
    expect(pyOpen(join(d, "node.sqlite3"))).toBe("[('outbox', 4)]");
  });

  it("a version-2 outbox (delivery, no ending/scope) gets only the later steps", async () => {
    const d = dir();
    const path = join(d, "v2.sqlite3");
    pyOpen(path);
    // rebuild it as version 2: drop the ending and scope columns
    const db = new Database(path);
    db.exec(
      "DROP INDEX endcall_outbox_scope; ALTER TABLE endcall_outbox DROP COLUMN scope;" +
        " ALTER TABLE endcall_outbox DROP COLUMN ending; UPDATE endcall_schema SET version = 2",
    );
    db.close();
    const ob = await SqliteOutbox.open(path);
    await ob.close();
    const cols = new Database(path).prepare("PRAGMA table_info(endcall_outbox)").all() as Array<{ name: string }>;
    expect(cols.map((c) => c.name).slice(-3)).toEqual(["delivery", "ending", "scope"]);
    expect(pyOpen(path)).toBe("[('outbox', 4)]");
  });

  it("refuses a newer schema with a clear error, and writes nothing", async () => {
    const d = dir();
    const path = join(d, "new.sqlite3");
    pyOpen(path);
    const db = new Database(path);
    db.exec("UPDATE endcall_schema SET version = 5");
    db.close();
    const err = await SqliteOutbox.open(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaTooNew);
    expect(String((err as Error).message)).toMatch(/schema version 5, newer than this endcall-agent knows \(4\)/);
    const again = new Database(path);
    expect(again.prepare("SELECT version FROM endcall_schema").pluck().get()).toBe(5);
    again.close();
  });
});
