/**
 * SQLite outbox (better-sqlite3): one file on one host, the same file Python's relays read.
 * As Python's `SqliteOutbox`: WAL journal with `synchronous=FULL` (a commit survives power loss),
 * a busy timeout so agent jobs, the CLI relay and the fallback server can share the file, and
 * `BEGIN IMMEDIATE` for every write. better-sqlite3 is synchronous, so a commit blocks the event
 * loop for its fsync; waiting for another process's lock must not: SQLite itself waits at most
 * `SLICE_MS` at a time and the rest of `busyTimeout` is waited here, asynchronously. Transactions
 * of every SQLite outbox in the process run one at a time (`PROCESS_LOCK`).
 */

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { TABLE, draftKey } from "./base.js";
import { SqlOutbox, type Clock } from "./sql.js";
import { Mutex, bind, type Params, type Tx } from "./tx.js";

export interface SqliteOptions {
  clock?: Clock;
  /** seconds to wait for another process's lock (default 30, as Python) */
  busyTimeout?: number;
}

/** One SQLite transaction at a time in this process, across every `SqliteOutbox`: a second
 * connection to the same file beginning a write while the first awaits between statements
 * would block the (only) thread in SQLite's busy wait, which the first could never end. */
const PROCESS_LOCK = new Mutex();
/** the longest SQLite's own busy handler blocks the event loop at a time (ms) */
const SLICE_MS = 20;

function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

const pause = () => new Promise((r) => setTimeout(r, 2 + Math.random() * 18));

export class SqliteOutbox extends SqlOutbox {
  readonly path: string;
  private db: Database.Database;
  private readonly lock = PROCESS_LOCK;
  private readonly tx: Tx;
  private readonly busyMs: number;

  private constructor(path: string, db: Database.Database, busyMs: number, clock?: Clock) {
    super(clock);
    this.path = path;
    this.db = db;
    this.busyMs = busyMs;
    this.tx = {
      run: async (sql: string, params: Params = {}) => {
        const { text, values } = bind(sql, params, "sqlite");
        const stmt = this.db.prepare(text);
        if (!stmt.reader) {
          stmt.run(...values);
          return [];
        }
        return stmt.raw(true).all(...values) as unknown[][];
      },
    };
  }

  /** Open (creating the file and its directory if missing) and create/migrate the tables.
   * Throws what SQLite throws (`SqliteError`), `SchemaTooNew`, or a file system error. */
  static async open(path: string, o: SqliteOptions = {}): Promise<SqliteOutbox> {
    const busy = o.busyTimeout ?? 30;
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    const db = new Database(path, { timeout: SLICE_MS });
    const ob = new SqliteOutbox(path, db, Math.round(busy * 1000), o.clock);
    try {
      db.pragma(`busy_timeout = ${SLICE_MS}`);
      await ob.wal(busy);
      db.pragma("synchronous = FULL");
      await ob.openSchema();
    } catch (e) {
      db.close();
      throw e;
    }
    return ob;
  }

  /** Switch to WAL; a busy answer (many processes opening one fresh file) is retried. */
  private async wal(busy: number): Promise<void> {
    const deadline = Date.now() + busy * 1000;
    for (;;) {
      try {
        this.db.pragma("journal_mode = WAL");
        return;
      } catch (e) {
        const msg = String((e as Error).message);
        if (!(msg.includes("locked") || msg.includes("busy")) || Date.now() >= deadline) throw e;
      }
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 45));
    }
  }

  protected async columns(tx: Tx): Promise<Set<string>> {
    return new Set((await tx.run(`PRAGMA table_info(${TABLE})`)).map((r) => String(r[1])));
  }

  transaction<T>(write: boolean, fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.lock.run(async () => {
      if (!this.db.open) throw new Error("the outbox is closed");
      await this.begin(write);
      try {
        const out = await fn(this.tx);
        this.db.exec("COMMIT");
        return out;
      } catch (e) {
        // a failed statement or a failed COMMIT (busy, disk full): never leave it open
        try {
          if (this.db.inTransaction) this.db.exec("ROLLBACK");
        } catch {
          /* the rollback's own failure hides nothing more useful */
        }
        throw e;
      }
    });
  }

  /** BEGIN (IMMEDIATE for a write), waiting for another process's lock up to the busy
   * timeout without blocking the event loop for more than `SLICE_MS` at a time. */
  private async begin(write: boolean): Promise<void> {
    const deadline = performance.now() + this.busyMs;
    for (;;) {
      try {
        this.db.exec(write ? "BEGIN IMMEDIATE" : "BEGIN");
        // a read takes its snapshot now, inside this loop (busy only during a WAL recovery)
        if (!write) this.db.prepare("SELECT count(*) FROM sqlite_master").pluck().get();
        return;
      } catch (e) {
        if (this.db.inTransaction) this.db.exec("ROLLBACK");
        if (!isBusy(e) || performance.now() >= deadline) throw e;
      }
      await pause();
    }
  }

  /** The process is exiting (its `exit` event: no event loop any more) with the drafts of
   * `endIds` still held by `owner`: end their leases now, synchronously, so a relay delivers
   * them at its next look instead of when the lease runs out. A transaction this process left
   * open is rolled back first (it could never commit); waits at most `busyMs` for another
   * process's lock. Returns how many drafts were handed over; never throws. */
  handOverDraftsAtExit(endIds: readonly string[], owner: string, busyMs = 2000): number {
    if (endIds.length === 0 || !this.db.open) return 0;
    try {
      if (this.db.inTransaction) this.db.exec("ROLLBACK");
      this.db.pragma(`busy_timeout = ${busyMs}`);
      const now = this.injectedClock ? this.injectedClock() : Date.now() / 1000;
      const stmt = this.db.prepare(
        `UPDATE ${TABLE} SET lease_expires_at = ?, updated_at = ?` +
          " WHERE end_id = ? AND status = 'draft' AND lease_owner = ? AND lease_expires_at > ?",
      );
      let n = 0;
      for (const id of endIds) n += stmt.run(now, now, draftKey(id), owner, now).changes;
      return n;
    } catch {
      return 0; // exiting: nothing to tell anyone; the lease runs out as before
    }
  }

  async close(): Promise<void> {
    await this.lock.run(async () => {
      if (this.db.open) this.db.close();
    });
  }

  describe(): string {
    return `SqliteOutbox(${JSON.stringify(this.path)})`;
  }
}
