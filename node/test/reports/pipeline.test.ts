import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { OutboxError } from "../../src/reports/errors.js";
import { setReportLogger } from "../../src/reports/log.js";
import { draftKey } from "../../src/reports/outbox/base.js";
import { SqliteOutbox } from "../../src/reports/outbox/sqlite.js";
import { ReportPipeline } from "../../src/reports/pipeline.js";
import { Webhook, type WebhookInit } from "../../src/reports/webhook.js";
import { SECRET, receiver, tempDir } from "./helpers.js";

const enc = (s: string) => new TextEncoder().encode(s);
const closers: Array<() => Promise<void> | void> = [];
const logged: string[] = [];
setReportLogger({ debug: () => undefined, info: (m) => logged.push(m), warn: (m) => logged.push(m), error: (m) => logged.push(m) });
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  logged.length = 0;
});

async function setup(answer: Parameters<typeof receiver>[0], hook: Partial<WebhookInit> = {}) {
  const t = tempDir();
  closers.push(t.cleanup);
  const path = join(t.dir, "o.sqlite3");
  const r = await receiver(answer);
  closers.push(r.close);
  const webhook = new Webhook({ url: r.url, secret: SECRET, ...hook });
  const p = new ReportPipeline(webhook, { outbox: path, heartbeat: 0.1 });
  closers.push(() => p.close());
  await p.check();
  const raw = () => {
    const db = new Database(path, { readonly: true });
    closers.push(() => void db.close());
    return db;
  };
  return { p, r, path, raw };
}

