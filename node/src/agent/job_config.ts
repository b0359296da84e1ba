/**
 * `jobConfig(ctx.job.metadata, { room: ctx.job.room.name })`: where one job's report goes and
 * what it carries, from its dispatch metadata — without trusting the metadata with secrets or
 * destinations. Port of Python's `endcall.job_config` (README "Per-job configuration"); the
 * same environment variables and rules:
 *
 * - **a secret is named, never carried**: `"webhook_secret_id": "acme"` picks a secret from
 *   `ENDCALL_WEBHOOK_SECRETS` (`acme=whsec_… globex=whsec_…`; an id given twice has two
 *   secrets, for rotation) or from `secrets` (a Map, an object, or a function id → secret(s),
 *   maybe async: a vault lookup). A `webhook_secret` in the metadata (or a claim) is refused.
 * - **a per-job `webhook_url` must be allowed** (`ENDCALL_WEBHOOK_URL_ALLOW` plus `allowUrls`,
 *   see `job_config_urls`) **or signed**: in a dispatch claim (`job_config_claim`), which then
 *   decides the destination; `webhook_schedule` is honoured only there.
 * - **`reportMeta` says where it came from** (`ReportMeta`: plain fields `"unsigned"`, a
 *   claim's `"signed"`; the claim's win per key).
 * - **refused means**: not used, logged at ERROR, listed in `refused` and in
 *   `reportMeta.configRefused` (→ the report's `end.config_refused`), and the report goes to the
 *   default destination (`ENDCALL_WEBHOOK_URL` signed with `ENDCALL_WEBHOOK_SECRET`). A refused
 *   URL or secret id makes the whole destination the default. `JobConfigError` only when there
 *   is no default, with `strict`, or for the worker's own mistakes.
 */
import type { AnnotationsSource } from "endcall";
import { SECRET_ENV, URL_ENV, Webhook, parseSecrets, validateSecret, validateUrl, type WebhookInit } from "../reports/webhook.js";
import { logger } from "./log.js";
import { CLAIM_KEY, dispatchKey, shortText as short, verifyClaim } from "./job_config_claim.js";
import { ReportMeta, SECRET_ID, checkAnnotations, checkSchedule } from "./job_config_meta.js";
import { JobConfigError, URL_ALLOW_ENV, checkAllowEntry, urlAllowed } from "./job_config_urls.js";

export { CLAIM_AUDIENCE, CLAIM_KEY, DISPATCH_KEY_ENV, dispatchMetadata, type DispatchMetadataOptions } from "./job_config_claim.js";
export { ReportMeta, leastTrusted } from "./job_config_meta.js";
export { JobConfigError, URL_ALLOW_ENV, urlAllowed } from "./job_config_urls.js";

export const SECRETS_ENV = "ENDCALL_WEBHOOK_SECRETS";
const DESTINATION = ["webhook_url", "webhook_secret_id", "webhook_schedule"] as const;

type Secrets = string | readonly string[];
/** Resolves a `webhook_secret_id` to its secret(s); null/undefined when the id is unknown. */
export type SecretResolver = (id: string) => Secrets | null | undefined | Promise<Secrets | null | undefined>;

export interface JobConfigOptions {
  /** the job's room (`ctx.job.room.name`): claims bound to a room are checked against it */
  room?: string | null;
  /** replaces `$ENDCALL_WEBHOOK_SECRETS` */
  secrets?: ReadonlyMap<string, Secrets> | Readonly<Record<string, Secrets>> | SecretResolver;
  /** added to `$ENDCALL_WEBHOOK_URL_ALLOW` */
  allowUrls?: readonly string[];
  /** replaces `$ENDCALL_DISPATCH_KEY` */
  dispatchKey?: string;
  /** replace `$ENDCALL_WEBHOOK_URL` / `$ENDCALL_WEBHOOK_SECRET` */
  defaultUrl?: string;
  defaultSecret?: Secrets;
  /** any refusal throws `JobConfigError` */
  strict?: boolean;
  /** other `Webhook` settings (timeout, headers, inProcessWindow, jitter) for every destination */
  webhook?: Omit<Partial<WebhookInit>, "url" | "secret" | "schedule">;
  /** where the variables are read (`process.env`) */
  env?: Readonly<Record<string, string | undefined>>;
  /** Unix seconds for the claim's `exp` (tests) */
  now?: number;
}

