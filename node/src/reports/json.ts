/**
 * JSON text exactly as Python's `json.dumps(value, separators=(",", ":"), ensure_ascii=True)`
 * writes it, so outbox rows written by Node (headers, delivery, ending) are byte-identical to
 * Python's: non-ASCII escaped as lowercase `\uXXXX`, and numbers Python holds as floats
 * (`floatKeys`) written with a fraction (`5.0`, not `5`).
 */

function pyFloat(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`not a finite number: ${n}`);
  if (Number.isInteger(n) && Math.abs(n) < 1e16) return n.toFixed(1);
  const s = String(n);
  // Python writes exponents with a sign and at least two digits: 1e-07, 1e+16
  return s.replace(/e([+-])(\d)$/, "e$10$2").replace(/e(\d)/, "e+$1");
}

function encode(value: unknown, asFloat: boolean, floatKeys: ReadonlySet<string>): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number") return asFloat ? pyFloat(value) : JSON.stringify(value);
  if (typeof value === "string" || typeof value === "boolean") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => encode(v, asFloat, floatKeys)).join(",")}]`;
  if (typeof value === "object") {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v === undefined) continue;
      parts.push(`${JSON.stringify(k)}:${encode(v, floatKeys.has(k), floatKeys)}`);
    }
    return `{${parts.join(",")}}`;
  }
  throw new TypeError(`cannot encode ${typeof value} as JSON`);
}

/** `json_text` of Python's outbox: compact, ASCII-only; `null`/`undefined` give `{}`. */
export function jsonText(value: Record<string, unknown> | null | undefined, floatKeys: Iterable<string> = []): string {
  const text = encode(value ?? {}, false, new Set(floatKeys));
  return text.replace(/[\u0080-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