describe("ReportPipeline", () => {
  it("stores the final report before it sends it, replacing the draft; delivered once", async () => {
    let seenAtSend: unknown;
    let path = "";
    const s = await setup(() => {
      const db = new Database(path, { readonly: true });
      seenAtSend = db.prepare("SELECT status, lease_owner IS NOT NULL FROM endcall_outbox WHERE end_id = 'e1'").raw(true).get();
      db.close();
      return { status: 200 };
    });
    path = s.path;
    s.p.scope("e1", "RM_1/agent");
    await s.p.saveDraft("e1", enc('{"complete":false}'));
    expect(await s.p.store("e1", enc('{"complete":true}'))).toBe(true);
    const out = await s.p.deliver("e1");
    expect(out).toEqual({ delivered: true, stored: true, dead: false, attempts: 1, lastStatus: 200, lastError: null });
    expect(seenAtSend).toEqual(["pending", 1]);
    const db = s.raw();
    expect(db.prepare("SELECT end_id, status FROM endcall_outbox").raw(true).all()).toEqual([["e1", "delivered"]]);
    expect(s.r.got[0]!.body.toString()).toBe('{"complete":true}');
    expect(s.r.got[0]!.headers["webhook-id"]).toBe("e1");
  });

  it("heartbeats renew the draft's lease until the final report is stored", async () => {
    const s = await setup(() => ({ status: 200 }));
    await s.p.saveDraft("e1", enc("d"));
    const db = s.raw();
    const q = db.prepare("SELECT updated_at, lease_expires_at, scope FROM endcall_outbox WHERE end_id = ?").raw(true);
    const first = q.get(draftKey("e1")) as number[];
    await new Promise((r) => setTimeout(r, 350));
    const later = q.get(draftKey("e1")) as number[];
    expect(later[0]!).toBeGreaterThan(first[0]!);
    expect(later[1]!).toBeGreaterThan(first[1]!);
    expect(later[1]! - later[0]!).toBeCloseTo(s.p.lease, 3); // the lease: >= timeout + margin
    expect(s.p.lease).toBe(90);
    await s.p.store("e1", enc("f"));
    const stored = (db.prepare("SELECT updated_at FROM endcall_outbox WHERE end_id = 'e1'").pluck().get() as number);
    await new Promise((r) => setTimeout(r, 300));
    expect(q.get(draftKey("e1"))).toBeUndefined();
    expect(db.prepare("SELECT updated_at FROM endcall_outbox WHERE end_id = 'e1'").pluck().get()).toBe(stored);
  });

  it("a process exiting with a draft held hands it over (its exit hook); close removes the hook", async () => {
    const s = await setup(() => ({ status: 200 }));
    const before = new Set(process.listeners("exit"));
    await s.p.saveDraft("e1", enc('{"complete":false}'));
    await s.p.saveDraft("e2", enc('{"complete":false}'));
    const added = process.listeners("exit").filter((l) => !before.has(l));
    expect(added).toHaveLength(1); // one hook per pipeline, however many drafts
    expect(await s.p.store("e2", enc('{"complete":true}'))).toBe(true); // e2's draft is gone
    (added[0] as () => void)(); // what the process's exit event runs
    const row = s.raw().prepare("SELECT end_id, lease_expires_at FROM endcall_outbox ORDER BY end_id").all() as Array<{ end_id: string; lease_expires_at: number }>;
    expect(row.map((r) => r.end_id)).toEqual([draftKey("e1"), "e2"]);
    expect(row[0]!.lease_expires_at).toBeLessThanOrEqual(Date.now() / 1000);
    expect(row[1]!.lease_expires_at).toBeGreaterThan(Date.now() / 1000 + 30); // the final: untouched
    expect(logged.some((m) => m.includes("1 crash draft(s) handed over"))).toBe(true);
    await s.p.close();
    expect(process.listeners("exit")).not.toContain(added[0]);
  });

  it("markEnding records the accepted end in Python's shape, creating the draft", async () => {
    const s = await setup(() => ({ status: 200 }));
    const ok = await s.p.markEnding(
      "e1",
      { reason: "assistant-ended-call", initiator: { kind: "agent", identity: null }, request_id: "r1", meta: { a: 1 } },
      enc("minimal"),
    );
    expect(ok).toBe(true);
    const row = s.raw().prepare("SELECT ending, body FROM endcall_outbox WHERE end_id = ?").raw(true).get(draftKey("e1")) as [string, Buffer];
    expect(row[0]).toBe('{"ended_reason":"assistant-ended-call","initiator":{"kind":"agent","identity":null},"request_id":"r1","meta":{"a":1},"channel":null,"requested_at":null}');
    expect(row[1].toString()).toBe("minimal");
  });

  it("retries within the in-process window only, then leaves the report to relays, unleased", async () => {
    const s = await setup(() => ({ status: 500 }), { schedule: [0, 0.2, 0.2, 0.2, 3600], jitter: 0, inProcessWindow: 1 });
    await s.p.store("e1", enc("f"));
    const t0 = performance.now();
    const out = await s.p.deliver("e1");
    const took = performance.now() - t0;
    expect(out).toMatchObject({ delivered: false, stored: true, dead: false, attempts: 4, lastStatus: 500 });
    expect(took).toBeLessThan(1500);
    const row = s.raw().prepare("SELECT status, lease_owner, attempts, next_attempt_at - updated_at FROM endcall_outbox").raw(true).get() as unknown[];
    expect(row.slice(0, 3)).toEqual(["pending", null, 4]);
    expect(row[3] as number).toBeGreaterThan(3000);
    expect(logged.join("\n")).not.toContain("endcall_unsaved_report"); // stored: never logged whole
  });

  it("a hanging receiver is bounded by the window (and the per-attempt timeout)", async () => {
    const s = await setup(() => "hang", { timeout: 30, inProcessWindow: 0.3 });
    await s.p.store("e1", enc("f"));
    const t0 = performance.now();
    const out = await s.p.deliver("e1");
    expect(performance.now() - t0).toBeLessThan(2500); // one attempt of at most max(1 s, window left)
    expect(out).toMatchObject({ delivered: false, stored: true, attempts: 1 });
    expect(out.lastError).toMatch(/timeout/);
  });

  it("410 is dead at once", async () => {
    const s = await setup(() => ({ status: 410 }));
    await s.p.store("e1", enc("f"));
    expect(await s.p.deliver("e1")).toMatchObject({ delivered: false, stored: true, dead: true, attempts: 1, lastStatus: 410 });
  });

  it("an unknown end_id is neither stored nor delivered", async () => {
    const s = await setup(() => ({ status: 200 }));
    expect(await s.p.deliver("nope")).toMatchObject({ delivered: false, stored: false, attempts: 0 });
  });

  it("a report the outbox refused is kept in memory, delivered from there, then recorded as delivered", async () => {
    const t = tempDir();
    closers.push(t.cleanup);
    const r = await receiver(() => ({ status: 200 }));
    closers.push(r.close);
    const ob = await SqliteOutbox.open(join(t.dir, "o.sqlite3"));
    closers.push(() => ob.close());
    let failStores = 1;
    let failWrites = 2;
    const store = ob.store.bind(ob);
    const writeMany = ob.writeMany.bind(ob);
    ob.store = async (...a) => {
      if (failStores-- > 0) throw new Error("disk I/O error");
      return store(...a);
    };
    ob.writeMany = async (...a) => {
      if (failWrites-- > 0 && a[0].length && a[1].length) throw new Error("database is locked");
      return writeMany(...a);
    };
    const p = new ReportPipeline(new Webhook({ url: r.url, secret: SECRET }), { outbox: ob, heartbeat: 0.1 });
    closers.push(() => p.close());
    await p.saveDraft("e1", enc("draft"));
    expect(await p.store("e1", enc("final"))).toBe(false);
    expect(logged.join("\n")).toMatch(/could not be stored .*kept in memory/);
    const out = await p.deliver("e1");
    expect(out.delivered).toBe(true);
    expect(r.got.map((g) => g.body.toString())).toEqual(["final"]);
    for (let i = 0; i < 40 && (await ob.get("e1"))?.status !== "delivered"; i++) await new Promise((res) => setTimeout(res, 100));
    expect(await ob.get("e1")).toMatchObject({ status: "delivered" });
    expect(await ob.get(draftKey("e1"))).toBeNull(); // no relay sends the draft afterwards
    expect(logged.join("\n")).not.toContain("endcall_unsaved_report");
  });

  it("a report neither stored nor delivered is logged whole, once, at close", async () => {
    const t = tempDir();
    closers.push(t.cleanup);
    const r = await receiver(() => ({ status: 503 }));
    closers.push(r.close);
    const ob = await SqliteOutbox.open(join(t.dir, "o.sqlite3"));
    closers.push(() => ob.close());
    ob.store = async () => {
      throw new Error("disk full");
    };
    const p = new ReportPipeline(new Webhook({ url: r.url, secret: SECRET, inProcessWindow: 0.2 }), { outbox: ob, settleAtClose: 0.3 });
    expect(await p.store("e1", enc('{"transcript":"x"}'))).toBe(false);
    const out = await p.deliver("e1");
    expect(out).toMatchObject({ delivered: false, stored: false, attempts: 1 });
    await p.close();
    const lines = logged.filter((l) => l.startsWith('{"endcall_unsaved_report":'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!).endcall_unsaved_report).toMatchObject({ end_id: "e1", body: '{"transcript":"x"}' });
  });

  it("never throws into the session when the outbox is gone", async () => {
    const t = tempDir();
    closers.push(t.cleanup);
    const ob = await SqliteOutbox.open(join(t.dir, "o.sqlite3"));
    const p = new ReportPipeline(new Webhook({ url: "http://127.0.0.1:9/", secret: SECRET, inProcessWindow: 0 }), { outbox: ob });
    await ob.close();
    await expect(p.saveDraft("e1", enc("d"))).resolves.toBeUndefined();
    await expect(p.markEnding("e1", { reason: "x", initiator: { kind: "agent", identity: null }, request_id: null, meta: null }, enc("d"))).resolves.toBe(false);
    await expect(p.store("e1", enc("f"))).resolves.toBe(false);
    await expect(p.deliver("e1")).resolves.toMatchObject({ delivered: false });
    p.settleAtClose = 0.1;
    await expect(p.close()).resolves.toBeUndefined();
  });
});