/** One job's report settings: pass `webhook` to the `ReportPipeline` and `reportMeta` (as it
 * is) to `EndCall`. */
export interface JobConfig {
  readonly webhook: Webhook;
  readonly reportMeta: ReportMeta;
  /** the report's `annotations_source` for these fields (`reportMeta.source`) */
  readonly annotationsSource: AnnotationsSource;
  /** a dispatch claim verified */
  readonly signed: boolean;
  /** the report goes to the default destination (`ENDCALL_WEBHOOK_URL`) */
  readonly defaultDestination: boolean;
  /** what was refused, one message each (also `reportMeta.configRefused`) */
  readonly refused: readonly string[];
  /** where the report goes */
  readonly url: string;
}

/** `ENDCALL_WEBHOOK_SECRETS`-style `id=whsec_…` entries as id → secrets (an id twice keeps
 * both: rotation); throws naming the entry by position or id, never a secret. */
export function parseNamedSecrets(text: string, source = SECRETS_ENV): Map<string, string[]> {
  const named = new Map<string, string[]>();
  parseSecrets(text).forEach((entry, i) => {
    const eq = entry.indexOf("=");
    const id = eq < 0 ? "" : entry.slice(0, eq);
    if (eq < 0 || !SECRET_ID.test(id)) {
      throw new Error(
        `${source}: entry #${i + 1} is not id=whsec_… (an id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)`,
      );
    }
    const secret = entry.slice(eq + 1);
    try {
      validateSecret(secret);
    } catch (e) {
      throw new Error(`${source}: the secret of id ${short(id)} is not usable: ${(e as Error).message}`);
    }
    named.set(id, [...(named.get(id) ?? []), secret]);
  });
  return named;
}

function secretList(found: unknown, id: string): string[] {
  const list = typeof found === "string" ? parseSecrets(found) : found;
  if (!Array.isArray(list) || !list.length || !list.every((s) => typeof s === "string")) {
    throw new JobConfigError(`the secret of webhook_secret_id ${short(id)} is not whsec_…`);
  }
  for (const s of list as string[]) {
    try {
      validateSecret(s);
    } catch (e) {
      throw new JobConfigError(`the secret of webhook_secret_id ${short(id)}: ${(e as Error).message}`);
    }
  }
  return [...(list as string[])];
}

const has = (doc: object, key: string): boolean => Object.hasOwn(doc, key);
const get = (doc: Record<string, unknown>, key: string): unknown => (has(doc, key) ? (doc[key] ?? null) : null);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

interface Destination {
  url?: string | null;
  secret?: string[] | null;
  schedule?: number[];
}

/** One `jobConfig` call: the refusals, and the worker's own settings. */
class Reader {
  readonly refused: string[] = [];
  private readonly secrets: NonNullable<JobConfigOptions["secrets"]>;
  private readonly allow: string[];

  constructor(
    o: JobConfigOptions,
    env: NonNullable<JobConfigOptions["env"]>,
    private readonly defaultUrl: string | null,
  ) {
    if (o.secrets === undefined) {
      try {
        this.secrets = parseNamedSecrets(env[SECRETS_ENV] ?? "");
      } catch (e) {
        throw new JobConfigError((e as Error).message);
      }
    } else {
      this.secrets = o.secrets;
    }
    this.allow = [...parseSecrets(env[URL_ALLOW_ENV] ?? ""), ...(o.allowUrls ?? [])].map(checkAllowEntry);
  }

  refuse(message: string): void {
    this.refused.push(message);
  }

