import { readFileSync } from "node:fs";
import { Webhook as Verifier } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { sign, signedHeaders } from "../../src/reports/signing.js";
import { Webhook, keyId, parseSecrets, validateSecret, webhookFromEnv } from "../../src/reports/webhook.js";
import { SECRET, SECRET2, py } from "./helpers.js";

const enc = (s: string) => new TextEncoder().encode(s);

// computed with Python's endcall.reports.webhook.sign (the reference standardwebhooks package)
const VECTORS: Array<{ id: string; ts: number; body: Uint8Array; secrets: string[]; sig: string }> = [
  { id: "e1", ts: 1700000000, body: enc('{"type":"session.ended"}'), secrets: [SECRET], sig: "v1,icTTC5XBhKpeTjwszaZGGVggCp70bbFZThlLXMuNB0M=" },
  {
    id: "e1.draft",
    ts: 1700000000,
    body: enc('{"a":"é"}'),
    secrets: [SECRET, SECRET2],
    sig: "v1,K3q7I64QSfXEInbh63X28gb7gf34HF8s+ix+pYt8M0U= v1,WyahVf+KucbQc+Wgv7F8mFiQxHcrF57qA5k7yLX+hac=",
  },
  // a secret without its base64 padding (Python accepts it on both of its signing paths)
  { id: "e", ts: 1, body: enc("{}"), secrets: ["whsec_AAECAwQFBgcICQoLDA0ODxA"], sig: "v1,cUI+uOOYdPuVERm336LnA7Qh71Zwaic+dLwWhTZg470=" },
  { id: "e", ts: 1, body: new Uint8Array([0xff]), secrets: ["whsec_AAECAwQFBgcICQoLDA0ODxA"], sig: "v1,rEyl99MTBJ7KdqYrZllpiczcUkW6+za/JlwVjugpfPk=" },
  { id: "e2", ts: 1700000001, body: new Uint8Array([0xff, 0xfe, ...enc(" not utf8")]), secrets: [SECRET2], sig: "v1,dV6dTrprLB9oSJbbm7QlKkShMQTeuXptuZtoLIETnSY=" },
];

describe("Standard Webhooks signing", () => {
  it("matches Python's signatures byte for byte (one secret, rotation, a body that is not UTF-8)", () => {
    for (const v of VECTORS) expect(sign(v.id, v.ts, v.body, v.secrets)).toBe(v.sig);
  });

  it("matches Python on every report vector's raw body", () => {
    const cases = JSON.parse(readFileSync("/work/main/tests/vectors/report.json", "utf-8")) as Array<{ input?: string; input_b64?: string }>;
    const bodies = cases.slice(0, 12).map((c) => (c.input_b64 ? Buffer.from(c.input_b64, "base64") : Buffer.from(c.input ?? "")));
    const pySigs = py(
      "import json, base64\nfrom endcall.reports.webhook import sign\n" +
        `bodies = [base64.b64decode(b) for b in ${JSON.stringify(bodies.map((b) => b.toString("base64")))}]\n` +
        `print(json.dumps([sign("id_" + str(i), 1700000000 + i, b, [${JSON.stringify(SECRET)}]) for i, b in enumerate(bodies)]))`,
    );
    const expected = JSON.parse(pySigs) as string[];
    bodies.forEach((b, i) => expect(sign(`id_${i}`, 1700000000 + i, new Uint8Array(b), [SECRET])).toBe(expected[i]));
  });

  it("headers verify with the standardwebhooks package; a changed byte or id does not", () => {
    const body = enc('{"type":"session.ended","end_id":"e1"}');
    const now = Math.floor(Date.now() / 1000);
    const h = signedHeaders("e1", body, [SECRET2, SECRET], now, { "X-Extra": "1", "Webhook-Id": "forged" });
    expect(h["webhook-id"]).toBe("e1"); // extra headers never override the signed ones
    expect(h["x-extra"]).toBe("1");
    expect(h["content-type"]).toBe("application/json");
    for (const s of [SECRET, SECRET2]) new Verifier(s).verify(body, h);
    const changed = new Uint8Array(body);
    changed[3] = changed[3]! ^ 1;
    expect(() => new Verifier(SECRET).verify(changed, h)).toThrow(/signature/i);
    expect(() => new Verifier(SECRET).verify(body, { ...h, "webhook-id": "e2" })).toThrow(/signature/i);
    const other = "whsec_" + Buffer.alloc(24, 7).toString("base64");
    expect(() => new Verifier(other).verify(body, h)).toThrow(/signature/i);
  });

  it("key ids are Python's", () => {
    expect([keyId(SECRET), keyId(SECRET2)]).toEqual(["k1_67c526c31cbfabb8", "k1_a80115269111cb88"]);
  });
});

describe("the Webhook config", () => {
  it("checks everything at construction", () => {
    const ok = { url: "https://example.com/hook", secret: SECRET };
    expect(new Webhook(ok).delivery()).toEqual({
      schedule: [0, 5, 30, 120, 600, 1800, 3600, 7200, 21600, 43200, 86400],
      jitter: 0.1,
      timeout: 15,
      keys: ["k1_67c526c31cbfabb8"],
    });
    expect(new Webhook(ok).inProcessWindow).toBe(60);
    expect(() => new Webhook({ ...ok, url: "ftp://x/" })).toThrow(/http/);
    expect(() => new Webhook({ ...ok, url: "https://u:p@x/" })).toThrow(/user:password/);
    expect(() => new Webhook({ ...ok, url: "https://x/#f" })).toThrow(/fragment/);
    expect(() => new Webhook({ ...ok, url: " https://x/" })).toThrow(/whitespace/);
    expect(() => new Webhook({ ...ok, secret: "whsec_short" })).toThrow(/secret #1/);
    expect(() => new Webhook({ ...ok, secret: "whsec_!!notbase64!!" })).toThrow(/base64/);
    expect(() => new Webhook({ ...ok, secret: "" })).toThrow(/at least one/);
    expect(() => new Webhook({ ...ok, timeout: 0 })).toThrow(/timeout/);
    expect(() => new Webhook({ ...ok, timeout: 301 })).toThrow(/timeout/);
    expect(() => new Webhook({ ...ok, schedule: [] })).toThrow(/schedule/);
    expect(() => new Webhook({ ...ok, schedule: [0, -1] })).toThrow(/schedule/);
    expect(() => new Webhook({ ...ok, jitter: 1 })).toThrow(/jitter/);
    expect(() => new Webhook({ ...ok, inProcessWindow: -1 })).toThrow(/in_process_window/);
    expect(parseSecrets(` ${SECRET}, ${SECRET2}\n`)).toEqual([SECRET, SECRET2]);
    expect(() => validateSecret(SECRET2.replace(/=+$/, ""))).not.toThrow(); // padding optional
  });

  it("reads ENDCALL_WEBHOOK_URL and ENDCALL_WEBHOOK_SECRET", () => {
    const w = webhookFromEnv({ ENDCALL_WEBHOOK_URL: "http://h/x", ENDCALL_WEBHOOK_SECRET: `${SECRET},${SECRET2}` });
    expect(w.url).toBe("http://h/x");
    expect(w.secrets).toEqual([SECRET, SECRET2]);
    expect(() => webhookFromEnv({ ENDCALL_WEBHOOK_SECRET: SECRET })).toThrow(/ENDCALL_WEBHOOK_URL/);
    expect(() => webhookFromEnv({ ENDCALL_WEBHOOK_URL: "http://h/" })).toThrow(/ENDCALL_WEBHOOK_SECRET/);
  });
});
