/** Every shared vector (tests/vectors/ plus $ENDCALL_EXTRA_VECTORS) through the TypeScript codec,
 * exactly as tests/protocol/test_vectors.py runs them through the Python one. */
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import * as protocol from "../src/protocol";

interface Case {
  name: string;
  kind: "request" | "ack" | "error" | "report" | "supersede" | "missing";
  origin?: protocol.Origin;
  input?: string;
  stored?: string;
  input_b64?: string;
  expect: { ok: true; value: unknown } | { ok: false; code: string };
}

const ROOT = resolve(__dirname, "../..");
const VECTOR_DIR = resolve(ROOT, "tests/vectors");

/** tests/vectors plus every directory in $ENDCALL_EXTRA_VECTORS (colon-separated; relative
 * paths are taken from the repository root, where pytest runs). */
function vectorDirs(): string[] {
  const extra = (process.env.ENDCALL_EXTRA_VECTORS ?? "").split(":").filter(Boolean);
  return [VECTOR_DIR, ...extra.map((dir) => resolve(ROOT, dir))];
}

function loadCases(): Array<[string, Case]> {
  const cases: Array<[string, Case]> = [];
  for (const dir of vectorDirs()) {
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
      const list = JSON.parse(readFileSync(join(dir, file), "utf-8")) as Case[];
      for (const c of list) cases.push([`${file.replace(/\.json$/, "")}:${c.name}`, c]);
    }
  }
  return cases;
}

/** `input_b64` is raw bytes; `input` is passed as the string itself (it may hold a lone
 * surrogate, which the codec must reject as Python rejects its surrogatepass bytes). */
function rawInput(c: Case): string | Uint8Array {
  if (c.input_b64 !== undefined) return new Uint8Array(Buffer.from(c.input_b64, "base64"));
  return String(c.input);
}

function decode(c: Case, raw: string | Uint8Array): unknown {
  switch (c.kind) {
    case "request":
      return protocol.parseRequest(raw, { origin: c.origin ?? "client" });
    case "ack":
      return protocol.parseAck(raw);
    case "error":
      return protocol.parseError(raw);
    case "report":
      return protocol.parseReport(raw);
    case "missing":
      return protocol.parseMissing(raw);
    case "supersede":
      return protocol.reportSupersedes(protocol.parseReport(raw), protocol.parseReport(String(c.stored)));
    default:
      throw new Error(`unknown vector kind ${String(c.kind)}`);
  }
}

function encode(c: Case, raw: string | Uint8Array): string {
  switch (c.kind) {
    case "request":
      return protocol.encodeRequest(protocol.parseRequest(raw, { origin: c.origin ?? "client" }));
    case "ack":
      return protocol.encodeAck(protocol.parseAck(raw));
    case "error":
      return protocol.encodeError(protocol.parseError(raw));
    case "missing":
      return protocol.encodeMissing(protocol.parseMissing(raw));
    case "supersede":
      return protocol.encodeReport(protocol.parseReport(raw));
    default:
      return protocol.encodeReport(protocol.parseReport(raw));
  }
}

const cases = loadCases();

describe("shared vectors", () => {
  it("there are enough vectors", () => {
    expect(cases.length).toBeGreaterThanOrEqual(60);
  });

  it.each(cases)("%s", (_name, c) => {
    const raw = rawInput(c);
    if (c.expect.ok) {
      const value = decode(c, raw);
      expect(value).toEqual(c.expect.value);
      const again = decode(c, encode(c, raw));
      expect(again, "encode → parse must round-trip").toEqual(c.expect.value);
      // bytes input behaves like string input (and the other way round)
      const other = typeof raw == "string" ? new TextEncoder().encode(raw) : new TextDecoder().decode(raw);
      expect(decode(c, other)).toEqual(c.expect.value);
    } else {
      let thrown: unknown;
      try {
        decode(c, raw);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(protocol.ProtocolError);
      expect((thrown as protocol.ProtocolError).code, (thrown as Error).message).toBe(c.expect.code);
    }
  });
});
