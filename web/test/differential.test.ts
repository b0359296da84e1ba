/** Differential test: random and near-valid inputs through the TypeScript codec and the Python
 * one (`endcall.protocol`, py/endcall/protocol/, run once in a child process); both must agree
 * on every input: the same decoded value, or the same error code. Needs the repository's .venv (made by
 * `make test` before the web tests); without it the test is skipped, saying so. */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as p from "../src/protocol";

const ROOT = resolve(__dirname, "../..");
const PYTHON = resolve(ROOT, ".venv/bin/python");
const count = process.env.CI ? 10_000 : 1_000;

type Kind = "request-client" | "request-server" | "ack" | "error" | "report";
const KINDS: Kind[] = ["request-client", "request-server", "ack", "error", "report"];

const PY = `
import base64, json, sys
sys.path.insert(0, "py")
# the pure wing only: the endcall package loads its public names lazily (no livekit-agents)
import endcall.protocol as p
out = []
for line in sys.stdin:
    case = json.loads(line)
    raw = base64.b64decode(case["b64"])
    kind = case["kind"]
    try:
        if kind.startswith("request"):
            value = p.parse_request(raw, origin=kind.split("-")[1]).to_dict()
        elif kind == "ack":
            value = p.parse_ack(raw).to_dict()
        elif kind == "error":
            value = p.parse_error(raw).to_dict()
        else:
            value = p.parse_report(raw).to_dict()
        out.append({"ok": True, "value": value})
    except p.ProtocolError as exc:
        out.append({"ok": False, "code": exc.code})
    except Exception as exc:  # noqa: BLE001 - any other exception is a bug worth reporting
        out.append({"ok": False, "code": "PYTHON-" + type(exc).__name__})
print(json.dumps(out))
`;

function tsDecode(kind: Kind, raw: Uint8Array): { ok: true; value: unknown } | { ok: false; code: string } {
  try {
    const value =
      kind === "request-client"
        ? p.parseRequest(raw, { origin: "client" })
        : kind === "request-server"
          ? p.parseRequest(raw, { origin: "server" })
          : kind === "ack"
            ? p.parseAck(raw)
            : kind === "error"
              ? p.parseError(raw)
              : p.parseReport(raw);
    return { ok: true, value };
  } catch (error) {
    return { ok: false, code: error instanceof p.ProtocolError ? error.code : `TS-${String(error)}` };
  }
}

