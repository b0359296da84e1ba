/** Property tests of the TypeScript codec (fast-check): encode → parse round trips, and no input
 * makes a parser throw anything but ProtocolError. >= 10,000 examples per property under CI. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as p from "../src/protocol";

const numRuns = process.env.CI ? 10_000 : 1_000;
// generous: 10,000 examples on 2 busy CI cores; the tests check behaviour, not speed
const timeout = 300_000;

const idArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const reasonArb = fc.oneof(
  fc.constantFrom(...p.END_REASONS),
  fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,63}$/),
);
const identityArb = fc
  .string({ unit: "grapheme", minLength: 1, maxLength: 40 })
  .filter((s) => !/[\x00-\x1f\x7f]/.test(s) && p.byteLength(s) <= p.MAX_IDENTITY_BYTES);
// JSON values that survive a JSON round trip unchanged (no -0, no undefined)
const jsonValue = fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);
const metaArb = fc.dictionary(fc.string({ maxLength: 8 }), jsonValue, { maxKeys: 5 });
const safeInt = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

function expectOnlyProtocolErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (error) {
    // plain checks (no expect() per example): this runs 50,000 times under CI
    if (!(error instanceof p.ProtocolError) || !(p.ERROR_CODES as readonly string[]).includes(error.code)) {
      throw new Error(`parser threw something else: ${String(error)}`);
    }
  }
}

const parsers = [
  (raw: string | Uint8Array) => p.parseRequest(raw, { origin: "client" }),
  (raw: string | Uint8Array) => p.parseRequest(raw, { origin: "server" }),
  p.parseAck,
  p.parseError,
  p.parseReport,
];

describe("round trips", () => {
  it("end.request: encode → parse gives the decoded form", () => {
    fc.assert(
      fc.property(
        idArb,
        fc.option(reasonArb, { nil: undefined }),
        fc.option(identityArb, { nil: null }),
        fc.option(safeInt, { nil: null }),
        fc.option(metaArb, { nil: null }),
        (id, reason, initiator, sentAt, meta) => {
          let text: string;
          try {
            text = p.encodeRequest({ id, reason, initiator, sent_at: sentAt, meta });
          } catch (error) {
            // only an oversized meta may be refused
            expect((error as p.ProtocolError).code).toBe("bad_request");
            expect(p.byteLength(JSON.stringify(meta))).toBeGreaterThan(p.MAX_META_BYTES);
            return;
          }
          const decoded = p.parseRequest(text, { origin: "server" });
          expect(decoded).toEqual({
            type: "end.request",
            v: 1,
            id,
            reason: reason ?? p.DEFAULT_REASON,
            initiator,
            sent_at: sentAt,
            meta,
          });
          expect(p.encodeRequest(decoded)).toBe(text);
        },
      ),
      { numRuns },
    );
  }, timeout);

  it("end.ack: encode → parse gives the decoded form", () => {
    fc.assert(
      fc.property(idArb, fc.constantFrom(...p.ACK_STATUSES), idArb, reasonArb, safeInt, (id, status, endId, reason, drain) => {
        const ack = { id, status, end_id: endId, reason, drain_ms: drain };
        expect(p.parseAck(p.encodeAck(ack))).toEqual({ type: "end.ack", v: 1, ...ack });
      }),
      { numRuns },
    );
  }, timeout);

  it("end.error: encode → parse gives the decoded form; ProtocolError messages are cut", () => {
    fc.assert(
      fc.property(
        fc.option(idArb, { nil: null }),
        fc.stringMatching(/^[a-z][a-z0-9_]{0,31}$/),
        fc.string({ unit: "grapheme", maxLength: 1200 }),
        (id, code, message) => {
          const error = new p.ProtocolError(code, message, id);
          const decoded = p.parseError(p.encodeError(error));
          expect(decoded.id).toBe(id);
          expect(decoded.code).toBe(code);
          expect(message.startsWith(decoded.message)).toBe(true);
          expect(Array.from(decoded.message).length).toBeLessThanOrEqual(p.MAX_MESSAGE_TEXT_LENGTH);
        },
      ),
      { numRuns },
    );
  }, timeout);
});

describe("parsers never throw anything but ProtocolError", () => {
  it("arbitrary strings (including lone surrogates)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (text) => {
        for (const parse of parsers) expectOnlyProtocolErrors(() => parse(text));
      }),
      { numRuns },
    );
  }, timeout);

  it("arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        for (const parse of parsers) expectOnlyProtocolErrors(() => parse(bytes));
      }),
      { numRuns },
    );
  }, timeout);

  it("arbitrary JSON documents and near-valid messages", () => {
    const anything = fc.anything({ maxDepth: 3, withNullPrototype: true });
    const nearValid = fc
      .record({
        type: fc.oneof(fc.constantFrom("end.request", "end.ack", "end.error", "session.ended"), anything),
        v: fc.oneof(fc.constant(1), anything),
        id: fc.oneof(idArb, anything),
        reason: fc.oneof(reasonArb, anything),
        status: fc.oneof(fc.constantFrom(...p.ACK_STATUSES), anything),
        end_id: fc.oneof(idArb, anything),
        drain_ms: fc.oneof(safeInt, anything),
        code: anything,
        message: anything,
        meta: anything,
        initiator: anything,
        sent_at: anything,
        room: anything,
        started_at: anything,
        ended_at: anything,
        complete: anything,
      }, { requiredKeys: [] })
      .map((o) => {
        try {
          return JSON.stringify(o) ?? "null";
        } catch {
          return "{}";
        }
      });
    fc.assert(
      fc.property(fc.oneof(fc.json(), nearValid), (text) => {
        for (const parse of parsers) expectOnlyProtocolErrors(() => parse(text));
      }),
      { numRuns },
    );
  }, timeout);
});
