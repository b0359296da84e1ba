/** The `session.ended` document: protocol.md §6's field rules (as tests/vectors/report.json
 * decodes them), byte-compatibility with the shared `encodeReport`, the session section from
 * the SDK's own session report, crash drafts, U+FFFD, trimming, annotations. */
import { llm, voice } from "@livekit/agents";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { encodeReport, isValidId, parseReport } from "endcall";
import { draftDocument, encodeDocument, finalDocument, minimalDocument, trimReport } from "../../src/agent/report.js";
import { EndMachine, makeTrigger } from "../../src/agent/machine.js";
import { CUSTOMER, request, run, setup, untilEnded } from "./harness.js";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function realReport(ctxRoom = "interview-1") {
  const chat = new llm.ChatContext();
  chat.addMessage({ role: "assistant", content: "Welcome!" });
  chat.addMessage({ role: "user", content: "Thanks, bye" });
  return voice.createSessionReport({
    jobId: "AJ_1",
    roomId: "RM_1",
    room: ctxRoom,
    options: { userAwayTimeout: 15, maxToolSteps: 3 } as never,
    events: [],
    chatHistory: chat,
    startedAt: Date.now(),
  });
}

describe("the final report", () => {
  it("follows §6 and is byte-identical to encodeReport of what a receiver decodes", async () => {
    const s = setup({ reportMeta: { test_id: "t-42" } });
    const report = realReport();
    s.ctx.sessionReport = () => report;
    await s.end.start();
    s.end.annotate({ company_id: "c-7" });
    await run(1_000);
    const ack = s.local.call("end_interview", CUSTOMER, request("r1", { meta: { button: "end" } }));
    await untilEnded(s.end);
    await ack;
    const body = text(s.sink.stored[0]!.body);
    const r = parseReport(body);
    expect(encodeReport(r)).toBe(body); // the shared codec's bytes
    expect(r).toMatchObject({
      type: "session.ended",
      v: 1,
      end_id: s.end.endId,
      ended_reason: "customer-ended-call",
      initiator: { kind: "customer", identity: CUSTOMER },
      request_id: "r1",
      meta: { button: "end" },
      annotations: { test_id: "t-42", company_id: "c-7" },
      annotations_source: "code",
      room: { name: "interview-1", sid: "RM_1" },
      job_id: "AJ_1",
      agent_name: "interview-agent",
      complete: true,
    });
    expect(isValidId(r.end_id)).toBe(true);
    expect(r.ended_at).toBeGreaterThanOrEqual(r.started_at);
    expect(r.duration_s).toBeCloseTo(r.ended_at - r.started_at, 3);
    expect(Object.keys(r.end).sort()).toEqual(
      ["acked_at", "channel", "close_reason", "disconnect_reason", "drain_ms", "drain_s", "error", "requested_at", "shutdown_s"].sort(),
    );
    expect(r.usage).toEqual({ models: [] });
    // the session section is the SDK's own Python-shaped dict
    const sdk = JSON.parse(JSON.stringify(voice.sessionReportToJSON(report))) as Record<string, unknown>;
    expect(r.session).toEqual({ ...sdk, timestamp: (sdk.timestamp as number) / 1000 });
    expect(Math.abs((r.session.timestamp as number) - Date.now() / 1000)).toBeLessThan(60); // seconds, like Python
    const items = (r.session.chat_history as { items: { role: string; content: string[] }[] }).items;
    expect(items.map((i) => [i.role, i.content[0]])).toEqual([
      ["assistant", "Welcome!"],
      ["user", "Thanks, bye"],
    ]);
    expect(Object.keys(JSON.parse(body))).toEqual([
      "type", "v", "end_id", "ended_reason", "initiator", "request_id", "meta", "annotations", "annotations_source",
      "room", "job_id", "agent_name", "started_at", "ended_at", "duration_s", "complete", "usage", "end", "session",
    ]);
  });

  it("falls back to the session's own data while the RecorderIO records (makeSessionReport throws)", async () => {
    const s = setup();
    await s.end.start();
    s.session.addItem({ type: "message", role: "user", content: ["hi"] });
    await s.end.end("server-ended-call");
    await untilEnded(s.end);
    const r = parseReport(s.sink.stored[0]!.body);
    expect((r.session.chat_history as { items: unknown[] }).items).toHaveLength(1);
    expect(r.session.job_id).toBe("AJ_1");
  });

  it("text the agent could not encode arrives as U+FFFD", () => {
    const m = new EndMachine({ drainMs: 0, endId: "e_1" });
    m.submit(makeTrigger({ reason: "customer-ended-call", initiator: { kind: "customer", identity: "c" }, channel: "rpc", requestId: "r1", meta: { note: "half \ud800 pair" } }));
    const doc = finalDocument({
      record: m.record,
      ctx: null,
      session: null,
      roomName: "interview-1",
      startedAt: 1764000000,
      end: { channel: "rpc" },
      annotations: {},
      annotationsSource: "code",
      section: { chat_history: { items: [{ content: ["hi \udc00 there"] }] } },
    });
    const body = text(encodeDocument(doc));
    expect(body).not.toMatch(/\\ud[89abcdef]/i);
    const r = parseReport(body);
    expect(r.meta).toEqual({ note: "half \ufffd pair" });
    expect(JSON.stringify(r.session)).toContain("hi \ufffd there");
  });

  it("a minimal report names the error", () => {
    const m = new EndMachine({ drainMs: 0 });
    m.submit(makeTrigger({ reason: "agent-error", initiator: { kind: "system", identity: null }, channel: "session" }));
    const doc = minimalDocument(
      { record: m.record, ctx: null, session: null, roomName: "r", startedAt: 1, end: { channel: "session" }, annotations: {}, annotationsSource: "code" },
      new TypeError("boom"),
    );
    const r = parseReport(encodeDocument(doc));
    expect(r.end.report_error).toBe("TypeError: boom");
    expect(r.session).toEqual({});
  });

  it("is trimmed to the limit: events first, then other sections, tool items, then the oldest messages", () => {
    const m = new EndMachine({ drainMs: 0, endId: "e_1" });
    m.submit(makeTrigger({ reason: "customer-ended-call", initiator: { kind: "customer", identity: "c" }, channel: "rpc" }));
    const items = [
      { type: "message", role: "user", content: ["first " + "a".repeat(400)] },
      { type: "function_call", name: "lookup", arguments: "x".repeat(400) },
      { type: "message", role: "assistant", content: ["last " + "b".repeat(400)] },
    ];
    const doc = finalDocument({
      record: m.record, ctx: null, session: null, roomName: "r", startedAt: 1, end: {}, annotations: {}, annotationsSource: "code",
      section: { chat_history: { items }, events: new Array(50).fill({ type: "x", pad: "e".repeat(50) }), options: { big: "o".repeat(500) }, job_id: "AJ_1" },
    });
    const size = (d: typeof doc) => new TextEncoder().encode(encodeReport(d)).length;
    expect(trimReport(doc, size(doc))).toBe(doc);
    const t = trimReport(doc, 1_400);
    expect(size(t)).toBeLessThanOrEqual(1_400);
    expect(t.session.events).toEqual([]);
    expect(t.session.options).toBeUndefined();
    const kept = (t.session.chat_history as { items: { type: string; content?: string[] }[] }).items;
    expect(kept.map((i) => i.type)).toEqual(["message"]);
    expect(kept[0]!.content![0]).toMatch(/^last /); // the end of the transcript is kept
    expect(t.end.trimmed).toMatchObject({ events: 50, sections: ["options"], items: 1, messages: 1 });
    expect(parseReport(encodeReport(t)).complete).toBe(true);
  });
});