// Each message is built from its kind's fields: mostly good values, sometimes an edge or a bad
// one, sometimes missing. No floats in meta: JSON.stringify(1.0) is "1" where json.dumps gives
// "1.0", so near the meta limit the two measure different sizes (a known edge, see protocol.md).
const q = (s: string): string => JSON.stringify(s);
const numbers = ["1.0", "1e0", "-0", "0.5", "1e400", "-1", "9007199254740991", "9007199254740993", "1E2", "true", '"1"', "null"];
function field(name: string, good: string[], bad: string[]): fc.Arbitrary<string | null> {
  const value = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...good) }, { weight: 2, arbitrary: fc.constantFrom(...bad) });
  return fc.oneof({ weight: 12, arbitrary: value.map((v) => `${q(name)}:${v}`) }, { weight: 1, arbitrary: fc.constant(null) });
}
const common = (type: string) => [
  field("type", [q(type)], [q("x"), q(type.toUpperCase())]),
  field("v", ["1"], ["2", "0", ...numbers]),
];
const templates: Record<string, Array<fc.Arbitrary<string | null>>> = {
  request: [
    ...common("end.request"),
    field("id", [q("r1"), q("A".repeat(64)), q("aZ09_-")], [q("a b"), q(""), q("A".repeat(65)), "12", q("\\u0072")]),
    field("reason", [...p.END_REASONS.map(q), q("customer-tab-closed"), q("x.y-z")], [q("Bad"), q("-x"), "5", "null"]),
    field("initiator", [q("cand"), q("é".repeat(128)), q("\\ud83d\\udc4b")], [q(""), q("é".repeat(129)), q("a\\u0001"), q("\\ud800"), "{}"]),
    field("sent_at", ["0", "1764000000000", "1.764e12"], numbers),
    field("meta", ["{}", '{"a":[1,{"b":null}]}', `{"k":"${"é".repeat(2040)}"}`, `{"k":"${"m".repeat(4088)}"}`], ["[]", q("x"), '{"x":"\\ud800"}', `{"k":"${"m".repeat(4089)}"}`]),
    field("extra", ['{"a":1}'], ["[" .repeat(40) + "]".repeat(40)]),
  ],
  ack: [
    ...common("end.ack"),
    field("id", [q("r1")], [q("a b"), "null"]),
    field("status", p.ACK_STATUSES.map(q), [q("ok"), "1"]),
    field("end_id", [q("e1")], [q("e 1")]),
    field("reason", [q("customer-ended-call"), q("assistant-ended-call")], [q("X")]),
    field("drain_ms", ["0", "12000", "1.0"], numbers),
  ],
  error: [
    ...common("end.error"),
    field("id", [q("r1"), "null"], [q("a b"), "1"]),
    field("code", [q("forbidden"), q("rate_limited")], [q("Forbidden"), "1", q("")]),
    field("message", [q("no"), q("x".repeat(1024)), q("👋".repeat(1024))], [q("x".repeat(1025)), q("👋".repeat(1025)), "null"]),
  ],
  report: [
    ...common("session.ended"),
    field("end_id", [q("e_1")], [q("e 1")]),
    field("ended_reason", [q("agent-crashed")], [q("X")]),
    field("initiator", ['{"kind":"customer","identity":"c"}', '{"kind":"agent"}'], ['{"kind":"robot"}', "null"]),
    field("room", ['{"name":"r"}', '{"name":"r","sid":"RM"}'], ['{"name":""}', '{"name":"r","sid":5}', "null"]),
    field("started_at", ["1", "1764000000.0", "0.0625"], ["-1", '"1"', "1e400"]),
    field("ended_at", ["2", "1764000600.5", "1.25"], ["0.5", "null"]),
    field("complete", ["true", "false"], ['"yes"']),
    field("session", ["{}", '{"a":[]}'], ["null", "[]"]),
  ],
};
const message = (kind: string) =>
  fc.tuple(...templates[kind]!).map((fields) => "{" + fields.filter((f) => f !== null).join(",") + "}");
const KIND_TEMPLATE: Record<Kind, string> = {
  "request-client": "request",
  "request-server": "request",
  ack: "ack",
  error: "error",
  report: "report",
};
const inputs = (kind: Kind) =>
  fc.oneof(
    { weight: 8, arbitrary: message(KIND_TEMPLATE[kind]).map((t) => new TextEncoder().encode(t)) },
    { weight: 1, arbitrary: message("request").map((t) => new TextEncoder().encode(t)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.json().map((t) => new TextEncoder().encode(t)) },
  );
const caseArb = fc.constantFrom(...KINDS).chain((kind) => inputs(kind).map((raw) => [kind, raw] as const));

const hasPython = existsSync(PYTHON);

describe("TypeScript and Python codecs agree", () => {
  it.skipIf(!hasPython)(`on ${count} random inputs (needs ${PYTHON})`, () => {
    const cases = fc.sample(caseArb, { numRuns: count, seed: 20261124 });
    const stdin = cases.map(([kind, raw]) => JSON.stringify({ kind, b64: Buffer.from(raw).toString("base64") })).join("\n");
    const run = spawnSync(PYTHON, ["-c", PY], { input: stdin, encoding: "utf-8", cwd: ROOT, maxBuffer: 1 << 28 });
    expect(run.status, run.stderr).toBe(0);
    const python = JSON.parse(run.stdout) as Array<{ ok: boolean; value?: unknown; code?: string }>;
    const disagreements: unknown[] = [];
    cases.forEach(([kind, raw], i) => {
      const ts = tsDecode(kind, raw);
      const py = python[i]!;
      const same = ts.ok && py.ok ? JSON.stringify(ts.value) === JSON.stringify(py.value) : !ts.ok && !py.ok && ts.code === py.code;
      if (!same) disagreements.push({ kind, input: new TextDecoder().decode(raw), ts, py });
    });
    expect(disagreements.slice(0, 5)).toEqual([]);
    // the generator reaches both answers for every kind
    for (const kind of KINDS) {
      const answers = python.filter((_, i) => cases[i]![0] === kind);
      expect(answers.some((r) => r.ok), kind).toBe(true);
      expect(answers.some((r) => !r.ok), kind).toBe(true);
    }
  }, 300_000);
});