describe("check()", () => {
  const asRoot = process.getuid?.() === 0;

  it("an outbox in a read-only directory is an OutboxError naming it and what to do", async () => {
    const t = tempDir();
    closers.push(t.cleanup);
    const ro = join(t.dir, "ro");
    mkdirSync(ro);
    if (asRoot) {
      execFileSync("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro]);
      closers.push(() => void execFileSync("umount", [ro]));
    } else {
      execFileSync("chmod", ["0555", ro]);
    }
    const where = join(ro, "outbox.sqlite3");
    const p = new ReportPipeline(new Webhook({ url: "http://h/", secret: SECRET }), { outbox: where });
    const err = await p.check().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboxError);
    expect((err as Error).message).toContain(where);
    expect((err as Error).message).toContain("ENDCALL_OUTBOX");
    await p.close();
  });

  it("an existing outbox on storage that became read-only fails check (the write probe)", async () => {
    if (!asRoot) return; // needs a remount; the directory case above covers non-root
    const t = tempDir();
    closers.push(t.cleanup);
    const dir = join(t.dir, "m");
    mkdirSync(dir);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir]);
    closers.push(() => void execFileSync("umount", [dir]));
    const ob = await SqliteOutbox.open(join(dir, "o.sqlite3"));
    await ob.close();
    execFileSync("mount", ["-o", "remount,ro", dir]);
    const p = new ReportPipeline(new Webhook({ url: "http://h/", secret: SECRET }), { outbox: join(dir, "o.sqlite3") });
    const err = await p.check().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboxError);
    expect((err as Error).message).toMatch(/outbox .*o\.sqlite3/);
    await p.close();
  });

  it("a path under a regular file is an OutboxError", async () => {
    const t = tempDir();
    closers.push(t.cleanup);
    writeFileSync(join(t.dir, "file"), "x");
    const p = new ReportPipeline(new Webhook({ url: "http://h/", secret: SECRET }), { outbox: join(t.dir, "file", "o.sqlite3") });
    await expect(p.check()).rejects.toBeInstanceOf(OutboxError);
  });

  it("ENDCALL_OUTBOX=postgresql://… selects PostgreSQL; its password never appears", async () => {
    const before = process.env.ENDCALL_OUTBOX;
    process.env.ENDCALL_OUTBOX = "postgresql://user:hunter2@127.0.0.1:1/endcall";
    try {
      const p = new ReportPipeline(new Webhook({ url: "http://h/", secret: SECRET }));
      const err = await p.check().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OutboxError);
      expect((err as Error).message).toContain("127.0.0.1:1/endcall");
      expect((err as Error).message).toMatch(/ECONNREFUSED|connect/);
      expect((err as Error).message).not.toContain("hunter2");
      await p.close();
    } finally {
      if (before === undefined) delete process.env.ENDCALL_OUTBOX;
      else process.env.ENDCALL_OUTBOX = before;
    }
  });
});

