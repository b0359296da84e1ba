/**
 * `ReportMeta`: the job's `reportMeta` fields that know where they came from (Python's
 * `endcall.ReportMeta`), and the checks `jobConfig` and `dispatchMetadata` share. Fields from
 * plain job metadata are `"unsigned"`, from a verified dispatch claim `"signed"`, from the
 * agent's code `"code"`; the least trusted field present is the report's
 * `annotations_source` (protocol.md §6), so a backend never files a report under an id the
 * candidate chose. `configRefused` is what `jobConfig` refused, for the report's
 * `end.config_refused`.
 */
import { ANNOTATIONS_SOURCES, MAX_META_BYTES, byteLength, canonicalJson, type AnnotationsSource, type JsonObject } from "endcall";

/** A `webhook_secret_id`: 1–64 letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
export const SECRET_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The least trusted of `sources` (`"code"` when there are none). */
export function leastTrusted(sources: Iterable<AnnotationsSource>): AnnotationsSource {
  let worst: AnnotationsSource = "code";
  for (const s of sources) if (ANNOTATIONS_SOURCES.indexOf(s) > ANNOTATIONS_SOURCES.indexOf(worst)) worst = s;
  return worst;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const LONE_SURROGATE = /\p{Cs}/u;

function checkJson(value: unknown, path: string): void {
  if (value === null || typeof value === "boolean") return;
  if (typeof value === "string") {
    if (LONE_SURROGATE.test(value)) throw new RangeError(`${path} has a lone surrogate (not UTF-8)`);
    return;
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new RangeError(`${path} must be a finite number`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => checkJson(v, `${path}[${i}]`));
    return;
  }
  if (isPlainObject(value) && [Object.prototype, null].includes(Object.getPrototypeOf(value))) {
    for (const [k, v] of Object.entries(value)) {
      if (LONE_SURROGATE.test(k)) throw new RangeError(`a key in ${path} has a lone surrogate (not UTF-8)`);
      checkJson(v, `${path}.${k}`);
    }
    return;
  }
  throw new TypeError(`${path} is not a JSON value`);
}

/** `value` as annotations (Python's `Annotations(value)` check): an object of JSON values with
 * non-empty keys, at most 4,096 bytes serialized; throws saying why not. */
export function checkAnnotations(value: unknown): JsonObject {
  if (!isPlainObject(value)) throw new TypeError("it is not a JSON object");
  for (const [k, v] of Object.entries(value)) {
    if (!k) throw new TypeError("annotation keys must be non-empty strings");
    checkJson(v, `annotation ${JSON.stringify(k)}`);
  }
  const size = byteLength(canonicalJson(value));
  if (size > MAX_META_BYTES) throw new RangeError(`annotations are ${size} bytes serialized; the limit is ${MAX_META_BYTES}`);
  return value as JsonObject;
}

/** A retry schedule from a claim: a non-empty array of finite seconds >= 0. */
export function checkSchedule(value: unknown): number[] {
  if (
    !Array.isArray(value) ||
    !value.length ||
    !value.every((d) => typeof d === "number" && d >= 0 && Number.isFinite(d))
  ) {
    throw new RangeError("webhook_schedule must be a non-empty list of seconds (>= 0)");
  }
  return value.map(Number);
}

/** Copy `entries` into a fresh object without ever invoking the `__proto__` setter. */
function ownCopy(entries: Iterable<[string, unknown]>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

export interface ReportMetaInit {
  /** where every field came from (default `"unsigned"`: marking is never forgotten) */
  source?: AnnotationsSource;
  configRefused?: readonly string[];
}

/** `reportMeta` that knows where it came from: pass it to EndCall as it is (copying its
 * `fields` into a plain object makes them `"code"`). */
export class ReportMeta {
  /** the fields, in order (a later merge wins per key) */
  readonly fields: Readonly<Record<string, unknown>>;
  /** what `jobConfig` refused, for the report's `end.config_refused` */
  readonly configRefused: readonly string[];
  private readonly sources: ReadonlyMap<string, AnnotationsSource>;

  constructor(fields?: Readonly<Record<string, unknown>> | null, init: ReportMetaInit = {}) {
    const source = init.source ?? "unsigned";
    if (!ANNOTATIONS_SOURCES.includes(source)) {
      throw new RangeError(`source must be one of ${ANNOTATIONS_SOURCES.join(", ")}, not ${JSON.stringify(source)}`);
    }
    const entries = Object.entries(fields ?? {});
    this.fields = Object.freeze(ownCopy(entries));
    this.sources = new Map(entries.map(([k]) => [k, source]));
    this.configRefused = Object.freeze([...(init.configRefused ?? [])]);
  }

  private static of(
    fields: Record<string, unknown>,
    sources: Map<string, AnnotationsSource>,
    configRefused: readonly string[],
  ): ReportMeta {
    const meta = new ReportMeta(null, { source: "code", configRefused });
    (meta as { fields: Readonly<Record<string, unknown>> }).fields = Object.freeze(fields);
    (meta as unknown as { sources: Map<string, AnnotationsSource> }).sources = sources;
    return meta;
  }

  /** `this` and `other` merged, `other` winning per key with its own source (Python's `a | b`). */
  merge(other: ReportMeta): ReportMeta {
    const fields = ownCopy([...Object.entries(this.fields), ...Object.entries(other.fields)]);
    const sources = new Map([...this.sources, ...other.sources]);
    return ReportMeta.of(fields, sources, [...this.configRefused, ...other.configRefused]);
  }

  /** The same fields with `refused` as `configRefused`. */
  withRefusals(refused: readonly string[]): ReportMeta {
    return ReportMeta.of(ownCopy(Object.entries(this.fields)), new Map(this.sources), refused);
  }

  /** The source of one field (undefined when it has none). */
  sourceOf(key: string): AnnotationsSource | undefined {
    return this.sources.get(key);
  }

  /** Every field with its source, in order (what EndCall's annotations take over). */
  entries(): Array<[key: string, value: unknown, source: AnnotationsSource]> {
    return Object.entries(this.fields).map(([k, v]) => [k, v, this.sources.get(k) ?? "unsigned"]);
  }

  /** The least trusted source among the fields (`"code"` when there are none): the report's
   * `annotations_source`. */
  get source(): AnnotationsSource {
    return leastTrusted(this.sources.values());
  }

  get size(): number {
    return this.sources.size;
  }

  toJSON(): JsonObject {
    return { ...this.fields } as JsonObject;
  }
}
