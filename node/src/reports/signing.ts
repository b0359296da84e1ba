/**
 * Standard Webhooks signing of one attempt (the `standardwebhooks` package): `webhook-id` (the
 * row key), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature` (one
 * `v1,<base64 HMAC-SHA256>` per secret over `id.timestamp.body`, the exact raw bytes), plus the
 * row's extra headers, which never override the signed ones. As Python's `signed_headers`.
 */

import { Webhook as Signer } from "standardwebhooks";
import { USER_AGENT, secretKey } from "./webhook.js";

const signers = new Map<string, Signer>();

function signer(secret: string): Signer {
  let s = signers.get(secret);
  if (!s) {
    s = new Signer(secretKey(secret), { format: "raw" });
    if (signers.size < 64) signers.set(secret, s);
  }
  return s;
}

/** The `webhook-signature` value: one `v1,...` per secret, space separated. */
export function sign(id: string, timestamp: number, body: Uint8Array, secrets: readonly string[]): string {
  const at = new Date(timestamp * 1000);
  return secrets.map((secret) => signer(secret).sign(id, at, body)).join(" ");
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
