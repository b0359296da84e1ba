import { join } from "node:path";
import { Webhook as Verifier } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import { attempt, nodePost } from "../../src/reports/http.js";
import { draftKey } from "../../src/reports/outbox/base.js";
import { SqliteOutbox } from "../../src/reports/outbox/sqlite.js";
import { RetryPolicy, parseRetryAfter } from "../../src/reports/retry.js";
import { Sender } from "../../src/reports/sender.js";
import { DEFAULT_SCHEDULE, Webhook, keyId } from "../../src/reports/webhook.js";
import { SECRET, SECRET2, receiver, tempDir } from "./helpers.js";

const enc = (s: string) => new TextEncoder().encode(s);
const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function serve(answer: Parameters<typeof receiver>[0]) {
  const r = await receiver(answer);
  closers.push(r.close);
  return r;
}

describe("the retry schedule", () => {
  it("is Python's: 11 attempts over ~46 h, then dead", () => {
    expect(DEFAULT_SCHEDULE).toEqual([0, 5, 30, 120, 600, 1800, 3600, 7200, 21600, 43200, 86400]);
    const p = new RetryPolicy(DEFAULT_SCHEDULE, 0);
    expect(p.nextAttemptAt(1, 100)).toBe(105);
    expect(p.nextAttemptAt(10, 100)).toBe(86500);
    expect(p.nextAttemptAt(11, 100)).toBeNull();
  });

  it("jitters non-zero delays within ±jitter, never the immediate one", () => {
    const lo = new RetryPolicy([0, 100], 0.1, 86400, () => 0);
    const hi = new RetryPolicy([0, 100], 0.1, 86400, () => 0.999999);
    expect(lo.nextAttemptAt(0, 0)).toBe(0);
    expect(lo.nextAttemptAt(1, 0)).toBeCloseTo(90, 6);
    expect(hi.nextAttemptAt(1, 0)).toBeCloseTo(110, 3);
    const r = new RetryPolicy([0, 100], 0.1);
    for (let i = 0; i < 200; i++) {
      const t = r.nextAttemptAt(1, 0)!;
      expect(t).toBeGreaterThanOrEqual(90);
      expect(t).toBeLessThanOrEqual(110);
    }
  });

  it("honours Retry-After (seconds or HTTP date), capped at a day, never earlier than the schedule", () => {
    const p = new RetryPolicy([0, 5], 0);
    expect(p.nextAttemptAt(1, 1000, 120)).toBe(1120);
    expect(p.nextAttemptAt(1, 1000, 1)).toBe(1005);
    expect(p.nextAttemptAt(1, 0, 10 ** 9)).toBe(86400);
    expect(parseRetryAfter("120", 0)).toBe(120);
    expect(parseRetryAfter(" 1.5 ", 0)).toBe(1.5);
    expect(parseRetryAfter("-3", 0)).toBe(0);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", Date.parse("Wed, 21 Oct 2015 07:27:00 GMT") / 1000)).toBe(60);
    expect(parseRetryAfter("soon", 0)).toBeNull();
    expect(parseRetryAfter(null, 0)).toBeNull();
  });
});

describe("one attempt", () => {
  it("POSTs the exact body, signed; 2xx is delivered", async () => {
    const r = await serve(() => ({ status: 204 }));
    const body = enc('{"type":"session.ended","x":"é"}');
    const res = await attempt(nodePost, r.url, "e1", body, [SECRET], { timeout: 5, headers: { "x-tenant": "t1" } });
    expect(res).toMatchObject({ outcome: "delivered", status: 204, error: null });
    const got = r.got[0]!;
    expect(Buffer.compare(got.body, Buffer.from(body))).toBe(0);
    expect(got.headers["x-tenant"]).toBe("t1");
    expect(got.headers["user-agent"]).toBe("endcall-webhook/1");
    new Verifier(SECRET).verify(got.body, got.headers as Record<string, string>);
  });

  it("410 is dead; 500 and redirects are retried (never followed); 429 carries Retry-After", async () => {
    const answers: Array<{ status: number; headers?: Record<string, string> }> = [
      { status: 410 },
      { status: 500 },
      { status: 302, headers: { location: "http://elsewhere/" } },
      { status: 429, headers: { "retry-after": "42" } },
      { status: 503, headers: { "retry-after": "7" } },
      { status: 400 },
    ];
    const r = await serve((n) => answers[n - 1]!);
    const results = [];
    for (let i = 0; i < answers.length; i++) results.push(await attempt(nodePost, r.url, "e1", enc("{}"), [SECRET], { timeout: 5 }));
    expect(results.map((x) => [x.outcome, x.status, x.retryAfter])).toEqual([
      ["dead", 410, null],
      ["retry", 500, null],
      ["retry", 302, null],
      ["retry", 429, 42],
      ["retry", 503, 7],
      ["retry", 400, null],
    ]);
    expect(results[2]!.error).toMatch(/redirect not followed \(http:\/\/elsewhere\/\)/);
    expect(r.got).toHaveLength(answers.length); // nothing went to the redirect target
  });

  it("a receiver that hangs costs one timeout", async () => {
    const r = await serve(() => "hang");
    const t0 = performance.now();
    const res = await attempt(nodePost, r.url, "e1", enc("{}"), [SECRET], { timeout: 0.5 });
    const took = performance.now() - t0;
    expect(res.outcome).toBe("retry");
    expect(res.error).toMatch(/timeout after 0.5s/);
    expect(took).toBeGreaterThan(450);
    expect(took).toBeLessThan(3000);
  });

  it("a 1 GB answer is not read", async () => {
    const r = await serve(() => "huge");
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    const res = await attempt(nodePost, r.url, "e1", enc("{}"), [SECRET], { timeout: 10 });
    expect(res).toMatchObject({ outcome: "delivered", status: 200 });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 1024 * 1024);
  });

  it("a refused connection is retried, with the reason", async () => {
    const r = await serve(() => ({ status: 200 }));
    await r.close();
    const res = await attempt(nodePost, r.url, "e1", enc("{}"), [SECRET], { timeout: 2 });
    expect(res.outcome).toBe("retry");
    expect(res.error).toMatch(/connect failed|ECONNREFUSED/);
  });
});

