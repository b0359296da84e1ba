import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { jsonText } from "../../src/reports/json.js";
import { draftKey, makeOwner } from "../../src/reports/outbox/base.js";
import { deliveryText } from "../../src/reports/outbox/sql.js";
import { SqliteOutbox } from "../../src/reports/outbox/sqlite.js";
import { Webhook } from "../../src/reports/webhook.js";
import { SECRET, SECRET2, py, tempDir } from "./helpers.js";

let clock = 1_800_000_000;
let ob: SqliteOutbox;
let path: string;
let cleanup: () => void;
const enc = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const A = "agent-a";
const B = "relay-b";

beforeEach(async () => {
  const t = tempDir();
  cleanup = t.cleanup;
  path = join(t.dir, "o.sqlite3");
  clock = 1_800_000_000;
  ob = await SqliteOutbox.open(path, { clock: () => clock });
});
afterEach(async () => {
  await ob.close();
  cleanup();
});

describe("drafts and final reports", () => {
  it("a draft is leased to its writer, rewritten while a draft, and renewed", async () => {
    expect(await ob.saveDraft("e1", "http://r/", enc("d1"), { owner: A, lease: 90, scope: "RM_1/agent" })).toBe(true);
    let rec = await ob.get(draftKey("e1"));
    expect(rec).toMatchObject({ status: "draft", isDraft: true, leaseOwner: A, leaseExpiresAt: clock + 90, scope: "RM_1/agent" });
    clock += 10;
    expect(await ob.saveDraft("e1", "http://r/", enc("d2"), { owner: A, lease: 90 })).toBe(true);
    rec = await ob.get(draftKey("e1"));
    expect(text(rec!.body)).toBe("d2");
    expect(rec!.scope).toBe("RM_1/agent"); // kept when not given again
    clock += 10;
    expect(await ob.renewDraft("e1", A, 90)).toBe(true);
    expect((await ob.get(draftKey("e1")))!.leaseExpiresAt).toBe(clock + 90);
    expect(await ob.renewDraft("e1", B, 90)).toBe(false); // not B's
  });

  it("the final report replaces the draft, and no draft is written after it", async () => {
    await ob.saveDraft("e1", "http://r/", enc("draft"), { owner: A, lease: 90 });
    expect(await ob.store("e1", "http://r/", enc("final"), { owner: A, lease: 90 })).toBe("stored");
    expect(await ob.get(draftKey("e1"))).toBeNull();
    expect(await ob.saveDraft("e1", "http://r/", enc("late"), { owner: A, lease: 90 })).toBe(false);
    expect(await ob.markEnding("e1", { ended_reason: "x" }, "http://r/", enc("late"), { owner: A, lease: 90 })).toBe(false);
    expect(await ob.get(draftKey("e1"))).toBeNull();
    expect(await ob.store("e1", "http://r/", enc("other"), { owner: A, lease: 90 })).toBe("exists");
    const fin = await ob.get("e1");
    expect(text(fin!.body)).toBe("final");
    expect(fin).toMatchObject({ status: "pending", isDraft: false, leaseOwner: A, attempts: 0 });
  });

  it("a draft a relay took over stays, but is never sent once the final report exists", async () => {
    await ob.saveDraft("e1", "http://r/", enc("draft"), { owner: A, lease: 90 });
    clock += 100; // lease expired: a relay claims the draft
    const claimed = await ob.claim(B, { limit: 10, lease: 60 });
    expect(claimed.map((r) => r.endId)).toEqual([draftKey("e1")]);
    expect(await ob.saveDraft("e1", "http://r/", enc("again"), { owner: A, lease: 90 })).toBe(false);
    await ob.markFailed(draftKey("e1"), B, { dead: false, nextAttemptAt: clock, statusCode: 500, error: "HTTP 500" });
    expect(await ob.store("e1", "http://r/", enc("final"), { owner: A, lease: 0 })).toBe("stored");
    expect((await ob.get(draftKey("e1")))!.status).toBe("pending"); // taken: kept
    clock += 1;
    const due = await ob.claim(B, { limit: 10, lease: 60 });
    expect(due.map((r) => r.endId)).toEqual(["e1"]); // the final one only (NO_FINAL)
    expect(await ob.renew(draftKey("e1"), B, 60)).toBeNull();
  });

  it("mark_ending writes Python's ending JSON into the draft (creating it) and keeps the body", async () => {
    const ending = { ended_reason: "customer-ended-call", initiator: { kind: "customer", identity: "u" }, request_id: "r1", meta: { é: 1 }, channel: "rpc", requested_at: 1.5 };
    expect(await ob.markEnding("e1", ending, "http://r/", enc("min"), { owner: A, lease: 90 })).toBe(true);
    await ob.saveDraft("e1", "http://r/", enc("later checkpoint"), { owner: A, lease: 90 });
    const rec = await ob.get(draftKey("e1"));
    expect(rec!.ending).toEqual(ending);
    expect(text(rec!.body)).toBe("later checkpoint");
    const raw = new Database(path).prepare("SELECT ending FROM endcall_outbox").pluck().get();
    expect(raw).toBe(py(`from endcall.reports.outbox.schema import json_text\nprint(json_text(${JSON.stringify(ending)}))`).trim());
  });

  it("a stored draft whose session has no final report is claimable once its lease expired", async () => {
    await ob.saveDraft("e1", "http://r/", enc("d"), { owner: A, lease: 90 });
    clock += 89;
    expect(await ob.claim(B, { limit: 10, lease: 60 })).toEqual([]);
    clock += 2;
    expect((await ob.claim(B, { limit: 10, lease: 60 })).map((r) => r.leaseOwner)).toEqual([B]);
  });
});

