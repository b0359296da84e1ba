/** `jobConfig` (the Node port of `endcall.job_config`): secrets stay server-side, destinations
 * are not the caller's choice. Job metadata may come from the candidate's own browser, so each
 * rule has a test that fails without it. */
import { inspect } from "node:util";
import { SignJWT } from "jose";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CLAIM_AUDIENCE,
  CLAIM_KEY,
  JobConfigError,
  ReportMeta,
  dispatchMetadata,
  jobConfig,
  parseNamedSecrets,
  urlAllowed,
  type JobConfig,
  type JobConfigOptions,
} from "../../src/agent/job_config.js";
import { DEFAULT_SCHEDULE } from "../../src/reports/webhook.js";

const DEFAULT_URL = "https://backend.example/session/end";
const DEFAULT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ACME = ["whsec_" + "A".repeat(32), "whsec_" + "B".repeat(32)]; // two: rotation
const GLOBEX = "whsec_" + "C".repeat(32);
const LEAKED = "whsec_" + "D".repeat(32);
const KEY = "k".repeat(40);
const ACME_URL = "https://acme.example/hooks/endcall";
const ATTACKER = "https://attacker.example/collect";

let env: Record<string, string | undefined>;
let errors: string[];

beforeEach(() => {
  env = {
    ENDCALL_WEBHOOK_URL: DEFAULT_URL,
    ENDCALL_WEBHOOK_SECRET: DEFAULT_SECRET,
    ENDCALL_WEBHOOK_SECRETS: `acme=${ACME[0]}, acme=${ACME[1]} globex=${GLOBEX}`,
    ENDCALL_DISPATCH_KEY: KEY,
  };
  errors = [];
  vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => void errors.push(args.map(String).join(" ")));
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

const meta = (fields: Record<string, unknown>): string => JSON.stringify(fields);
const config = (metadata: string | null, o: JobConfigOptions = {}): Promise<JobConfig> => jobConfig(metadata, { env, ...o });

function expectDefault(c: JobConfig): void {
  expect(c.webhook.url).toBe(DEFAULT_URL);
  expect(c.webhook.secrets).toEqual([DEFAULT_SECRET]);
  expect(c.webhook.schedule).toEqual(DEFAULT_SCHEDULE);
  expect(c.defaultDestination).toBe(true);
}

async function sign(claim: Record<string, unknown>, key = KEY, alg = "HS256"): Promise<string> {
  return new SignJWT(claim).setProtectedHeader({ alg }).sign(new TextEncoder().encode(key));
}
const now = (): number => Math.floor(Date.now() / 1000);

describe("secrets", () => {
  it("refuses a secret in the metadata and never uses it", async () => {
    const c = await config(meta({ webhook_url: ACME_URL, webhook_secret: LEAKED }), { allowUrls: ["https://acme.example/hooks/"] });
    expect(c.webhook.secrets).not.toContain(LEAKED);
    expectDefault(c); // the whole destination, URL included
    expect(c.refused).toHaveLength(1);
    expect(c.refused[0]).toMatch(/webhook_secret.*rotate/);
    expect(c.refused[0]).not.toContain(LEAKED);
    expect(errors.join("\n")).toContain("webhook_secret");
    expect(errors.join("\n")).not.toContain(LEAKED);
    expect(c.reportMeta.configRefused).toEqual(c.refused);
    await expect(config(meta({ webhook_secret: LEAKED }), { strict: true })).rejects.toThrow(JobConfigError);
  });

  it("refuses a secret in a signed claim too (a JWT is not encrypted)", async () => {
    const c = await config(meta({ [CLAIM_KEY]: await sign({ aud: CLAIM_AUDIENCE, exp: now() + 60, webhook_secret: LEAKED }) }));
    expect(c.signed).toBe(true);
    expectDefault(c);
    expect(c.refused.some((r) => r.includes("dispatch claim carries a webhook_secret"))).toBe(true);
  });

  it("picks a named secret of the worker (rotation: both), from the env, a map, an object or a resolver", async () => {
    const c = await config(meta({ webhook_secret_id: "acme" }));
    expect(c.webhook.secrets).toEqual(ACME);
    expect(c.webhook.url).toBe(DEFAULT_URL);
    expect(c.refused).toEqual([]);
    expect((await config(meta({ webhook_secret_id: "x" }), { secrets: { x: GLOBEX } })).webhook.secrets).toEqual([GLOBEX]);
    expect((await config(meta({ webhook_secret_id: "x" }), { secrets: new Map([["x", [GLOBEX]]]) })).webhook.secrets).toEqual([GLOBEX]);
    const asked: string[] = [];
    const vault = async (id: string) => (asked.push(id), id === "globex-2" ? GLOBEX : null);
    expect((await config(meta({ webhook_secret_id: "globex-2" }), { secrets: vault })).webhook.secrets).toEqual([GLOBEX]);
    expect(asked).toEqual(["globex-2"]);
  });

  it("refuses an unknown, malformed or inherited secret id", async () => {
    const c = await config(meta({ webhook_url: ACME_URL, webhook_secret_id: "initech" }), { allowUrls: [ACME_URL] });
    expectDefault(c); // not the allowed URL signed with another secret
    expect(c.refused).toHaveLength(1);
    expect(c.refused[0]).toMatch(/"initech" is unknown.*ENDCALL_WEBHOOK_SECRETS/);
    expect(errors.join("\n")).toContain("initech");
    expect(errors.join("\n")).toContain(`goes to the default destination ${DEFAULT_URL}`);
    for (const id of ["constructor", "toString", "__proto__", "../acme", "", 7]) {
      for (const secrets of [undefined, { x: GLOBEX }]) {
        const r = await config(meta({ webhook_secret_id: id }), secrets ? { secrets } : {});
        expectDefault(r);
        expect(r.refused).toHaveLength(1);
      }
    }
    const failing = await config(meta({ webhook_secret_id: "acme" }), {
      secrets: () => {
        throw new Error("vault down");
      },
    });
    expectDefault(failing);
    expect(failing.refused[0]).toContain("could not be resolved");
    await expect(config(meta({ webhook_secret_id: "initech" }), { strict: true })).rejects.toThrow(/initech/);
  });

  it("fails every job alike when the worker's own secrets are malformed", async () => {
    env.ENDCALL_WEBHOOK_SECRETS = `acme=${ACME[0]} ${GLOBEX}`;
    const err = await config("").catch((e: Error) => e);
    expect(err).toBeInstanceOf(JobConfigError);
    expect(String(err)).toContain("entry #2 is not id=whsec_");
    expect(String(err)).not.toContain(GLOBEX);
    env.ENDCALL_WEBHOOK_SECRETS = "acme=whsec_short";
    await expect(config("")).rejects.toThrow(/"acme" is not usable/);
    await expect(config(meta({ webhook_secret_id: "x" }), { secrets: { x: "not-a-secret" } })).rejects.toThrow(/"x"/);
    expect(parseNamedSecrets(`a=${GLOBEX},a=${ACME[0]}`)).toEqual(new Map([["a", [GLOBEX, ACME[0]]]]));
  });
});

describe("URLs", () => {
  it("sends a URL not allowed to the default destination, loudly", async () => {
    const c = await config(meta({ webhook_url: ATTACKER, webhook_secret_id: "acme", report_meta: { k: "v" } }), { room: "interview-1" });
    expectDefault(c);
    expect(c.refused).toHaveLength(1);
    expect(c.refused[0]).toContain(ATTACKER);
    expect(c.refused[0]).toContain("ENDCALL_WEBHOOK_URL_ALLOW");
    expect(c.refused[0]).toContain("ENDCALL_DISPATCH_KEY");
    const logged = errors.join("\n");
    expect(logged).toContain(ATTACKER);
    expect(logged).toContain("interview-1");
    expect(logged).toContain(`goes to the default destination ${DEFAULT_URL}`);
    expect(c.reportMeta.configRefused).toEqual(c.refused);
    await expect(config(meta({ webhook_url: ATTACKER }), { strict: true })).rejects.toThrow(/attacker\.example/);
    delete env.ENDCALL_WEBHOOK_URL; // nowhere safe: the job fails at its start
    await expect(config(meta({ webhook_url: ATTACKER }))).rejects.toThrow(/ENDCALL_WEBHOOK_URL.*attacker\.example/);
  });

  it("uses an allowed URL with the named or the default secret", async () => {
    env.ENDCALL_WEBHOOK_URL_ALLOW = "https://acme.example/hooks/, globex.example";
    const c = await config(meta({ webhook_url: ACME_URL, webhook_secret_id: "acme" }));
    expect([c.webhook.url, c.webhook.secrets]).toEqual([ACME_URL, ACME]);
    expect([c.defaultDestination, c.signed, c.refused]).toEqual([false, false, []]);
    const other = await config(meta({ webhook_url: "https://globex.example/h" }));
    expect([other.url, other.webhook.secrets]).toEqual(["https://globex.example/h", [DEFAULT_SECRET]]);
    const extra = "http://127.0.0.1:8080/hook";
    expect((await config(meta({ webhook_url: extra }), { allowUrls: [extra] })).url).toBe(extra);
    expectDefault(await config(meta({ webhook_url: extra })));
    // the default URL itself is always allowed
    expect((await config(meta({ webhook_url: DEFAULT_URL, webhook_secret_id: "acme" }))).webhook.secrets).toEqual(ACME);
  });

  const cases: Array<[string, string, boolean]> = [
    ["https://acme.example/hooks/", "https://acme.example/hooks/endcall", true],
    ["https://acme.example/hooks/", "https://ACME.example:443/hooks/x?y=1", true],
    ["https://acme.example/hooks", "https://acme.example/hooks", true],
    ["https://acme.example/hooks", "https://acme.example/hooks/a", true],
    ["https://acme.example/hooks", "https://acme.example/hooks-evil", false],
    ["https://acme.example/hooks/", "https://acme.example/hooks/../admin", false],
    ["https://acme.example/hooks/", "https://acme.example/hooks/%2e%2e/admin", false],
    ["https://acme.example/hooks/", "https://acme.example/hooks/%2E./admin", false],
    ["https://acme.example/hooks/", "https://acme.example/hooks/a%2f..%2fb", false],
    ["https://acme.example/hooks/", "https://acme.example/hooks/./x", false],
    ["https://acme.example/hooks/", "https://acme.example/hooks\\..\\admin", false],
    ["https://acme.example", "https://acme.example.attacker.example/", false],
    ["https://acme.example", "https://acme.example/anything", true],
    ["https://acme.example/", "http://acme.example/", false],
    ["https://acme.example/", "https://acme.example:8443/", false],
    ["https://acme.example/", "https://acme%2eexample/", false],
    ["https://acme.example/", "https://acme.example./", false],
    ["http://127.0.0.1:8080/h", "http://127.0.0.1:8080/h", true],
    ["http://127.0.0.1:8080/h", "http://127.0.0.1:8081/h", false],
    ["http://127.0.0.1:8080/h", "http://0x7f.1:8080/h", false],
    ["acme.example", "https://acme.example/x", true],
    ["acme.example", "http://acme.example/x", false],
    ["acme.example", "https://sub.acme.example/x", false],
    ["acme.example", "https://acme.example:8443/x", false],
    ["acme.example:8443", "https://acme.example:8443/x", true],
    ["*.acme.example", "https://eu.acme.example/x", true],
    ["*.acme.example", "https://acme.example/x", false],
    ["*.acme.example", "https://evilacme.example/x", false],
    ["[::1]:8443", "https://[::1]:8443/x", true],
    ["[::1]:8443", "https://[0:0:0:0:0:0:0:1]:8443/x", false],
  ];
  it.each(cases)("allow-list entry %s, url %s: %s", (entry, url, allowed) => {
    expect(urlAllowed(url, [entry])).toBe(allowed);
  });

  it("refuses unusable URLs without failing the job", async () => {
    for (const url of ["ftp://acme.example/x", "https://user:pw@acme.example/hooks/x", "https://acme.example/hooks/x#f", " https://acme.example/hooks/x", 42]) {
      const c = await config(meta({ webhook_url: url }), { allowUrls: ["acme.example"] });
      expectDefault(c);
      expect(c.refused).toHaveLength(1);
    }
  });

  it("fails the job for a malformed allow-list entry (the worker's mistake)", async () => {
    env.ENDCALL_WEBHOOK_URL_ALLOW = "ftp://acme.example/";
    await expect(config("")).rejects.toThrow(/ENDCALL_WEBHOOK_URL_ALLOW/);
    delete env.ENDCALL_WEBHOOK_URL_ALLOW;
    await expect(config("", { allowUrls: ["acme.example/path"] })).rejects.toThrow(/neither a URL prefix/);
    await expect(config("", { allowUrls: ["https://acme.example/h?x=1"] })).rejects.toThrow(/\?query/);
    await expect(config("", { allowUrls: ["https:acme.example/h"] })).rejects.toThrow(JobConfigError);
  });

  it("refuses an unsigned schedule but keeps an allowed URL", async () => {
    const c = await config(meta({ webhook_url: ACME_URL, webhook_schedule: [31_536_000] }), { allowUrls: [ACME_URL] });
    expect(c.url).toBe(ACME_URL);
    expect(c.webhook.schedule).toEqual(DEFAULT_SCHEDULE);
    expect(c.refused[0]).toContain("webhook_schedule is honoured only in a dispatch claim");
  });
});

describe("dispatch claims", () => {
  it("accepts a signed claim with its URL, secret id, schedule and report_meta", async () => {
    const text = await dispatchMetadata({
      webhookUrl: ACME_URL,
      webhookSecretId: "acme",
      webhookSchedule: [0, 5, 10],
      reportMeta: { company_id: "c-7", test_id: "t-42" },
      room: "interview-1",
      extra: { scenario: { agent_ends: true } },
      env,
    });
    const doc = JSON.parse(text) as Record<string, unknown>;
    expect(doc.scenario).toEqual({ agent_ends: true });
    const c = await config(text, { room: "interview-1" });
    expect([c.url, c.webhook.secrets, c.webhook.schedule]).toEqual([ACME_URL, ACME, [0, 5, 10]]);
    expect([c.signed, c.defaultDestination, c.refused]).toEqual([true, false, []]);
    expect(c.reportMeta.fields).toEqual({ company_id: "c-7", test_id: "t-42" });
    expect([c.reportMeta.source, c.annotationsSource]).toEqual(["signed", "signed"]);
  });

  it("lets a claim decide over plain fields", async () => {
    const doc = JSON.parse(await dispatchMetadata({ webhookUrl: ACME_URL, reportMeta: { company_id: "c-7" }, env })) as Record<string, unknown>;
    Object.assign(doc, { webhook_url: ATTACKER, webhook_schedule: [0], report_meta: { company_id: "c-attacker", note: "hi" } });
    const c = await config(JSON.stringify(doc));
    expect(c.url).toBe(ACME_URL);
    expect(c.webhook.schedule).toEqual(DEFAULT_SCHEDULE);
    expect(c.reportMeta.fields).toEqual({ company_id: "c-7", note: "hi" });
    expect(c.reportMeta.sourceOf("company_id")).toBe("signed");
    expect(c.annotationsSource).toBe("unsigned"); // "note" is nobody's signed word
  });

  const claim = async (fields: Record<string, unknown>, key = KEY): Promise<string> => {
    const body: Record<string, unknown> = { aud: CLAIM_AUDIENCE, exp: now() + 600, webhook_url: ATTACKER, ...fields };
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    return meta({ [CLAIM_KEY]: await sign(body, key) });
  };
  const refusedClaims: Array<[string, () => Promise<string>, string]> = [
    ["wrong key", () => claim({}, "w".repeat(40)), "does not verify with ENDCALL_DISPATCH_KEY"],
    ["expired", () => claim({ exp: now() - 3600 }), "has expired"],
    ["no exp", () => claim({ exp: undefined }), "not valid"],
    ["no aud", () => claim({ aud: undefined }), "not valid"],
    ["other aud", () => claim({ aud: "livekit" }), "not valid"],
    ["aud list with a number", () => claim({ aud: [CLAIM_AUDIENCE, 7] }), "not valid"],
    ["not yet valid", () => claim({ nbf: now() + 3600 }), "not valid"],
    ["sub not a string", () => claim({ sub: 7 }), "not valid"],
    ["other room", () => claim({ room: "interview-other" }), 'is for room "interview-other"'],
    ["not a string", async () => meta({ [CLAIM_KEY]: 42 }), "must be a JWT"],
    ["junk", async () => meta({ [CLAIM_KEY]: "not.a.jwt" }), "not valid"],
    ["alg none", async () => meta({ [CLAIM_KEY]: unsecured({ aud: CLAIM_AUDIENCE, exp: now() + 60, webhook_url: ATTACKER }) }), "not valid"],
  ];
  it.each(refusedClaims)("refuses a claim: %s", async (_name, make, why) => {
    const c = await config(await make(), { room: "interview-1" });
    expect(c.signed).toBe(false);
    expectDefault(c);
    expect(c.refused[0]).toContain(why);
    expect(errors.join("\n")).toContain(why);
  });

  it("refuses a tampered claim", async () => {
    const token = (JSON.parse(await dispatchMetadata({ webhookUrl: ACME_URL, env })) as Record<string, string>)[CLAIM_KEY]!;
    const [header, , signature] = token.split(".");
    const forged = Buffer.from(JSON.stringify({ aud: CLAIM_AUDIENCE, exp: 2 ** 31, webhook_url: ATTACKER })).toString("base64url");
    const c = await config(meta({ [CLAIM_KEY]: `${header}.${forged}.${signature}` }));
    expectDefault(c);
    expect(c.refused[0]).toContain("does not verify");
  });

  it("refuses a claim when the worker has no dispatch key", async () => {
    const text = await dispatchMetadata({ webhookUrl: ACME_URL, env });
    delete env.ENDCALL_DISPATCH_KEY;
    const c = await config(text);
    expectDefault(c);
    expect(c.refused[0]).toContain("no ENDCALL_DISPATCH_KEY");
  });

  it("refuses a room-bound claim when the job's room is not given", async () => {
    const c = await config(await dispatchMetadata({ webhookUrl: ACME_URL, room: "interview-1", env }));
    expectDefault(c);
    expect(c.refused[0]).toContain("was not told the job's room");
  });

  it("wants a strong dispatch key that is not the LiveKit API secret", async () => {
    await expect(config("", { dispatchKey: "short" })).rejects.toThrow(/at least 32 bytes/);
    env.ENDCALL_DISPATCH_KEY = "k".repeat(31);
    await expect(config("")).rejects.toThrow(/at least 32 bytes/);
    env.ENDCALL_DISPATCH_KEY = KEY;
    env.LIVEKIT_API_SECRET = KEY;
    await expect(config("")).rejects.toThrow(/LiveKit API secret/);
    await expect(dispatchMetadata({ webhookUrl: ACME_URL, env })).rejects.toThrow(/LiveKit API secret/);
  });

  it("accepts a claim issued by a clock a little ahead (only exp decides), within 30 s leeway of exp", async () => {
    const ahead = await config(await dispatchMetadata({ webhookUrl: ACME_URL, now: Date.now() / 1000 + 300, env }));
    expect([ahead.signed, ahead.url]).toEqual([true, ACME_URL]);
    const justExpired = await config(await claim({ exp: now() - 10, webhook_url: ACME_URL }));
    expect(justExpired.signed).toBe(true);
  });

  it("refuses a bad schedule in a claim but keeps its destination", async () => {
    const c = await config(meta({ [CLAIM_KEY]: await sign({ aud: CLAIM_AUDIENCE, exp: now() + 60, webhook_url: ACME_URL, webhook_schedule: [-1] }) }));
    expect([c.url, c.webhook.schedule]).toEqual([ACME_URL, DEFAULT_SCHEDULE]);
    expect(c.refused[0]).toContain("webhook_schedule must be");
  });
});

function unsecured(claim: Record<string, unknown>): string {
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
  return `${b64({ alg: "none", typ: "JWT" })}.${b64(claim)}.`;
}

describe("report_meta", () => {
  it("marks plain fields unsigned, a claim's signed, none code", async () => {
    const plain = await config(meta({ report_meta: { company_id: "c-attacker" } }));
    expect([plain.refused, plain.annotationsSource, plain.reportMeta.fields]).toEqual([[], "unsigned", { company_id: "c-attacker" }]);
    const signed = await config(await dispatchMetadata({ reportMeta: { company_id: "c-7" }, env }));
    expect(signed.annotationsSource).toBe("signed");
    expect((await config(null)).annotationsSource).toBe("code");
    expect((await config(meta({ report_meta: {} }))).annotationsSource).toBe("code");
    expect(signed.reportMeta.merge(new ReportMeta({ note: "x" })).source).toBe("unsigned");
    expect(new ReportMeta({ a: 1 }).source).toBe("unsigned"); // marking is never forgotten
    expect(new ReportMeta({ a: 1 }, { source: "code" }).source).toBe("code");
  });

  it.each([
    ["not JSON", "{"],
    ["not an object", "[1]"],
    ["NaN (Python's json takes it)", '{"report_meta": {"x": NaN}}'],
    ["meta not an object", meta({ report_meta: [1] })],
    ["meta too big", meta({ report_meta: { k: "x".repeat(5000) } })],
    ["meta with an empty key", meta({ report_meta: { "": 1 } })],
    ["meta with a lone surrogate", '{"report_meta": {"k": "\\ud800"}}'],
  ])("refuses bad metadata without failing the job: %s", async (_name, metadata) => {
    const c = await config(metadata);
    expectDefault(c);
    expect(c.refused).toHaveLength(1);
    expect(c.reportMeta.fields).toEqual({});
  });

  it("keeps the claim's report_meta when the plain one would overflow the merge", async () => {
    const text = await dispatchMetadata({ reportMeta: { company_id: "c-7", pad: "y".repeat(3000) }, env });
    const doc = { ...(JSON.parse(text) as object), report_meta: { note: "x".repeat(2000) } };
    const c = await config(JSON.stringify(doc));
    expect(Object.keys(c.reportMeta.fields)).toEqual(["company_id", "pad"]);
    expect(c.annotationsSource).toBe("signed");
    expect(c.refused).toHaveLength(1);
  });

  it("is not fooled by __proto__ keys", async () => {
    const c = await config('{"__proto__": {"webhook_url": "https://attacker.example/x"}, "report_meta": {"__proto__": {"a": 1}}}');
    expectDefault(c);
    expect(c.refused).toEqual([]);
    expect(Object.getPrototypeOf(c.reportMeta.fields)).toBe(Object.prototype);
    expect(Object.keys(c.reportMeta.fields)).toEqual(["__proto__"]);
    expect(JSON.stringify(c.reportMeta)).toBe('{"__proto__":{"a":1}}');
  });
});

describe("defaults and failures", () => {
  it("fails at start with no default and no destination, but a claim needs no default", async () => {
    delete env.ENDCALL_WEBHOOK_SECRET;
    await expect(config("")).rejects.toThrow(/no webhook secret/);
    const c = await config(await dispatchMetadata({ webhookUrl: ACME_URL, webhookSecretId: "acme", env }));
    expect([c.signed, c.url, c.webhook.secrets]).toEqual([true, ACME_URL, ACME]);
  });

  it("takes defaults and webhook settings from options", async () => {
    const c = await config("", { defaultUrl: "https://other.example/x", defaultSecret: [GLOBEX], webhook: { timeout: 5 } });
    expect([c.url, c.webhook.secrets, c.webhook.timeout, c.defaultDestination]).toEqual(["https://other.example/x", [GLOBEX], 5, true]);
  });

  it("never shows its secrets when logged or serialized", async () => {
    const c = await config(meta({ webhook_secret_id: "acme" }));
    expect(inspect(c, { depth: 10 })).not.toContain(ACME[0]);
    expect(JSON.stringify(c)).not.toContain(ACME[0]);
    expect(JSON.stringify(c)).toContain(DEFAULT_URL);
    expect(c.webhook.secrets).toEqual(ACME); // but the webhook has them
  });

  it("strict refuses any refusal", async () => {
    await expect(config(meta({ report_meta: [1] }), { strict: true })).rejects.toThrow(/job configuration refused/);
    expect((await config(meta({ webhook_secret_id: "acme" }), { strict: true })).webhook.secrets).toEqual(ACME);
  });
});
