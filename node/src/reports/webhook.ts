/**
 * Where and how a session report is sent: the `Webhook` config (Python's
 * `endcall.reports.webhook.Webhook`), checked when the agent starts — URL, `whsec_` secrets
 * (several: key rotation), extra headers, per-attempt timeout, retry schedule, jitter and the
 * in-process window — and `webhookFromEnv()` reading the same environment variables
 * (`ENDCALL_WEBHOOK_URL`, `ENDCALL_WEBHOOK_SECRET`) with the same defaults.
 */

import { createHash } from "node:crypto";
import type { DeliverySettings } from "./outbox/base.js";

/** Delay before each attempt: 0, 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 6 h, 12 h, 24 h
 * (about 46 h in all); after the last one fails the report is dead. */
export const DEFAULT_SCHEDULE: readonly number[] = [
  0, 5, 30, 120, 600, 1800, 3600, 7200, 21600, 43200, 86400,
];
/** each non-zero delay is multiplied by a random factor in [1 - jitter, 1 + jitter] */
export const DEFAULT_JITTER = 0.1;
export const DEFAULT_TIMEOUT = 15;
export const DEFAULT_IN_PROCESS_WINDOW = 60;
/** the longest request timeout a `Webhook` accepts (leases are sized from it) */
export const MAX_TIMEOUT = 300;
export const URL_ENV = "ENDCALL_WEBHOOK_URL";
export const SECRET_ENV = "ENDCALL_WEBHOOK_SECRET";
export const USER_AGENT = "endcall-webhook/1";

/** Split a comma/whitespace separated list of secrets (`$ENDCALL_WEBHOOK_SECRET`). */
export function parseSecrets(text: string): string[] {
  return text
    .trim()
    .split(/[\s,]+/)
    .filter((s) => s);
}

const B64 = /^[A-Za-z0-9+/]*$/;

/** The HMAC key of a `whsec_<base64>` secret (the prefix optional; padding optional). */
export function secretKey(secret: string): Uint8Array {
  let raw = secret.startsWith("whsec_") ? secret.slice(6) : secret;
  raw = raw.replace(/=+$/, "");
  if (!B64.test(raw) || raw.length % 4 === 1) throw new Error("webhook secret must be 'whsec_' followed by base64");
  const key = Buffer.from(raw, "base64");
  if (key.length < 16) throw new Error("webhook secret must decode to at least 16 bytes");
  return new Uint8Array(key);
}

export function validateSecret(secret: string): void {
  secretKey(secret);
}

/** A fingerprint naming a secret without revealing it ("k1_" + 16 hex digits), as Python's
 * `key_id`: rows carry the key ids they are to be signed with. */
export function keyId(secret: string): string {
  const h = createHash("sha256").update("endcall-key-id:").update(secretKey(secret)).digest("hex");
  return "k1_" + h.slice(0, 16);
}

/** `url` if it is an absolute http(s) URL with a host and no whitespace, user info or
 * fragment; else throws saying what is wrong. */
export function validateUrl(url: unknown): string {
  if (typeof url !== "string") throw new Error(`webhook url must be a string, got ${typeof url}`);
  // eslint-disable-next-line no-control-regex
  if (!url || url !== url.trim() || /[\s\u0000-\u001f]/.test(url)) {
    throw new Error(`webhook url must not be empty or contain whitespace: ${JSON.stringify(url)}`);
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw new Error(`webhook url is malformed (${(e as Error).message}): ${JSON.stringify(url)}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new Error(`webhook url must start with http:// or https://, got ${JSON.stringify(url)}`);
  }
  if (!u.hostname) throw new Error(`webhook url has no host: ${JSON.stringify(url)}`);
  if (u.username || u.password || /^[a-z]+:\/\/[^/]*@/i.test(url)) {
    throw new Error("webhook url must not carry user:password (the report is signed)");
  }
  if (u.hash || url.endsWith("#")) throw new Error(`webhook url must not have a #fragment: ${JSON.stringify(url)}`);
  if (u.port === "0") throw new Error(`webhook url has port 0: ${JSON.stringify(url)}`);
  return url;
}

export interface WebhookInit {
  url: string;
  /** one secret, several (rotation), or one comma/space separated string */
  secret: string | readonly string[];
  /** seconds per attempt, (0, 300] */
  timeout?: number;
  /** seconds before each attempt */
  schedule?: readonly number[];
  /** seconds the agent process keeps retrying after the session ends */
  inProcessWindow?: number;
  headers?: Record<string, string>;
  jitter?: number;
}

/** The report's destination; everything is checked here, so a mistake fails at start. */
export class Webhook {
  readonly url: string;
  readonly secrets: readonly string[];
  readonly timeout: number;
  readonly schedule: readonly number[];
  readonly inProcessWindow: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly jitter: number;

  constructor(init: WebhookInit) {
    this.url = validateUrl(init.url);
    const secrets = typeof init.secret === "string" ? parseSecrets(init.secret) : [...init.secret];
    if (!secrets.length) throw new Error("at least one webhook secret is required");
    secrets.forEach((s, i) => {
      if (typeof s !== "string") throw new Error(`webhook secret #${i + 1} must be a string`);
      try {
        validateSecret(s);
      } catch (e) {
        throw new Error(`webhook secret #${i + 1}: ${(e as Error).message}`);
      }
    });
    this.secrets = Object.freeze(secrets);
    this.timeout = init.timeout ?? DEFAULT_TIMEOUT;
    if (!(this.timeout > 0 && this.timeout <= MAX_TIMEOUT)) {
      throw new Error(`timeout must be > 0 and <= ${MAX_TIMEOUT} seconds`);
    }
    const schedule = [...(init.schedule ?? DEFAULT_SCHEDULE)];
    if (!schedule.length || schedule.some((d) => typeof d !== "number" || !(d >= 0 && d < Infinity))) {
      throw new Error("schedule must be a non-empty sequence of finite delays >= 0");
    }
    this.schedule = Object.freeze(schedule);
    this.inProcessWindow = init.inProcessWindow ?? DEFAULT_IN_PROCESS_WINDOW;
    if (!(this.inProcessWindow >= 0)) throw new Error("in_process_window must be >= 0");
    this.jitter = init.jitter ?? DEFAULT_JITTER;
    if (!(this.jitter >= 0 && this.jitter < 1)) throw new Error("jitter must be in [0, 1)");
    this.headers = Object.freeze({ ...(init.headers ?? {}) });
  }

  /** What a relay needs to deliver a report like this agent would, stored with each row:
   * schedule, jitter, timeout and the key ids of the secrets — never a secret. */
  delivery(): DeliverySettings {
    return {
      schedule: [...this.schedule],
      jitter: this.jitter,
      timeout: this.timeout,
      keys: this.secrets.map(keyId),
    };
  }
}

/** The webhook from `ENDCALL_WEBHOOK_URL` and `ENDCALL_WEBHOOK_SECRET` (comma/space separated
 * for rotation), other settings from `overrides`; throws naming the missing variable. */
export function webhookFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<WebhookInit> = {},
): Webhook {
  const url = overrides.url ?? env[URL_ENV]?.trim();
  if (!url) throw new Error(`no webhook URL: set ${URL_ENV} (or pass url)`);
  const secret = overrides.secret ?? env[SECRET_ENV];
  if (!secret || (typeof secret === "string" && !parseSecrets(secret).length)) {
    throw new Error(`no webhook secret: set ${SECRET_ENV} (whsec_…) or pass secret`);
  }
  return new Webhook({ ...overrides, url, secret });
}
