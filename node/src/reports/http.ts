/**
 * One signed POST of a report and what it gave (Python's `delivery.attempt`). Only a 2xx is
 * success; redirects are not followed (a failure); 410 is dead at once; 429/503 carry
 * `Retry-After`; anything else — other statuses, timeouts, refused connections, TLS errors — is
 * retried. The timeout bounds the whole attempt (connect to response headers). The response
 * body is never read (a receiver answering 1 GB costs nothing): the socket is dropped once the
 * status is known. Never throws.
 */

import http from "node:http";
import https from "node:https";
import { signedHeaders } from "./signing.js";
import { parseRetryAfter } from "./retry.js";

export type Outcome = "delivered" | "retry" | "dead";

export interface AttemptResult {
  outcome: Outcome;
  status: number | null;
  error: string | null;
  retryAfter: number | null;
  /** seconds */
  elapsed: number;
}

export interface PostResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

/** How a request goes out; tests inject their own. `timeout` in seconds. */
export type Post = (url: string, body: Uint8Array, headers: Record<string, string>, timeout: number) => Promise<PostResponse>;

const agents = {
  http: new http.Agent({ keepAlive: false }),
  https: new https.Agent({ keepAlive: false }),
};

export class TimeoutError extends Error {
  override name = "TimeoutError";
}

/** POST with Node's http(s), bounded by `timeout` seconds in all; the body is not read. */
export const nodePost: Post = (url, body, headers, timeout) =>
  new Promise<PostResponse>((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === "https:" ? https : http;
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) {
      if (k !== "host" && k !== "content-length") out[k] = v;
    }
    out["content-length"] = String(body.byteLength);
    let done = false;
    const req = mod.request(u, {
      method: "POST",
      headers: out,
      agent: u.protocol === "https:" ? agents.https : agents.http,
    });
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      req.destroy(new TimeoutError(`timeout after ${timeout}s`));
      reject(new TimeoutError(`timeout after ${timeout}s`));
    }, timeout * 1000);
    req.on("response", (res) => {
      if (done) return res.destroy();
      done = true;
      clearTimeout(timer);
      const result = { status: res.statusCode ?? 0, headers: res.headers };
      res.destroy(); // never read what the receiver answers
      req.destroy();
      resolve(result);
    });
    req.on("error", (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(e);
    });
    req.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });

function header(h: PostResponse["headers"], name: string): string | null {
  const v = h[name];
  return Array.isArray(v) ? (v[0] ?? null) : (v ?? null);
}

/** POST the report once, signed for this attempt's timestamp (real time: receivers check it). */
export async function attempt(
  post: Post,
  url: string,
  id: string,
  body: Uint8Array,
  secrets: readonly string[],
  o: { timeout: number; headers?: Record<string, string>; now?: number },
): Promise<AttemptResult> {
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  const ts = Math.floor(Date.now() / 1000);
  let res: PostResponse;
  try {
    res = await post(url, body, signedHeaders(id, body, secrets, ts, o.headers), o.timeout);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    let error: string;
    if (e instanceof TimeoutError) error = `timeout after ${o.timeout}s (${err.name})`;
    else if (err && (err.code === "ECONNREFUSED" || err.code === "ENOTFOUND" || err.code === "EHOSTUNREACH")) {
      error = `connect failed: ${err.message}`;
    } else error = `${err?.name ?? "Error"}: ${err?.message ?? String(e)}`;
    return { outcome: "retry", status: null, error, retryAfter: null, elapsed: elapsed() };
  }
  const code = res.status;
  if (code >= 200 && code < 300) return { outcome: "delivered", status: code, error: null, retryAfter: null, elapsed: elapsed() };
  if (code === 410) {
    return { outcome: "dead", status: code, error: "410 Gone: receiver asked to stop", retryAfter: null, elapsed: elapsed() };
  }
  if (code >= 300 && code < 400) {
    const loc = header(res.headers, "location") ?? "";
    return { outcome: "retry", status: code, error: `HTTP ${code} redirect not followed (${loc})`, retryAfter: null, elapsed: elapsed() };
  }
  let retryAfter: number | null = null;
  if (code === 429 || code === 503) retryAfter = parseRetryAfter(header(res.headers, "retry-after"), o.now ?? Date.now() / 1000);
  return { outcome: "retry", status: code, error: `HTTP ${code}`, retryAfter, elapsed: elapsed() };
}
