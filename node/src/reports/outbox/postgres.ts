/**
 * PostgreSQL outbox (`pg`) for fleets sharing one database, the same table Python's relays use.
 * As Python's `PostgresOutbox`: leases and due times on the server's clock
 * (`clock_timestamp()`), claims with `FOR UPDATE SKIP LOCKED`, schema changes under an advisory
 * lock; one connection, transactions serialised; a connection the server dropped is replaced
 * at the next transaction.
 */

import type pg from "pg";
import { redact } from "../redact.js";
import { TABLE } from "./base.js";
import { SqlOutbox, type Clock } from "./sql.js";
import { Mutex, bind, type Params, type Tx } from "./tx.js";

/** the advisory lock key of endcall's schema changes ("endcall" in ASCII), as Python */
export const SCHEMA_LOCK_KEY = 0x656e6463616c6cn;

// DOUBLE PRECISION and INTEGER already come back as numbers; BYTEA as a Buffer.

/** `pg`, loaded at the first connection: a SQLite outbox's process (every job process of a
 * single host) does not pay for its import (~45 ms of each process's start). */
let driver: Promise<typeof pg> | null = null;
function loadDriver(): Promise<typeof pg> {
  driver ??= import("pg").then((m) => m.default);
  return driver;
}

export interface PostgresOptions {
  clock?: Clock;
  /** seconds */
  connectTimeout?: number;
}

export class PostgresOutbox extends SqlOutbox {
  readonly dsn: string;
  private client: pg.Client | null = null;
  private broken = false;
  private closed = false;
  private readonly lock = new Mutex();
  private readonly connectTimeout: number;

  private constructor(dsn: string, o: PostgresOptions) {
    super(o.clock);
    this.dsn = dsn;
    this.connectTimeout = o.connectTimeout ?? 10;
    this.claimLock = " FOR UPDATE SKIP LOCKED";
    this.schemaLockSql = `SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY})`;
    this.blobType = "BYTEA";
  }

  static async open(dsn: string, o: PostgresOptions = {}): Promise<PostgresOutbox> {
    const ob = new PostgresOutbox(dsn, o);
    try {
      await ob.openSchema();
    } catch (e) {
      await ob.close();
      throw e;
    }
    return ob;
  }

  private async connect(): Promise<pg.Client> {
    const { Client } = await loadDriver();
    const client = new Client({
      connectionString: this.dsn,
      connectionTimeoutMillis: this.connectTimeout * 1000,
    });
    // an idle connection the server drops must not crash the process: mark it, replace it later
    client.on("error", () => {
      if (this.client === client) this.broken = true;
    });
    try {
      await client.connect();
    } catch (e) {
      void client.end().catch(() => undefined);
      const err = e instanceof Error ? e : new Error(String(e));
      throw new Error(redact(err.message), { cause: undefined });
    }
    this.client = client;
    this.broken = false;
    return client;
  }

  private async conn(): Promise<pg.Client> {
    if (this.client && !this.broken) return this.client;
    if (this.client) void this.client.end().catch(() => undefined);
    this.client = null;
    return this.connect();
  }

  protected override async now(tx: Tx): Promise<number> {
    if (this.injectedClock) return this.injectedClock();
    const rows = await tx.run("SELECT extract(epoch FROM clock_timestamp())::float8");
    return Number(rows[0]![0]);
  }

  protected async columns(tx: Tx): Promise<Set<string>> {
    const rows = await tx.run(
      "SELECT column_name FROM information_schema.columns" +
        " WHERE table_name = :t AND table_schema = current_schema()",
      { t: TABLE },
    );
    return new Set(rows.map((r) => String(r[0])));
  }

  transaction<T>(_write: boolean, fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.lock.run(async () => {
      if (this.closed) throw new Error("the outbox is closed");
      let client = await this.conn();
      try {
        await client.query("BEGIN");
      } catch {
        // dropped since its last use (a restart, a failover): nothing ran yet, so reconnect
        this.broken = true;
        client = await this.conn();
        await client.query("BEGIN");
      }
      const tx: Tx = {
        run: async (sql: string, params: Params = {}) => {
          const { text, values } = bind(sql, params, "pg");
          const res = await client.query({ text, values, rowMode: "array" });
          return (res.rows ?? []) as unknown[][];
        },
      };
      let out: T;
      try {
        out = await fn(tx);
        await client.query("COMMIT");
      } catch (e) {
        try {
          await client.query("ROLLBACK");
        } catch {
          this.broken = true;
        }
        throw e;
      }
      return out;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.lock.run(async () => {
      const c = this.client;
      this.client = null;
      if (c) await c.end().catch(() => undefined);
    });
  }

  describe(): string {
    return "PostgresOutbox(...)";
  }
}
