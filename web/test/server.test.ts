/** `endcall/server`: `mintEndToken` against the shared end-token vectors (byte for byte) and
 * against the Python verifier (`endcall.server.tokens.verify_token`, in a child process when
 * ../.venv exists), and `endProxy` in front of a real HTTP server on 127.0.0.1 standing in for
 * `endcall serve`. */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { endCall } from "endcall";
import { FakeRoom } from "endcall/testing";
import { endProxy, mintEndToken, type MintEndTokenOptions } from "../src/server";

const ROOT = resolve(__dirname, "../..");
const PYTHON = resolve(ROOT, ".venv/bin/python");
const VECTORS = resolve(ROOT, "tests/vectors/tokens/end_token.json");

interface MintCase {
  name: string;
  kind: "mint";
  input: { room: string; identity: string; ttl: number; api_key: string; api_secret: string; now: number; jti: string };
  expect: { token: string; claims: Record<string, unknown> };
}
const mintCases = (JSON.parse(readFileSync(VECTORS, "utf-8")) as Array<MintCase | { kind: "verify" }>).filter(
  (c): c is MintCase => c.kind === "mint",
);

const fromCase = ({ input }: MintCase): MintEndTokenOptions => ({
  room: input.room,
  identity: input.identity,
  ttl: input.ttl,
  apiKey: input.api_key,
  apiSecret: input.api_secret,
  now: new Date(input.now * 1000 + 750), // Python truncates time.time() to whole seconds too
  jti: input.jti,
});

describe("mintEndToken", () => {
  it("the vectors have mint cases", () => {
    expect(mintCases.length).toBeGreaterThanOrEqual(8);
  });

  it.each(mintCases.map((c) => [c.name, c] as const))("vector: %s", async (_name, c) => {
    expect(await mintEndToken(fromCase(c))).toBe(c.expect.token);
  });

  it("claims in Python's order, a fresh 32-hex jti and the clock by default", async () => {
    const before = Math.floor(Date.now() / 1000);
    const token = await mintEndToken({ room: "r", identity: "i", ttl: 60, apiKey: "k", apiSecret: "s".repeat(32) });
    const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf-8")) as Record<string, unknown>;
    expect(Object.keys(claims)).toEqual(["iss", "aud", "sub", "room", "iat", "nbf", "exp", "jti"]);
    expect(claims).toMatchObject({ iss: "k", aud: "endcall", sub: "i", room: "r" });
    expect(claims.iat).toBeGreaterThanOrEqual(before);
    expect(claims.nbf).toBe(claims.iat);
    expect(claims.exp).toBe((claims.iat as number) + 60);
    expect(claims.jti).toMatch(/^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    const other = await mintEndToken({ room: "r", identity: "i", ttl: 60, apiKey: "k", apiSecret: "s".repeat(32) });
    expect(other).not.toBe(token);
  });

  it("refuses what Python's mint_end_token refuses", async () => {
    const good: MintEndTokenOptions = { room: "r", identity: "i", ttl: 60, apiKey: "k", apiSecret: "secret" };
    await expect(mintEndToken({ ...good, room: "" })).rejects.toThrow(TypeError);
    await expect(mintEndToken({ ...good, identity: "" })).rejects.toThrow(TypeError);
    await expect(mintEndToken({ ...good, apiKey: "" })).rejects.toThrow(TypeError);
    await expect(mintEndToken({ ...good, apiSecret: "" })).rejects.toThrow(TypeError);
    for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(mintEndToken({ ...good, ttl })).rejects.toThrow(RangeError);
    }
    await expect(mintEndToken({ ...good, now: new Date(Number.NaN) })).rejects.toThrow(RangeError);
  });
});

const VERIFY_PY = `
import json, sys
sys.path.insert(0, "py")
from endcall.server.tokens import TokenError, verify_token
out = []
for case in json.load(sys.stdin):
    try:
        p = verify_token(case["token"], room=case["room"], api_key=case["api_key"], api_secret=case["api_secret"])
        out.append({"ok": True, "identity": p.identity, "room": p.room, "kind": p.kind})
    except TokenError as exc:
        out.append({"ok": False, "reason": exc.reason})
print(json.dumps(out))
`;

describe("Python verifies what mintEndToken mints", () => {
  it.skipIf(!existsSync(PYTHON))(`verify_token accepts them, for their room only (needs ${PYTHON})`, async () => {
    const key = { apiKey: "APIjs", apiSecret: "js-minted-secret-0123456789abcdefghij" };
    const people = [
      ["interview-1", "candidate-42"],
      ["салон-1", "José 👋"],
      ["room/\\x", 'a"b\\c\n\x7f'],
    ] as const;
    const cases = [];
    for (const [room, identity] of people) {
      const token = await mintEndToken({ room, identity, ttl: 600, ...key });
      cases.push({ token, room, api_key: key.apiKey, api_secret: key.apiSecret });
    }
    const token = cases[0]!.token;
    cases.push({ token, room: "interview-2", api_key: key.apiKey, api_secret: key.apiSecret }); // another room
    cases.push({ token, room: "interview-1", api_key: key.apiKey, api_secret: "another-secret-0123456789abcdefghij" });
    cases.push({ token, room: "interview-1", api_key: "APIother", api_secret: key.apiSecret });
    const run = spawnSync(PYTHON, ["-c", VERIFY_PY], { input: JSON.stringify(cases), encoding: "utf-8", cwd: ROOT });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual([
      ...people.map(([room, identity]) => ({ ok: true, identity, room, kind: "end" })),
      { ok: false, reason: "forbidden" },
      { ok: false, reason: "invalid" },
      { ok: false, reason: "invalid" },
    ]);
  }, 60_000);
});