  async resolve(id: unknown): Promise<string[] | null> {
    if (typeof id !== "string" || !SECRET_ID.test(id)) {
      this.refuse(`webhook_secret_id ${short(id)} is not a secret id`);
      return null;
    }
    let found: unknown;
    try {
      const s = this.secrets;
      if (typeof s === "function") found = await s(id);
      else if (s instanceof Map) found = s.get(id);
      else found = Object.hasOwn(s, id) ? (s as Record<string, unknown>)[id] : undefined;
    } catch (e) {
      this.refuse(`webhook_secret_id ${short(id)} could not be resolved (${String(e)})`);
      return null;
    }
    if (found === null || found === undefined) {
      this.refuse(
        `webhook_secret_id ${short(id)} is unknown to this worker: add ${id}=whsec_… to ${SECRETS_ENV} (or to the secrets given to jobConfig)`,
      );
      return null;
    }
    return secretList(found, id);
  }

  url(url: unknown, signed: boolean): string | null {
    let checked: string;
    try {
      checked = validateUrl(url);
    } catch (e) {
      this.refuse(`webhook_url ${short(url)} is not usable: ${(e as Error).message}`);
      return null;
    }
    if (signed || checked === this.defaultUrl || urlAllowed(checked, this.allow)) return checked;
    this.refuse(
      `webhook_url ${short(checked)} is not allowed: a job's metadata may be set by the candidate's browser. Add it (a URL prefix or host) to ${URL_ALLOW_ENV}, or send it in a dispatch claim signed with ENDCALL_DISPATCH_KEY (dispatchMetadata)`,
    );
    return null;
  }

  /** The job's own destination, or null for the default ({} when refused). */
  async destination(fields: Record<string, unknown>, signed: boolean): Promise<Destination | null> {
    if (!DESTINATION.some((k) => has(fields, k))) return null;
    const out: Destination = {};
    if (get(fields, "webhook_url") !== null) out.url = this.url(fields.webhook_url, signed);
    if (get(fields, "webhook_secret_id") !== null) out.secret = await this.resolve(fields.webhook_secret_id);
    if (get(fields, "webhook_schedule") !== null) {
      if (!signed) {
        this.refuse(
          "webhook_schedule is honoured only in a dispatch claim (a candidate could push the retries out of reach); the default schedule is used",
        );
      } else {
        try {
          out.schedule = checkSchedule(fields.webhook_schedule);
        } catch (e) {
          this.refuse((e as Error).message);
        }
      }
    }
    if (out.url === null || out.secret === null || has(fields, "webhook_secret")) return {};
    return out;
  }

  reportMeta(value: unknown, where: "job metadata" | "dispatch claim"): ReportMeta {
    if (value === null || value === undefined) return new ReportMeta(null, { source: "code" });
    try {
      checkAnnotations(value);
    } catch (e) {
      this.refuse(`report_meta in the ${where} is not usable (${(e as Error).message}); it is ignored`);
      return new ReportMeta(null, { source: "code" });
    }
    return new ReportMeta(value as Record<string, unknown>, { source: where === "dispatch claim" ? "signed" : "unsigned" });
  }
}

function load(metadata: string | null | undefined, reader: Reader): Record<string, unknown> {
  if (metadata === null || metadata === undefined || !metadata.trim()) return {};
  let doc: unknown;
  try {
    doc = JSON.parse(metadata);
  } catch (e) {
    reader.refuse(`the job metadata is not JSON (${(e as Error).message}); it is ignored`);
    return {};
  }
  if (!isObject(doc)) {
    reader.refuse("the job metadata is not a JSON object; it is ignored");
    return {};
  }
  return doc;
}

/** Read one job's metadata (`ctx.job.metadata`) into its `Webhook` and `ReportMeta` — see the
 * module doc. Refusals are logged at ERROR and listed in `refused`; throws `JobConfigError`
 * when there is no default destination, with `strict`, or for the worker's own mistakes. */