describe("a process exiting with drafts held", () => {
  it("ends the leases of its own drafts only, at once, rolling back a transaction it left open", async () => {
    await ob.saveDraft("e1", "http://r/", enc("d1"), { owner: A, lease: 90 });
    await ob.saveDraft("e2", "http://r/", enc("d2"), { owner: B, lease: 90 });
    await ob.saveDraft("e3", "http://r/", enc("d3"), { owner: A, lease: 90 });
    await ob.store("e3", "http://r/", enc("final"), { owner: A, lease: 90 });
    // a write in flight when the process exits (its second statement never came)
    let inside: () => void = () => undefined;
    let never: () => void = () => undefined;
    const entered = new Promise<void>((r) => (inside = r));
    const stuck = ob.transaction(true, async (tx) => {
      await tx.run("UPDATE endcall_outbox SET last_error = 'half' WHERE end_id = :k", { k: draftKey("e1") });
      inside();
      await new Promise<void>((r) => (never = r));
    });
    await entered;
    clock += 5;
    expect(ob.handOverDraftsAtExit(["e1", "e2", "e3", "e4"], A)).toBe(1);
    const mine = new Database(path, { readonly: true });
    try {
      const rows = mine.prepare("SELECT end_id, lease_owner, lease_expires_at, last_error FROM endcall_outbox ORDER BY end_id").all();
      expect(rows).toEqual([
        { end_id: "e1.draft", lease_owner: A, lease_expires_at: clock, last_error: null },
        { end_id: "e2.draft", lease_owner: B, lease_expires_at: clock - 5 + 90, last_error: null },
        { end_id: "e3", lease_owner: A, lease_expires_at: clock - 5 + 90, last_error: null },
      ]);
    } finally {
      mine.close();
    }
    never(); // (a test cannot exit: let the abandoned write finish, finding nothing to commit)
    await expect(stuck).rejects.toThrow();
    expect((await ob.claim(B, { limit: 10, lease: 60 })).map((r) => r.endId)).toEqual([draftKey("e1")]);
    // nothing to do, or a closed outbox: no error at exit
    expect(ob.handOverDraftsAtExit([], A)).toBe(0);
  });
});

