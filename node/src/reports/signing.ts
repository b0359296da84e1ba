/**
 * Standard Webhooks signing of one attempt: `webhook-id` (the row key), `webhook-timestamp`
 * (Unix seconds of this attempt) and `webhook-signature` (one `v1,<base64 HMAC-SHA256>` per
 * secret over `id.timestamp.body`, the exact raw bytes), plus the row's extra headers, which
 * never override the signed ones. As Python's `signed_headers`.
 *
 * The HMAC is node:crypto's (OpenSSL): the `standardwebhooks` package's own is pure
 * JavaScript, ~0.7 ms per KiB on the event loop (~6 s for an 8 MiB report). Its verifier checks
 * these signatures in the tests, and the shared vectors (`tests/vectors/signing`) pin them.
 */

import { createHmac } from "node:crypto";
import { USER_AGENT, secretKey } from "./webhook.js";

const keys = new Map<string, Buffer>();

function key(secret: string): Buffer {
  let k = keys.get(secret);
  if (!k) {
    k = Buffer.from(secretKey(secret));
    if (keys.size < 64) keys.set(secret, k);
  }
  return k;
}

/** The `webhook-signature` value: one `v1,...` per secret, space separated. */
export function sign(id: string, timestamp: number, body: Uint8Array, secrets: readonly string[]): string {
  const prefix = `${id}.${Math.floor(timestamp)}.`;
  return secrets
    .map((secret) => "v1," + createHmac("sha256", key(secret)).update(prefix, "utf8").update(body).digest("base64"))
    .join(" ");
}

/** Every request header of one attempt. */
export function signedHeaders(
  id: string,
  body: Uint8Array,
  secrets: readonly string[],
  timestamp: number,
  extra?: Record<string, string>,
): Record<string, string> {
  const headers: Record<string, string> = { "content-type": "application/json", "user-agent": USER_AGENT };
  for (const [k, v] of Object.entries(extra ?? {})) headers[k.toLowerCase()] = v;
  headers["webhook-id"] = id;
  headers["webhook-timestamp"] = String(timestamp);
  headers["webhook-signature"] = sign(id, timestamp, body, secrets);
  return headers;
}