export async function jobConfig(metadata: string | null | undefined, options: JobConfigOptions = {}): Promise<JobConfig> {
  const env = options.env ?? process.env;
  const room = options.room ?? null;
  const url = options.defaultUrl || env[URL_ENV] || null;
  const reader = new Reader(options, env, url);
  const key = dispatchKey(options.dispatchKey, env);
  const own = options.defaultSecret ?? env[SECRET_ENV] ?? "";
  const fallback = typeof own === "string" ? parseSecrets(own) : [...own];
  const plain = load(metadata, reader);
  let claim: Record<string, unknown> | null = null;
  if (has(plain, CLAIM_KEY)) {
    try {
      claim = await verifyClaim(plain[CLAIM_KEY], key, room, options.now);
    } catch (e) {
      reader.refuse((e as Error).message);
    }
  }
  for (const [where, doc] of [["job metadata", plain], ["dispatch claim", claim ?? {}]] as const) {
    if (has(doc, "webhook_secret")) {
      reader.refuse(
        `the ${where} carries a webhook_secret: it is readable by whoever holds the token or the claim, so it is never used — rotate that secret, put it in ${SECRETS_ENV} and name it with webhook_secret_id`,
      );
    }
  }
  const signed = claim !== null;
  const fromClaim = claim !== null && DESTINATION.some((k) => has(claim!, k));
  if (fromClaim && DESTINATION.some((k) => has(plain, k))) {
    logger.warn("the dispatch claim decides the destination; plain fields ignored");
  }
  const destination = await reader.destination(fromClaim ? claim! : plain, fromClaim);
  let meta = reader.reportMeta(get(plain, "report_meta"), "job metadata");
  if (claim !== null) meta = meta.merge(reader.reportMeta(get(claim, "report_meta"), "dispatch claim"));
  try {
    checkAnnotations(meta.fields);
  } catch (e) {
    reader.refuse(`report_meta in the job metadata is not usable with the claim's (${(e as Error).message})`);
    meta = reader.reportMeta(claim ? get(claim, "report_meta") : null, "dispatch claim");
  }
  const refused = Object.freeze([...reader.refused]);
  for (const message of refused) logger.error(`job configuration refused (room ${room ?? "?"}): ${message}`);
  if (refused.length && options.strict) throw new JobConfigError("job configuration refused: " + refused.join("; "));
  const args = {
    url: destination?.url ?? url,
    secret: destination?.secret ?? fallback,
    schedule: destination?.schedule,
  };
  if (!args.url || !args.secret.length) {
    const missing = !args.url ? "URL" : "secret";
    throw new JobConfigError(
      `no webhook ${missing} for this job: set ${URL_ENV} and ${SECRET_ENV} (the default destination), or send a webhook_url/webhook_secret_id in a dispatch claim` +
        (refused.length ? ` (refused: ${refused.join("; ")})` : ""),
    );
  }
  let webhook: Webhook;
  try {
    webhook = new Webhook({ ...options.webhook, url: args.url, secret: args.secret, ...(args.schedule ? { schedule: args.schedule } : {}) });
  } catch (e) {
    throw new JobConfigError(`the job's webhook is not usable: ${(e as Error).message}`);
  }
  const isDefault = !destination?.url && !destination?.secret;
  const asked = [...DESTINATION, "webhook_secret", CLAIM_KEY].some((k) => has(plain, k));
  if (refused.length && asked && isDefault) logger.error(`this job's report goes to the default destination ${url}`);
  const reportMeta = meta.withRefusals(refused);
  const config: JobConfig = {
    webhook,
    reportMeta,
    annotationsSource: reportMeta.source,
    signed,
    defaultDestination: isDefault,
    refused,
    url: webhook.url,
  };
  // logging or serializing the config never shows its secrets (only their key ids)
  const shown = (): Record<string, unknown> => ({
    url: webhook.url,
    keys: webhook.delivery().keys,
    schedule: [...webhook.schedule],
    signed,
    defaultDestination: isDefault,
    annotationsSource: reportMeta.source,
    reportMeta: reportMeta.toJSON(),
    refused: [...refused],
  });
  Object.defineProperty(config, "toJSON", { value: shown });
  Object.defineProperty(config, Symbol.for("nodejs.util.inspect.custom"), { value: () => ({ JobConfig: shown() }) });
  return Object.freeze(config);
}