describe("the sender records outcomes in the outbox", () => {
  async function outbox() {
    const t = tempDir();
    let now = 1_800_000_000;
    const ob = await SqliteOutbox.open(join(t.dir, "o.sqlite3"), { clock: () => now });
    closers.push(t.cleanup, () => ob.close());
    return { ob, tick: (s: number) => (now += s), now: () => now };
  }

  it("410 makes the report dead at once, with the attempt logged", async () => {
    const { ob } = await outbox();
    const r = await serve(() => ({ status: 410 }));
    const wh = new Webhook({ url: r.url, secret: SECRET });
    await ob.store("e1", r.url, enc("{}"), { owner: "me", lease: 90, delivery: wh.delivery() });
    const dead: string[] = [];
    const s = new Sender(ob, [SECRET], { owner: "me", onDead: (rec) => dead.push(rec.endId) });
    const rec = (await ob.renew("e1", "me", 90))!;
    const [res, nxt] = await s.send(rec);
    expect(res.outcome).toBe("dead");
    expect(nxt).toBeNull();
    expect(dead).toEqual(["e1"]);
    expect(await ob.get("e1")).toMatchObject({ status: "dead", attempts: 1, lastStatus: 410 });
    expect((await ob.attempts("e1")).map((a) => [a.outcome, a.statusCode])).toEqual([["dead", 410]]);
  });

  it("the row's own schedule decides; after its last attempt the report is dead", async () => {
    const { ob } = await outbox();
    const r = await serve(() => ({ status: 500 }));
    const wh = new Webhook({ url: r.url, secret: SECRET, schedule: [0, 1, 2], jitter: 0 });
    await ob.store("e1", r.url, enc("{}"), { owner: "me", lease: 90, delivery: wh.delivery() });
    const s = new Sender(ob, [SECRET], { owner: "me", clock: { time: () => 1000, sleep: async () => undefined } });
    const outs = [];
    for (let i = 0; i < 3; i++) {
      const rec = (await ob.renew("e1", "me", 90))!;
      const [res, nxt] = await s.send(rec, { keepLease: 90 });
      outs.push([res.outcome, nxt]);
    }
    expect(outs).toEqual([
      ["retry", 1001],
      ["retry", 1002],
      ["dead", null],
    ]);
    const rec = await ob.get("e1");
    expect(rec).toMatchObject({ status: "dead", attempts: 3 });
    expect(rec!.lastError).toMatch(/retries exhausted; last: HTTP 500/);
    expect((await ob.attempts("e1")).map((a) => a.outcome)).toEqual(["failed", "failed", "dead"]);
  });

  it("signs only with the secrets the row names; without them the row is deferred, not sent", async () => {
    const { ob } = await outbox();
    const r = await serve(() => ({ status: 200 }));
    await ob.store("e1", r.url, enc("{}"), { owner: "me", lease: 90, delivery: { keys: [keyId(SECRET2)] } });
    const s = new Sender(ob, [SECRET], { owner: "me", clock: { time: () => 5000, sleep: async () => undefined } });
    const [res, until] = await s.send((await ob.renew("e1", "me", 90))!);
    expect(res.outcome).toBe("retry");
    expect(until).toBe(5300);
    expect(r.got).toHaveLength(0);
    expect(await ob.get("e1")).toMatchObject({ status: "pending", attempts: 0, leaseOwner: null });
    const both = new Sender(ob, [SECRET, SECRET2], { owner: "me" });
    await both.send((await ob.renew("e1", "me", 90))!);
    expect(r.got).toHaveLength(1);
    expect(String(r.got[0]!.headers["webhook-signature"]).split(" ")).toHaveLength(1);
    new Verifier(SECRET2).verify(r.got[0]!.body, r.got[0]!.headers as Record<string, string>);
    expect((await ob.get("e1"))!.status).toBe("delivered");
  });

  it("a draft is sent under its own webhook-id", async () => {
    const { ob, tick } = await outbox();
    const r = await serve(() => ({ status: 200 }));
    await ob.saveDraft("e1", r.url, enc('{"complete":false}'), { owner: "gone", lease: 1 });
    tick(2);
    const [rec] = await ob.claim("me", { limit: 5, lease: 60 });
    await new Sender(ob, [SECRET], { owner: "me" }).send(rec!);
    expect(r.got[0]!.headers["webhook-id"]).toBe(draftKey("e1"));
  });
});
