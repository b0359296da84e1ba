/**
 * The report's `annotations`: the job's own fields (`reportMeta` and `endCall.annotate()`),
 * JSON values, at most 4,096 bytes serialized (measured like `meta`). From code they are
 * `annotations_source: "code"`; `jobConfig(...).reportMeta` passed as it is keeps each field's
 * source (`signed` in a dispatch claim, `unsigned` from plain metadata), and the report says the
 * least trusted. Port of Python's `endcall.agent.annotations`.
 */
import { MAX_META_BYTES, byteLength, canonicalJson, type AnnotationsSource, type JsonObject } from "endcall";
import { ReportMeta, leastTrusted } from "./job_config_meta.js";

function checkJson(value: unknown, path: string): void {
  if (value === null || typeof value === "string" || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new RangeError(`annotations: ${path} must be a finite number`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => checkJson(v, `${path}[${i}]`));
    return;
  }
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [k, v] of Object.entries(value as object)) checkJson(v, `${path}.${k}`);
    return;
  }
  throw new TypeError(`annotations: ${path} is not a JSON value`);
}

export class Annotations {
  private fields: JsonObject = {};
  private readonly sources = new Map<string, AnnotationsSource>();
  /** what `jobConfig` refused (a `ReportMeta`'s), for the report's `end.config_refused` */
  readonly configRefused: readonly string[] = [];

  /** `initial`: a plain object (the agent's code: `"code"`) or `jobConfig(...).reportMeta` as
   * it is (each field keeps its source). */
  constructor(initial?: Readonly<Record<string, unknown>> | ReportMeta | null) {
    if (initial instanceof ReportMeta) {
      this.configRefused = initial.configRefused;
      this.merge(initial.fields, (k) => initial.sourceOf(k) ?? "unsigned");
    } else if (initial !== null && initial !== undefined) this.update(initial);
  }

  /** Merge `fields` (a later value for a key wins); throws for non-JSON values or more than
   * 4,096 bytes in all, changing nothing then. */
  update(fields: Readonly<Record<string, unknown>>): void {
    this.merge(fields, () => "code");
  }

  private merge(fields: Readonly<Record<string, unknown>>, sourceOf: (key: string) => AnnotationsSource): void {
    if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
      throw new TypeError("annotations must be an object of JSON values");
    }
    for (const [k, v] of Object.entries(fields)) checkJson(v, k);
    const merged = { ...this.fields, ...(JSON.parse(JSON.stringify(fields)) as JsonObject) };
    const size = byteLength(canonicalJson(merged));
    if (size > MAX_META_BYTES) {
      throw new RangeError(`annotations would be ${size} bytes serialized; the limit is ${MAX_META_BYTES}`);
    }
    this.fields = merged;
    for (const k of Object.keys(fields)) this.sources.set(k, sourceOf(k));
  }

  /** The least trusted source among the fields (`"code"` when there are none). */
  get source(): AnnotationsSource {
    return leastTrusted(this.sources.values());
  }

  snapshot(): JsonObject {
    return { ...this.fields };
  }
}
