/**
 * The report's `annotations`: the job's own fields (`reportMeta` and `endCall.annotate()`),
 * JSON values, at most 4,096 bytes serialized (measured like `meta`). From code they are
 * `annotations_source: "code"`. Port of Python's `endcall.agent.annotations` (without
 * `job_config`'s signed/unsigned sources, which the Node package does not have yet).
 */
import { MAX_META_BYTES, byteLength, canonicalJson, type AnnotationsSource, type JsonObject } from "endcall";

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

  constructor(initial?: Readonly<Record<string, unknown>> | null) {
    if (initial !== null && initial !== undefined) this.update(initial);
  }

  /** Merge `fields` (a later value for a key wins); throws for non-JSON values or more than
   * 4,096 bytes in all, changing nothing then. */
  update(fields: Readonly<Record<string, unknown>>): void {
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
  }

  get source(): AnnotationsSource {
    return "code";
  }

  snapshot(): JsonObject {
    return { ...this.fields };
  }
}
