/**
 * `endcall/server`: helpers for JavaScript backends. Only Web APIs (`crypto.subtle`, `fetch`,
 * `Request`/`Response`, `TextEncoder`, `btoa`), so it runs in Node 20+, Deno, Bun and edge
 * runtimes (a Next.js route handler, Node or edge). No browser entry imports it.
 *
 * - `mintEndToken(...)`: the end token of Python's `endcall.mint_end_token`, byte for byte for the
 *   same inputs (the shared vectors in `tests/vectors/tokens/end_token.json` hold it to that).
 * - `endProxy({ target })`: a fetch-API route handler that forwards the browser's
 *   `POST /v1/end` (endCall's REST fallback and the tab-close beacon) to `endcall serve`.
 */

/** The `aud` of an end token (Python: `endcall.server.tokens.END_TOKEN_AUDIENCE`). */
export const END_TOKEN_AUDIENCE = "endcall";
/** The largest body `endcall serve` takes on `POST /v1/end` (Python: `MAX_BODY_BYTES`). */
export const MAX_END_BODY_BYTES = 16 * 1024;

export interface MintEndTokenOptions {
  /** The LiveKit room the token is for. */
  room: string;
  /** The participant's identity (the token's `sub`): the caller the fallback server sees. */
  identity: string;
  /** Lifetime in seconds, > 0 (rounded as Python's `round()` does, at least 1). */
  ttl: number;
  /** The LiveKit API key (`iss`). */
  apiKey: string;
  /** The LiveKit API secret: the HS256 key. Keep it on the server. */
  apiSecret: string;
  /** The issue time (default: now); `iat` and `nbf` are its Unix seconds. */
  now?: Date;
  /** The token id (default: a random UUID4's 32 hex digits, as Python's `uuid4().hex`). */
  jti?: string;
}

// pyjwt's header: sorted keys, compact
const HEADER = '{"alg":"HS256","typ":"JWT"}';
const encoder = new TextEncoder();

/**
 * An end token for `identity` in `room`, valid for `ttl` seconds: an HS256 JWT signed with the
 * LiveKit API secret, `{iss, aud: "endcall", sub, room, iat, nbf, exp, jti}` — exactly what
 * Python's `endcall.mint_end_token(room, identity, ttl, api_key=…, api_secret=…)` makes. Give it
 * to the browser (`useEndInterview({ token })`); `endcall serve` verifies it on `POST /v1/end`.
 * It grants nothing in LiveKit itself. Throws `TypeError`/`RangeError` for the inputs Python's
 * refuses with `ValueError`.
 */