describe("crash drafts", () => {
  it("are complete:false agent-crashed reports the receiver accepts", () => {
    const doc = draftDocument({
      endId: "e_1", ctx: null, session: null, roomName: "interview-1", startedAt: Date.now() / 1000 - 5,
      annotations: { test_id: "t" }, annotationsSource: "code", section: { chat_history: { items: [] } },
    });
    const r = parseReport(encodeDocument(doc));
    expect(r).toMatchObject({ complete: false, ended_reason: "agent-crashed", initiator: { kind: "system", identity: null }, request_id: null, meta: null });
    expect(r.end).toMatchObject({ channel: null });
    expect(typeof r.end.checkpoint_at).toBe("number");
  });

  it("markEnding's draft body (for a row that does not exist yet) is a valid draft", async () => {
    const s = setup();
    await s.end.start();
    await s.end.end("server-ended-call");
    const r = parseReport(s.sink.endings[0]!.draftBody);
    expect(r).toMatchObject({ complete: false, end_id: s.end.endId, room: { name: "interview-1", sid: "RM_1" } });
  });
});

describe("annotations", () => {
  it("are checked: JSON values, at most 4,096 bytes; ignored once the report is built", async () => {
    expect(() => setup({ reportMeta: { bad: () => 1 } as never })).toThrow(TypeError);
    const s = setup({ reportMeta: { a: "x".repeat(4_000) } });
    expect(() => s.end.annotate({ b: "y".repeat(200) })).toThrow(RangeError);
    expect(() => s.end.annotate({ n: Number.NaN })).toThrow(RangeError);
    await s.end.start();
    await s.end.end("server-ended-call");
    await untilEnded(s.end);
    expect(s.end.annotate({ late: true })).toBe(false);
    expect(parseReport(s.sink.stored[0]!.body).annotations).toEqual({ a: "x".repeat(4_000) });
  });
});