interface Seen {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingMessage["headers"];
  body: Buffer;
}

/** Stands in for `endcall serve`: records each request, answers as `answer` says. */
class Upstream {
  readonly seen: Seen[] = [];
  answer: (seen: Seen, res: ServerResponse) => void = (_seen, res) => {
    res.writeHead(202, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ id: "r1", status: "accepted", acked_by: "agent", end_id: "e_1", reason: "customer-ended-call" }));
  };
  private server: Server | undefined;
  base = "";

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const seen = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) };
        this.seen.push(seen);
        this.answer(seen, res);
      });
    });
    await new Promise<void>((done) => this.server!.listen(0, "127.0.0.1", done));
    this.base = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((done) => this.server?.close(done));
  }
}

let upstream: Upstream;
beforeEach(async () => {
  upstream = new Upstream();
  await upstream.start();
});
afterEach(async () => {
  await upstream.stop();
});

const post = (body: BodyInit | null, headers: Record<string, string> = {}, init: RequestInit = {}): Request =>
  new Request("https://app.example/v1/end", { method: "POST", body, headers, ...init });
const request = JSON.stringify({ type: "end.request", v: 1, id: "r1", reason: "customer-ended-call", room: "interview-1" });

describe("endProxy", () => {
  it("forwards body, Authorization and Content-Type; X-Forwarded-For only from getClientAddress", async () => {
    const handler = endProxy({ target: upstream.base, getClientAddress: () => "203.0.113.7" });
    const response = await handler(
      post(request, {
        "Content-Type": "application/json",
        Authorization: "Bearer tok-1",
        "X-Forwarded-For": "6.6.6.6", // written by the client: never passed on
        Cookie: "session=secret",
      }),
    );
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ id: "r1", status: "accepted", acked_by: "agent", end_id: "e_1", reason: "customer-ended-call" });
    const seen = upstream.seen[0]!;
    expect(seen.method).toBe("POST");
    expect(seen.url).toBe("/v1/end");
    expect(seen.body.toString("utf-8")).toBe(request);
    expect(seen.headers.authorization).toBe("Bearer tok-1");
    expect(seen.headers["content-type"]).toBe("application/json");
    expect(seen.headers["x-forwarded-for"]).toBe("203.0.113.7");
    expect(seen.headers.cookie).toBeUndefined();
  });

  it("passes the server's status, body and Retry-After through unchanged", async () => {
    const body = '{"code":"rate_limited","message":"too many requests","id":"r1"}';
    upstream.answer = (_seen, res) => {
      res.writeHead(429, { "Content-Type": "application/json", "Retry-After": "7", "X-Internal": "no" });
      res.end(body);
    };
    const response = await endProxy({ target: upstream.base })(post(request, { "Content-Type": "application/json" }));
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("7");
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("x-internal")).toBeNull();
    expect(await response.text()).toBe(body);
  });

  it("the beacon's text/plain body goes on as it is, without a client address when none is known", async () => {
    const beacon = JSON.stringify({ ...JSON.parse(request), token: "tok-2" });
    const response = await endProxy({ target: upstream.base })(post(beacon, { "Content-Type": "text/plain;charset=UTF-8" }));
    expect(response.status).toBe(202);
    expect(upstream.seen[0]!.headers["content-type"]).toBe("text/plain;charset=UTF-8");
    expect(upstream.seen[0]!.headers["x-forwarded-for"]).toBeUndefined();
    expect(upstream.seen[0]!.headers.authorization).toBeUndefined();
    expect(upstream.seen[0]!.body.toString("utf-8")).toBe(beacon);
  });

  it("a client address that is not a bare IP address is not sent", async () => {
    for (const address of ["1.2.3.4, 5.6.7.8", "evil\r\nX: y", "", null]) {
      await endProxy({ target: upstream.base, getClientAddress: async () => address })(post(request));
    }
    expect(upstream.seen.map((s) => s.headers["x-forwarded-for"])).toEqual([undefined, undefined, undefined, undefined]);
    await endProxy({ target: upstream.base, getClientAddress: () => " 2001:db8::1 " })(post(request));
    expect(upstream.seen.at(-1)!.headers["x-forwarded-for"]).toBe("2001:db8::1");
    // a getClientAddress that throws: the end request still goes on, without the header
    const thrown = await endProxy({
      target: upstream.base,
      getClientAddress: () => {
        throw new Error("no address");
      },
    })(post(request));
    expect(thrown.status).toBe(202);
    expect(upstream.seen.at(-1)!.headers["x-forwarded-for"]).toBeUndefined();
  });

  it("target: a base URL gets /v1/end, a full /v1/end URL is kept", async () => {
    await endProxy({ target: `${upstream.base}/endcall/` })(post(request));
    await endProxy({ target: `${upstream.base}/endcall` })(post(request));
    await endProxy({ target: `${upstream.base}/v1/end` })(post(request));
    expect(upstream.seen.map((s) => s.url)).toEqual(["/endcall/v1/end", "/endcall/v1/end", "/v1/end"]);
  });

  it("413 payload_too_large for a body over the limit, declared or streamed; nothing forwarded", async () => {
    const big = "x".repeat(16 * 1024 + 1);
    // a Content-Length over the limit (as a server sees it): refused before reading
    const declared = await endProxy({ target: upstream.base })(post(big, { "Content-Length": String(big.length) }));
    expect(declared.status).toBe(413);
    expect(await declared.json()).toEqual({ code: "payload_too_large", message: "the body is 16385 bytes; the limit is 16384" });
    // no Content-Length: cut while reading
    const undeclared = await endProxy({ target: upstream.base })(post(big));
    expect(undeclared.status).toBe(413);
    expect(await undeclared.json()).toEqual({ code: "payload_too_large", message: "the body exceeds 16384 bytes" });
    const chunk = new TextEncoder().encode("y".repeat(1000));
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += 1;
        controller.enqueue(chunk); // endless
      },
    });
    const streamed = await endProxy({ target: upstream.base, maxBodyBytes: 4096 })(
      post(stream, {}, { duplex: "half" } as RequestInit),
    );
    expect(streamed.status).toBe(413);
    expect(await streamed.json()).toEqual({ code: "payload_too_large", message: "the body exceeds 4096 bytes" });
    expect(pulled).toBeLessThan(20);
    expect(upstream.seen).toEqual([]);
    // exactly the limit passes
    const exact = await endProxy({ target: upstream.base, maxBodyBytes: 5 })(post("12345"));
    expect(exact.status).toBe(202);
  });

  it("504 gateway_timeout when endcall serve does not answer in time", async () => {
    upstream.answer = () => {}; // never
    const started = Date.now();
    const response = await endProxy({ target: upstream.base, timeoutMs: 150 })(post(request));
    expect(response.status).toBe(504);
    expect(await response.json()).toEqual({ code: "gateway_timeout", message: "endcall serve did not answer within 150 ms" });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("502 bad_gateway when endcall serve cannot be reached", async () => {
    const down = upstream.base;
    await upstream.stop();
    const response = await endProxy({ target: down })(post(request));
    expect(response.status).toBe(502);
    expect((await response.json()) as { code: string }).toMatchObject({ code: "bad_gateway" });
  });

  it("408 request_timeout when the body does not arrive in time", async () => {
    const stream = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) });
    const response = await endProxy({ target: upstream.base, timeoutMs: 100 })(post(stream, {}, { duplex: "half" } as RequestInit));
    expect(response.status).toBe(408);
    expect((await response.json()) as { code: string }).toMatchObject({ code: "request_timeout" });
    expect(upstream.seen).toEqual([]);
  });

  it("405 for other methods; 500 (not a throw at import time) without a target", async () => {
    const get = await endProxy({ target: upstream.base })(new Request("https://app.example/v1/end"));
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const handler = endProxy({ target: process.env.ENDCALL_TEST_UNSET_URL }); // does not throw
    const response = await handler(post(request));
    expect(response.status).toBe(500);
    expect((await response.json()) as { code: string }).toMatchObject({ code: "internal" });
    expect((await endProxy({ target: "ftp://x/" })(post(request))).status).toBe(500);
  });

  it("the client going away does not cancel the forwarded request (a beacon never waits)", async () => {
    const controller = new AbortController();
    const handler = endProxy({ target: upstream.base });
    const pending = handler(post(request, { "Content-Type": "application/json" }, { signal: controller.signal }));
    controller.abort();
    expect((await pending).status).toBe(202);
    expect(upstream.seen).toHaveLength(1);
  });

  it("endCall's REST fallback through the proxy to the server", async () => {
    const handler = endProxy({ target: upstream.base, getClientAddress: () => "198.51.100.4" });
    const room = new FakeRoom("interview-9", "candidate-9"); // no agent: REST only
    const outcome = await endCall(room, {
      fallbackUrl: "https://app.example/v1/end",
      token: "tok-9",
      fetch: (input, init) => handler(new Request(input, init)),
    });
    expect(outcome).toMatchObject({ status: "accepted", via: "rest", ack: { acked_by: "agent", end_id: "e_1" } });
    const seen = upstream.seen[0]!;
    expect(seen.headers.authorization).toBe("Bearer tok-9");
    expect(seen.headers["x-forwarded-for"]).toBe("198.51.100.4");
    expect(JSON.parse(seen.body.toString("utf-8"))).toMatchObject({ type: "end.request", id: outcome.requestId, room: "interview-9" });
  });
});