describe("leases and attempts", () => {
  it("renew, mark_failed, defer, release and mark_delivered follow the lease, with the attempt log", async () => {
    await ob.store("e1", "http://r/", enc("f"), { owner: A, lease: 90 });
    expect(await ob.renew("e1", B, 60)).toBeNull(); // A holds it
    expect((await ob.renew("e1", A, 60))!.status).toBe("delivering");
    expect(await ob.markFailed("e1", B, { dead: false, nextAttemptAt: clock + 5, statusCode: 500, error: "x" })).toBe(false);
    expect(await ob.markFailed("e1", A, { dead: false, nextAttemptAt: clock + 5, statusCode: 500, error: "HTTP 500", keepLease: 90 })).toBe(true);
    let rec = await ob.get("e1");
    expect(rec).toMatchObject({ status: "pending", attempts: 1, lastStatus: 500, lastError: "HTTP 500", leaseOwner: A, nextAttemptAt: clock + 5 });
    await ob.release("e1", A);
    rec = await ob.get("e1");
    expect(rec).toMatchObject({ leaseOwner: null, leaseExpiresAt: null, status: "pending" });
    expect((await ob.renew("e1", B, 60))!.leaseOwner).toBe(B);
    expect(await ob.defer("e1", B, { until: clock + 300, error: "no key" })).toBe(true);
    expect(await ob.get("e1")).toMatchObject({ attempts: 1, status: "pending", leaseOwner: null, nextAttemptAt: clock + 300 });
    await ob.renew("e1", A, 60);
    await ob.markDelivered("e1", A, 204);
    expect(await ob.get("e1")).toMatchObject({ status: "delivered", attempts: 2, lastStatus: 204, lastError: null, deliveredAt: clock });
    expect(await ob.renew("e1", A, 60)).toBeNull();
    const log = await ob.attempts("e1");
    expect(log.map((a) => [a.attempt, a.outcome, a.statusCode])).toEqual([
      [1, "failed", 500],
      [2, "delivered", 204],
    ]);
  });

  it("an expired lease can be taken; a dead mark ends the row and drops the lease", async () => {
    await ob.store("e1", "http://r/", enc("f"), { owner: A, lease: 90 });
    clock += 91;
    expect((await ob.renew("e1", B, 60))!.leaseOwner).toBe(B);
    expect(await ob.markFailed("e1", B, { dead: true, nextAttemptAt: clock, statusCode: 410, error: "410 Gone", keepLease: 90 })).toBe(true);
    expect(await ob.get("e1")).toMatchObject({ status: "dead", leaseOwner: null, leaseExpiresAt: null });
    expect((await ob.attempts("e1"))[0]!.outcome).toBe("dead");
  });

  it("write_many stores and marks delivered in one transaction", async () => {
    await ob.saveDraft("e1", "http://r/", enc("d"), { owner: A, lease: 90 });
    await ob.writeMany([["e1", "http://r/", enc("f")]], [["e1", 200]], { owner: A, lease: 90 });
    expect(await ob.get(draftKey("e1"))).toBeNull();
    expect(await ob.get("e1")).toMatchObject({ status: "delivered", attempts: 1 });
  });
});

describe("row formats are Python's", () => {
  it("delivery, headers and owner as Python writes them", async () => {
    const wh = new Webhook({ url: "http://r/", secret: [SECRET, SECRET2], headers: { "X-Tenant": "é" } });
    await ob.store("e1", wh.url, enc("f"), { owner: A, lease: 90, headers: { ...wh.headers }, delivery: wh.delivery() });
    const row = new Database(path).prepare("SELECT headers, delivery FROM endcall_outbox").raw(true).get() as string[];
    const expected = py(
      "from endcall.reports.webhook import Webhook\nfrom endcall.reports.outbox.schema import json_text\n" +
        `w = Webhook(url="http://r/", secret=[${JSON.stringify(SECRET)}, ${JSON.stringify(SECRET2)}], headers={"X-Tenant": "é"})\n` +
        "print(json_text(w.headers)); print(json_text(w.delivery()))",
    ).trim().split("\n");
    expect(row).toEqual(expected);
    expect(deliveryText(wh.delivery())).toBe(expected[1]);
    expect(jsonText({ k: "é\u2028😀" })).toBe('{"k":"\\u00e9\\u2028\\ud83d\\ude00"}');
    expect(makeOwner()).toMatch(/^[^:]+:\d+:[0-9a-f]{8}$/);
    expect(makeOwner().split(":")[1]).toBe(String(process.pid));
  });

  it("Python reads a Node row (times as epoch floats, body bytes) and Node reads a Python row", async () => {
    clock = 1_800_000_000.25;
    await ob.store("e1", "http://r/", enc("\u00e9 body"), { owner: A, lease: 90 });
    await ob.close();
    const out = py(
      "from endcall.reports.outbox import SqliteOutbox\n" +
        `o = SqliteOutbox(${JSON.stringify(path)}, clock=lambda: 1800000100.5)\n` +
        "r = o.get('e1'); print(repr(r.body), r.created_at, r.lease_expires_at, r.status)\n" +
        "o.store('p1', 'http://r/', b'\\xff py', owner='py', lease=30)\n" +
        "o.save_draft('p2', 'http://r/', b'draft', owner='py', lease=30, scope='RM/x')",
    ).trim();
    expect(out).toBe("b'\\xc3\\xa9 body' 1800000000.25 1800000090.25 pending");
    ob = await SqliteOutbox.open(path, { clock: () => clock });
    const p1 = await ob.get("p1");
    expect(Buffer.from(p1!.body)).toEqual(Buffer.from([0xff, 0x20, 0x70, 0x79]));
    expect(p1).toMatchObject({ createdAt: 1800000100.5, leaseExpiresAt: 1800000130.5, leaseOwner: "py" });
    expect((await ob.get("p2.draft"))!.scope).toBe("RM/x");
  });
});