export async function mintEndToken(options: MintEndTokenOptions): Promise<string> {
  const { room, identity, ttl, apiKey, apiSecret } = options;
  if (!room) throw new TypeError("room must not be empty");
  if (!identity) throw new TypeError("identity must not be empty");
  if (!apiKey || !apiSecret) throw new TypeError("apiKey and apiSecret must be set");
  if (/\p{Cs}/u.test(apiSecret)) throw new TypeError("apiSecret is not well-formed Unicode");
  if (!(ttl > 0) || !Number.isFinite(ttl)) throw new RangeError("ttl must be a positive number of seconds");
  // Python: now = int(time.time()); exp = now + max(1, round(ttl))
  const now = Math.trunc((options.now ?? new Date()).getTime() / 1000);
  const exp = now + Math.max(1, roundHalfEven(ttl));
  if (!Number.isSafeInteger(now) || !Number.isSafeInteger(exp)) throw new RangeError("now or ttl is out of range");
  const crypto = globalThis.crypto;
  const subtle = crypto?.subtle;
  if (!subtle) throw new Error("mintEndToken needs Web Crypto (globalThis.crypto.subtle): Node 20+, Deno, Bun or an edge runtime");
  const claims = {
    iss: apiKey,
    aud: END_TOKEN_AUDIENCE,
    sub: identity,
    room,
    iat: now,
    nbf: now,
    exp,
    jti: options.jti ?? crypto.randomUUID().replace(/-/g, ""),
  };
  const input = `${base64url(encoder.encode(HEADER))}.${base64url(encoder.encode(pythonJson(claims)))}`;
  const key = await subtle.importKey("raw", encoder.encode(apiSecret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const signature = await subtle.sign("HMAC", key, encoder.encode(input));
  return `${input}.${base64url(new Uint8Array(signature))}`;
}

/** Python's `round()` to an integer: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const rest = x - floor;
  return rest > 0.5 || (rest === 0.5 && floor % 2 !== 0) ? floor + 1 : floor;
}

/** `json.dumps(value, separators=(",", ":"))` as pyjwt encodes the claims: compact, and with
 * `ensure_ascii`: every character outside ` `…`~` escaped as lower-case `\uXXXX` (UTF-16). */
function pythonJson(value: unknown): string {
  return JSON.stringify(value).replace(/[^\x20-\x7e]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export interface EndProxyOptions {
  /**
   * Where `endcall serve` listens: its base URL (`http://endcall:8080`; `/v1/end` is appended)
   * or the full URL of its `POST /v1/end`. Read on each request, so a missing environment
   * variable at build time breaks nothing: requests then get a 500 saying so.
   */
  target: string | undefined;
  /** How long the whole request may take (the body arriving, then `endcall serve`'s answer);
   * default 10,000 ms. A slow body gets 408 `request_timeout`, a slow server 504 `gateway_timeout`. */
  timeoutMs?: number;
  /** The largest body forwarded (default 16,384 bytes, `endcall serve`'s own limit); a larger
   * one gets 413 `payload_too_large` without being forwarded. */
  maxBodyBytes?: number;
  /**
   * The client's IP address, sent on as `X-Forwarded-For` (only a bare IPv4/IPv6 address is
   * used), so `endcall serve`'s per-address rate limit sees the client and not this proxy. A
   * fetch-API `Request` does not carry the address: take it from what your platform guarantees
   * (e.g. the `x-real-ip` your load balancer sets), never from a header the client can write.
   * `endcall serve` honours it only from a trusted proxy: run it with
   * `--forwarded-allow-ips <this server's address>`. Default: no `X-Forwarded-For`.
   */
  getClientAddress?: (request: Request) => string | null | undefined | Promise<string | null | undefined>;
  /** The `fetch` used to reach `endcall serve` (default `globalThis.fetch`). */
  fetch?: typeof fetch;
}

const IP_ADDRESS = /^[0-9A-Fa-f.:]{2,45}$/;
/** Headers of `endcall serve`'s answer that reach the browser. */
const PASSED_BACK = ["content-type", "retry-after"];

const jsonError = (status: number, code: string, message: string, headers?: Record<string, string>): Response =>
  new Response(JSON.stringify({ code, message }), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });

/** The URL of `POST /v1/end` from `endcall serve`'s base URL (or that URL itself). */
function endpoint(target: string | undefined): string {
  const url = new URL(target ?? "");
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError("not http(s)");
  if (!url.pathname.endsWith("/v1/end")) url.pathname = url.pathname.replace(/\/?$/, "/v1/end");
  return url.href;
}

/**
 * A route handler for the browser's `POST /v1/end` that forwards it to `endcall serve`: the
 * body (at most `maxBodyBytes`), `Authorization` and `Content-Type` go on, `X-Forwarded-For` is
 * set from `getClientAddress` (never copied from the request); `endcall serve`'s status and body
 * come back unchanged (with its `Content-Type` and `Retry-After`). The proxy's own errors have
 * the server's shape, `{"code", "message"}`: 405 `method_not_allowed`, 408 `request_timeout`,
 * 413 `payload_too_large`, 500 `internal` (no valid `target`), 502 `bad_gateway` (`endcall
 * serve` unreachable), 504 `gateway_timeout`. The browser going away does not cancel the
 * forwarded request: a tab-close beacon is gone before any answer.
 *
 * ```ts
 * // app/v1/end/route.ts (Next.js App Router)
 * import { endProxy } from "endcall/server";
 * export const POST = endProxy({ target: process.env.ENDCALL_URL });
 * ```
 */
export function endProxy(options: EndProxyOptions): (request: Request) => Promise<Response> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const limit = options.maxBodyBytes ?? MAX_END_BODY_BYTES;
  return async (request: Request): Promise<Response> => {
    if (request.method !== "POST") {
      return jsonError(405, "method_not_allowed", "only POST is allowed", { Allow: "POST" });
    }
    let url: string;
    try {
      url = endpoint(options.target);
    } catch {
      return jsonError(500, "internal", "the end proxy has no valid target URL (is ENDCALL_URL set?)");
    }
    const declared = request.headers.get("content-length");
    if (declared !== null && Number(declared) > limit) {
      return jsonError(413, "payload_too_large", `the body is ${declared.slice(0, 24)} bytes; the limit is ${limit}`);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      let body: Uint8Array<ArrayBuffer> | null;
      try {
        body = await readLimited(request, limit, controller.signal);
      } catch {
        return controller.signal.aborted
          ? jsonError(408, "request_timeout", `the body did not arrive within ${timeoutMs} ms`)
          : jsonError(400, "bad_request", "the body could not be read");
      }
      if (!body) return jsonError(413, "payload_too_large", `the body exceeds ${limit} bytes`);

      const headers = new Headers();
      for (const name of ["authorization", "content-type"]) {
        const value = request.headers.get(name);
        if (value !== null) headers.set(name, value);
      }
      let address: string | undefined;
      try {
        address = (await options.getClientAddress?.(request))?.trim();
      } catch {
        // not known: the end request still goes on, without X-Forwarded-For
      }
      if (address && IP_ADDRESS.test(address)) headers.set("x-forwarded-for", address);

      try {
        const upstream = await (options.fetch ?? fetch)(url, {
          method: "POST",
          headers,
          body,
          signal: controller.signal,
          redirect: "manual",
        });
        const answer = await upstream.arrayBuffer();
        if (upstream.status < 200 || upstream.status > 599) throw new Error(`status ${upstream.status}`);
        const passed = new Headers();
        for (const name of PASSED_BACK) {
          const value = upstream.headers.get(name);
          if (value !== null) passed.set(name, value);
        }
        const empty = [204, 205, 304].includes(upstream.status);
        return new Response(empty ? null : answer, { status: upstream.status, headers: passed });
      } catch (error) {
        if (controller.signal.aborted) {
          return jsonError(504, "gateway_timeout", `endcall serve did not answer within ${timeoutMs} ms`);
        }
        return jsonError(502, "bad_gateway", `cannot reach endcall serve: ${String((error as Error)?.message ?? error)}`);
      }
    } finally {
      clearTimeout(timer);
    }
  };
}

/** The body, of which at most `limit` bytes are read; null when it is longer. */
async function readLimited(request: Request, limit: number, signal: AbortSignal): Promise<Uint8Array<ArrayBuffer> | null> {
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(new Error("timeout"));
    signal.addEventListener("abort", () => reject(new Error("timeout")), { once: true });
  });
  aborted.catch(() => {});
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), aborted]);
      if (done) break;
      total += value.byteLength;
      if (total > limit) break;
      chunks.push(value);
    }
  } catch (error) {
    void reader.cancel().catch(() => {});
    throw error;
  }
  if (total > limit) {
    void reader.cancel().catch(() => {});
    return null;
  }
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}
