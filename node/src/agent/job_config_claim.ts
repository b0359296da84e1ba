/**
 * Dispatch claims: `"endcall_dispatch": "<JWT>"` in a job's metadata, HS256 with
 * `ENDCALL_DISPATCH_KEY` (≥ 32 bytes, only the backend and the workers hold it — never the
 * LiveKit API secret), audience `endcall.dispatch`, an `exp` (30 s leeway), optionally bound to
 * a room. `verifyClaim` is what `jobConfig` uses; `dispatchMetadata` makes the metadata text
 * (for a Node backend, like Python's `endcall.dispatch_metadata`). JWTs by `jose`, with the
 * few checks PyJWT adds (`aud` a string or strings, `sub`/`jti` strings) so both languages
 * accept the same claims.
 */
import { SignJWT, errors as joseErrors, jwtVerify } from "jose";
import { validateUrl } from "../reports/webhook.js";
import { SECRET_ID, checkAnnotations, checkSchedule } from "./job_config_meta.js";
import { JobConfigError } from "./job_config_urls.js";

export const DISPATCH_KEY_ENV = "ENDCALL_DISPATCH_KEY";
/** the metadata field holding a dispatch claim */
export const CLAIM_KEY = "endcall_dispatch";
export const CLAIM_AUDIENCE = "endcall.dispatch";
export const MIN_KEY_BYTES = 32;
/** seconds a claim made by `dispatchMetadata` is valid by default */
export const DEFAULT_CLAIM_TTL = 900;
/** clock skew tolerated between the backend that signs and the worker that verifies */
export const CLAIM_LEEWAY = 30;

type Env = Readonly<Record<string, string | undefined>>;

/** The dispatch key's bytes (`key`, else `$ENDCALL_DISPATCH_KEY`), or null when there is none;
 * throws `JobConfigError` for a short key or the LiveKit API secret. */
export function dispatchKey(key: string | null | undefined, env: Env): Uint8Array | null {
  const text = key ?? (env[DISPATCH_KEY_ENV] || null);
  if (text === null) return null;
  const raw = new TextEncoder().encode(text);
  if (raw.length < MIN_KEY_BYTES) throw new JobConfigError(`${DISPATCH_KEY_ENV} must be at least ${MIN_KEY_BYTES} bytes`);
  if (text === env.LIVEKIT_API_SECRET) {
    throw new JobConfigError(
      `${DISPATCH_KEY_ENV} must not be the LiveKit API secret: that key signs the access tokens browsers hold; use a key only the backend and the workers have`,
    );
  }
  return raw;
}

function short(value: unknown, limit = 200): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length <= limit ? text : text.slice(0, limit - 1) + "…";
}
export { short as shortText };

/** PyJWT's checks that jose leaves out. */
function pyjwtChecks(claim: Record<string, unknown>): void {
  const aud = claim.aud;
  const auds = typeof aud === "string" ? [aud] : aud;
  if (!aud || !Array.isArray(auds) || !auds.length || auds.some((a) => typeof a !== "string")) {
    throw new Error("invalid audience");
  }
  if (Object.hasOwn(claim, "sub") && typeof claim.sub !== "string") throw new Error("Subject must be a string");
  if (Object.hasOwn(claim, "jti") && typeof claim.jti !== "string") throw new Error("JWT ID must be a string");
}

/** The claim's fields; throws an `Error` saying why it is refused. */
export async function verifyClaim(
  token: unknown,
  key: Uint8Array | null,
  room: string | null,
  now?: number,
): Promise<Record<string, unknown>> {
  if (key === null) {
    throw new Error(
      `the metadata has a dispatch claim (${CLAIM_KEY}) but the worker has no ${DISPATCH_KEY_ENV} to verify it; the claim is ignored`,
    );
  }
  if (typeof token !== "string") throw new Error(`${CLAIM_KEY} must be a JWT string; the claim is ignored`);
  let claim: Record<string, unknown>;
  try {
    const verified = await jwtVerify(token, key, {
      algorithms: ["HS256"],
      audience: CLAIM_AUDIENCE,
      clockTolerance: CLAIM_LEEWAY,
      requiredClaims: ["exp", "aud"],
      ...(now === undefined ? {} : { currentDate: new Date(now * 1000) }),
    });
    claim = verified.payload as Record<string, unknown>;
    pyjwtChecks(claim);
  } catch (e) {
    if (e instanceof joseErrors.JWTExpired) throw new Error("the dispatch claim has expired; the claim is ignored");
    if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
      throw new Error(
        `the dispatch claim's signature does not verify with ${DISPATCH_KEY_ENV} (signed with another key, or altered); the claim is ignored`,
      );
    }
    throw new Error(`the dispatch claim is not valid (${(e as Error).message}); the claim is ignored`);
  }
  const bound = Object.hasOwn(claim, "room") ? claim.room : null;
  if (bound !== null && bound !== room) {
    const where = room === null ? "was not told the job's room (room)" : `runs in ${short(room)}`;
    throw new Error(`the dispatch claim is for room ${short(bound)} but this job ${where}; the claim is ignored`);
  }
  return claim;
}

export interface DispatchMetadataOptions {
  webhookUrl?: string;
  webhookSecretId?: string;
  reportMeta?: Readonly<Record<string, unknown>>;
  /** retry delays, seconds */
  webhookSchedule?: readonly number[];
  /** bind the claim to this room */
  room?: string;
  /** the HS256 key (default `$ENDCALL_DISPATCH_KEY`) */
  key?: string;
  /** seconds the claim is valid (900) */
  ttl?: number;
  /** plain fields beside the claim */
  extra?: Readonly<Record<string, unknown>>;
  /** Unix seconds of issue (now) */
  now?: number;
  env?: Env;
}

/** The job metadata (JSON text) carrying a dispatch claim with the given fields, for
 * `CreateAgentDispatchRequest` on the backend. Throws for bad input. */
export async function dispatchMetadata(o: DispatchMetadataOptions = {}): Promise<string> {
  const raw = dispatchKey(o.key, o.env ?? process.env);
  if (raw === null) throw new Error(`no dispatch key: pass key or set ${DISPATCH_KEY_ENV}`);
  const ttl = o.ttl ?? DEFAULT_CLAIM_TTL;
  if (!(ttl > 0 && ttl < Infinity)) throw new RangeError("ttl must be a positive number of seconds");
  const issued = o.now ?? Date.now() / 1000;
  const claim: Record<string, unknown> = { aud: CLAIM_AUDIENCE, iat: Math.trunc(issued), exp: Math.trunc(issued + ttl) };
  if (o.webhookUrl !== undefined) claim.webhook_url = validateUrl(o.webhookUrl);
  if (o.webhookSecretId !== undefined) {
    if (!SECRET_ID.test(o.webhookSecretId)) throw new Error(`webhookSecretId ${short(o.webhookSecretId)} is not a secret id`);
    claim.webhook_secret_id = o.webhookSecretId;
  }
  if (o.reportMeta !== undefined) claim.report_meta = { ...checkAnnotations(o.reportMeta) };
  if (o.webhookSchedule !== undefined) claim.webhook_schedule = checkSchedule([...o.webhookSchedule]);
  if (o.room !== undefined) claim.room = o.room;
  const plain = { ...(o.extra ?? {}) };
  if (Object.hasOwn(plain, "webhook_secret") || Object.hasOwn(plain, CLAIM_KEY)) {
    throw new Error(`extra must not carry webhook_secret or ${CLAIM_KEY}`);
  }
  const token = await new SignJWT(claim).setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(raw);
  return JSON.stringify({ ...plain, [CLAIM_KEY]: token });
}