describe("hostile input", () => {
  it("a body that is not UTF-8 is stored, signed and sent byte for byte", async () => {
    const s = await setup(() => ({ status: 200 }));
    const body = new Uint8Array([0xff, 0xfe, 0x00, 0x7b, 0xc3]);
    expect(await s.p.store("e1", body)).toBe(true);
    expect((await s.p.deliver("e1")).delivered).toBe(true);
    expect(Buffer.compare(s.r.got[0]!.body, Buffer.from(body))).toBe(0);
    const { Webhook: Verifier } = await import("standardwebhooks");
    new Verifier(SECRET).verify(s.r.got[0]!.body, s.r.got[0]!.headers as Record<string, string>, { jsonParse: false });
  });

  it("a row that cannot be read back (corrupt JSON) ends deliver with an error, not a throw", async () => {
    const s = await setup(() => ({ status: 200 }));
    await s.p.store("e1", enc("f"));
    const db = new Database(s.path);
    db.prepare("UPDATE endcall_outbox SET delivery = '{not json' WHERE end_id = 'e1'").run();
    db.close();
    // the first attempt uses what store() returned; a later read finds the corrupt row
    const out = await s.p.deliver("e1", { withinMs: 0 });
    expect(out.delivered).toBe(false);
    const again = await s.p.deliver("e1");
    expect(again).toMatchObject({ delivered: false });
    expect(again.lastError).toMatch(/outbox: SyntaxError/);
  });

  it("a non-UTF-8 report neither stored nor delivered is logged as base64", async () => {
    const t = tempDir();
    closers.push(t.cleanup);
    const ob = await SqliteOutbox.open(join(t.dir, "o.sqlite3"));
    closers.push(() => ob.close());
    ob.store = async () => {
      throw new Error("disk full");
    };
    const p = new ReportPipeline(new Webhook({ url: "http://127.0.0.1:9/", secret: SECRET, inProcessWindow: 0 }), { outbox: ob, settleAtClose: 0 });
    await p.store("e1", new Uint8Array([0xff, 0x01]));
    await p.deliver("e1");
    await p.close();
    const line = logged.find((l) => l.startsWith('{"endcall_unsaved_report":'));
    expect(JSON.parse(line!).endcall_unsaved_report.body_b64).toBe(Buffer.from([0xff, 0x01]).toString("base64"));
  });
});
