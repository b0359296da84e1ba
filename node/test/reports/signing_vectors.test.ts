/**
 * The shared signing vectors (tests/vectors/signing/signature.json, written from the Standard
 * Webhooks construction by tests/vectors/build_signing_vectors.py) against the Node sender's
 * `sign`, each signature checked by the `standardwebhooks` package's verifier as a receiver would.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Webhook as Verifier } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { sign } from "../../src/reports/signing.js";

interface SigningCase {
  name: string;
  webhook_id: string;
  timestamp: number;
  body?: string;
  body_b64?: string;
  secrets: string[];
  signature: string;
}

const VECTORS = fileURLToPath(new URL("../../../tests/vectors/signing/signature.json", import.meta.url));
const CASES = JSON.parse(readFileSync(VECTORS, "utf-8")) as SigningCase[];

const bodyOf = (c: SigningCase): Uint8Array =>
  c.body_b64 !== undefined ? new Uint8Array(Buffer.from(c.body_b64, "base64")) : new TextEncoder().encode(c.body ?? "");

describe("signing vectors", () => {
  it("cover rotation, drafts and raw bytes", () => {
    expect(CASES.some((c) => c.secrets.length > 1)).toBe(true);
    expect(CASES.some((c) => c.webhook_id.endsWith(".draft"))).toBe(true);
    expect(CASES.some((c) => c.body_b64 !== undefined)).toBe(true);
  });

  for (const c of CASES) {
    it(`sign: ${c.name}`, () => {
      expect(sign(c.webhook_id, c.timestamp, bodyOf(c), c.secrets)).toBe(c.signature);
    });
  }

  for (const c of CASES.filter((c) => c.body !== undefined && c.timestamp > 0)) {
    it(`a receiver verifies: ${c.name}`, () => {
      c.secrets.forEach((secret, i) => {
        const headers = {
          "webhook-id": c.webhook_id,
          "webhook-timestamp": String(c.timestamp),
          "webhook-signature": c.signature.split(" ")[i] ?? "",
        };
        const verifier = new Verifier(secret);
        // the vectors' timestamps are fixed: verify as of that moment
        const now = Date.now;
        Date.now = () => c.timestamp * 1000;
        try {
          expect(verifier.verify(c.body ?? "", headers)).toBeTruthy();
        } finally {
          Date.now = now;
        }
      });
    });
  }
});
