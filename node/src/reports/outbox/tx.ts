/**
 * One open transaction, queries written once with `:name` parameters (as Python's `Tx.run`),
 * and the binding of those names to SQLite's `?N` or PostgreSQL's `$N` placeholders.
 */

export type Params = Record<string, unknown>;

export interface Tx {
  /** Run one statement; the rows it returns (as arrays, in column order). */
  run(sql: string, params?: Params): Promise<unknown[][]>;
}

const PARAM = /(?<![:\w]):([A-Za-z_]\w*)/g;

/** `:name` → `?` (SQLite: one value per occurrence) or `$N` (PostgreSQL: each name bound
 * once, in first-use order). */
export function bind(sql: string, params: Params, style: "sqlite" | "pg"): { text: string; values: unknown[] } {
  const index = new Map<string, number>();
  const values: unknown[] = [];
  const value = (name: string): unknown => {
    if (!(name in params)) throw new Error(`missing SQL parameter :${name}`);
    const v = params[name];
    if (v === undefined) return null;
    if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return v;
  };
  const text = sql.replace(PARAM, (_, name: string) => {
    if (style === "sqlite") {
      values.push(value(name));
      return "?";
    }
    let i = index.get(name);
    if (i === undefined) {
      values.push(value(name));
      i = values.length;
      index.set(name, i);
    }
    return "$" + i;
  });
  return { text, values };
}

/** A FIFO lock: one transaction at a time on a connection (awaits inside a transaction would
 * otherwise let another start on the same connection). */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
