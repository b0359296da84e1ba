import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseReport } from "endcall";
import { jobConfig, dispatchMetadata } from "../../src/agent/job_config.js";
import { CUSTOMER, request, run, setup, untilEnded } from "./harness.js";

const env = {
  ENDCALL_WEBHOOK_URL: "https://backend.example/session/end",
  ENDCALL_WEBHOOK_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  ENDCALL_DISPATCH_KEY: "k".repeat(40),
};
const text = (b: Uint8Array) => new TextDecoder().decode(b);
beforeEach(() => { vi.useFakeTimers(); vi.spyOn(console, "error").mockImplementation(() => undefined); });
afterEach(() => { vi.useRealTimers(); vi.restoreAllMocks(); });

async function endWith(reportMeta: unknown, annotate?: Record<string, unknown>) {
  const s = setup({ reportMeta: reportMeta as never });
  await s.end.start();
  if (annotate) s.end.annotate(annotate);
  await run(1_000);
  const ack = s.local.call("end_interview", CUSTOMER, request("r1"));
  await untilEnded(s.end);
  await ack;
  return parseReport(text(s.sink.stored.at(-1)!.body));
}

/** jobConfig(...).reportMeta given to EndCall as it is: the report says where its annotations came from. */
describe("jobConfig wired into EndCall", () => {
  it("plain metadata is unsigned and its refusals reach end.config_refused; a claim is signed; code is code", async () => {
    const plain = await jobConfig(JSON.stringify({ report_meta: { company_id: "c-x" }, webhook_url: "https://attacker.example/" }), { env });
    let r = await endWith(plain.reportMeta);
    expect(r.annotations).toEqual({ company_id: "c-x" });
    expect(r.annotations_source).toBe("unsigned");
    expect((r.end as Record<string, unknown>).config_refused).toEqual(plain.refused);
    expect(plain.refused).toHaveLength(1);
    r = await endWith(plain.reportMeta, { company_id: "c-7" });
    expect(r.annotations_source).toBe("code");
    const signed = await jobConfig(await dispatchMetadata({ reportMeta: { company_id: "c-7" }, env }), { env });
    r = await endWith(signed.reportMeta, { stage: "x" });
    expect(r.annotations_source).toBe("signed");
    expect((r.end as Record<string, unknown>).config_refused).toBeUndefined();
    r = await endWith({ a: 1 });
    expect(r.annotations_source).toBe("code");
  });
});
