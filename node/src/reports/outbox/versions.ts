/**
 * Schema versions, as Python keeps them (`endcall.reports.outbox.versions`): one row per
 * component in `endcall_schema`; tables are created and migrated inside one write transaction
 * holding the schema lock, and a database whose version is newer than this code knows is
 * refused (`SchemaTooNew`). A database from before versions existed counts as version 0.
 */

import { SchemaTooNew } from "../errors.js";
import type { Tx } from "./tx.js";

export const SCHEMA_TABLE = "endcall_schema";

export type Step = (tx: Tx) => Promise<void>;

export interface Component {
  name: string;
  create: Step;
  migrations: readonly Step[];
}

export function versionOfComponent(c: Component): number {
  return c.migrations.length + 1;
}

async function createSchemaTable(tx: Tx): Promise<void> {
  await tx.run(
    `CREATE TABLE IF NOT EXISTS ${SCHEMA_TABLE} (` + " component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
  );
}

/** The version recorded for `component` (null: never recorded). */
export async function versionOf(tx: Tx, component: string): Promise<number | null> {
  await createSchemaTable(tx);
  const rows = await tx.run(`SELECT version FROM ${SCHEMA_TABLE} WHERE component = :c`, { c: component });
  return rows.length ? Number(rows[0]![0]) : null;
}

/** Create or migrate `component`'s tables inside `tx` (which holds the schema lock); returns
 * the version found before. Throws `SchemaTooNew`. */
export async function ensureSchema(tx: Tx, component: Component): Promise<number> {
  const version = versionOfComponent(component);
  const found = await versionOf(tx, component.name);
  if (found !== null && found > version) {
    throw new SchemaTooNew(
      `the ${component.name} tables in this database are at schema version ${found}, newer than ` +
        `this endcall-agent knows (${version}): upgrade endcall-agent here too (a rolling upgrade ` +
        "goes old → new; old code never writes newer tables)",
    );
  }
  if (found === version) return found;
  await component.create(tx);
  for (const step of component.migrations.slice(Math.max(0, (found ?? 1) - 1))) await step(tx);
  if (found === null) {
    await tx.run(`INSERT INTO ${SCHEMA_TABLE} (component, version) VALUES (:c, :v)`, {
      c: component.name,
      v: version,
    });
  } else {
    await tx.run(`UPDATE ${SCHEMA_TABLE} SET version = :v WHERE component = :c`, {
      c: component.name,
      v: version,
    });
  }
  return found ?? 0;
}
