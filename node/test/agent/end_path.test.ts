/** The end path: ack before the drain, drain-then-shutdown, store before deliver, attributes,
 * the job shutdown, the room deletion, and the job hooks (onSessionEnd). */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseAck, parseReport } from "endcall";
import { EndCall } from "../../src/agent/end_call.js";
import { CUSTOMER, request, run, setup, untilEnded } from "./harness.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("end path", () => {
  it("customer end: ack, interrupt, shutdown(drain), report stored then delivered, job shutdown, room deleted", async () => {
    const { end, local, session, sink, ctx } = setup();
    await end.start();
    const ack = parseAck(await local.call("end_interview", CUSTOMER, request("r1")));
    expect(ack.status).toBe("accepted");
    await untilEnded(end);
    expect(session.interrupts).toBe(1);
    expect(session.said).toHaveLength(0); // no goodbye on a customer end
    expect(session.shutdowns).toEqual([{ drain: true, reason: "customer-ended-call" }]);
    expect(sink.endings).toHaveLength(1);
    expect(sink.endings[0]!.ending).toEqual({
      reason: "customer-ended-call",
      initiator: { kind: "customer", identity: CUSTOMER },
      request_id: "r1",
      meta: null,
    });
    expect(sink.stored).toHaveLength(1);
    expect(ctx.shutdownReasons).toEqual(["customer-ended-call"]);
    await run(10_000);
    expect(sink.deliveries).toEqual([{ endId: end.endId, withinMs: undefined }]);
    expect(ctx.roomsDeleted).toBe(1);
    const report = parseReport(sink.stored[0]!.body);
    expect(report).toMatchObject({ end_id: end.endId, ended_reason: "customer-ended-call", request_id: "r1", complete: true });
    expect(report.end).toMatchObject({ channel: "rpc", close_reason: "customer-ended-call", drain_ms: ack.drain_ms });
    // the attributes, in order: active … ending … ended/stored … delivered
    const states = local.attributeWrites.map((w) => w["endcall.state"]).filter(Boolean);
    expect(states).toEqual(["active", "ending", "ended"]);
    expect(local.attributes["endcall.report"]).toBe("delivered");
    expect(end.report).toEqual(sink.stored[0]!.body);
    expect(Object.keys((end as unknown as { path: { steps: { durations(): object } } }).path.steps.durations())).toEqual([
      "drain", "close", "report", "store", "delivery", "total",
    ]);
    expect(end.delivery?.delivered).toBe(true);
  });

  it("the ack does not wait for the drain", async () => {
    const { end, local, session } = setup({ goodbye: "Bye!" });
    session.sayPlayoutMs = null; // the goodbye never finishes
    await end.start();
    await end.end("exceeded-max-duration", { goodbye: true });
    expect(end.state).toBe("ending");
    const ack = parseAck(await local.call("end_interview", CUSTOMER, request("r2")));
    expect(ack.status).toBe("already_ending");
    expect(session.said.map((s) => s.text)).toEqual(["Bye!"]);
    await untilEnded(end);
    expect(end.record.reason).toBe("exceeded-max-duration");
    // the drain hit its bound: the session is shut down without draining
    expect(session.shutdowns).toEqual([{ drain: false, reason: "exceeded-max-duration" }]);
  });

  it("marks drain_timed_out and close_timed_out in the report", async () => {
    const { end, session, sink } = setup({ goodbye: "Bye!", drainTimeout: 1, closeTimeout: 1 });
    session.sayPlayoutMs = null;
    session.closeDelayMs = null;
    await end.start();
    await end.end("silence-timed-out", { goodbye: true });
    await untilEnded(end);
    const r = parseReport(sink.stored[0]!.body);
    expect(r.end).toMatchObject({ drain_timed_out: true, close_timed_out: true, channel: "api" });
    expect(r.end.close_reason).toBeNull();
  });

  it("the acks wait for the accepted end to be durable (markEnding), at most 1 s", async () => {
    const { end, local, sink } = setup({}, { delayMs: 300 });
    await end.start();
    let answered = false;
    const p = local.call("end_interview", CUSTOMER, request("r1")).then((a) => {
      answered = true;
      return a;
    });
    await run(200);
    expect(answered).toBe(false);
    await run(200);
    expect(answered).toBe(true);
    expect(sink.endings).toHaveLength(1);
    await p;
  });

  it("an unstored report is delivered from memory and says report=pending, then failed when undelivered", async () => {
    const { end, local, sink } = setup({}, { storeResult: false, delivered: false });
    await end.start();
    await local.call("end_interview", CUSTOMER, request("r1"));
    await untilEnded(end);
    await run(10_000);
    expect(sink.deliveries).toHaveLength(1);
    // (attribute updates are coalesced: "pending" may be merged into "failed")
    expect(local.attributes["endcall.state"]).toBe("ended");
    expect(local.attributes["endcall.report"]).toBe("failed");
  });

  it("deleteRoom: false keeps the room; a room already gone is never deleted by name", async () => {
    const a = setup({ deleteRoom: false });
    await a.end.start();
    await a.end.end("server-ended-call");
    await untilEnded(a.end);
    await run(10_000);
    expect(a.ctx.roomsDeleted).toBe(0);

    const b = setup({ shutdownGrace: 0 });
    await b.end.start();
    b.room.disconnect(5); // ROOM_DELETED
    await untilEnded(b.end);
    await run(10_000);
    expect(b.end.record.reason).toBe("room-deleted");
    expect(b.ctx.roomsDeleted).toBe(0);
  });

  it("onSessionEnd waits for the report's delivery; EndCall.of finds the instance", async () => {
    const { end, ctx, local, sink } = setup({}, { delayMs: 5_000 });
    await end.start();
    const acked = local.call("end_interview", CUSTOMER, request("r1"));
    await run(1_000);
    expect(parseAck(await acked).status).toBe("accepted"); // after at most 1 s, durable or not
    expect(EndCall.of(ctx)).toBe(end);
    let finished = false;
    const hook = EndCall.onSessionEnd(ctx).then(() => {
      finished = true;
    });
    await run(3_000);
    expect(finished).toBe(false);
    await run(20_000);
    await hook;
    expect(finished).toBe(true);
    expect(sink.deliveries).toHaveLength(1);
    expect(local.attributes["endcall.report"]).toBe("delivered");
  });

  it("wrapSessionEnd runs EndCall's hook first, then the user's", async () => {
    const { end, ctx, sink } = setup();
    await end.start();
    const seen: number[] = [];
    const hook = EndCall.wrapSessionEnd(async () => {
      seen.push(sink.stored.length);
    });
    const p = hook(ctx);
    await run(30_000);
    await p;
    expect(seen).toEqual([1]); // the report was stored before the user's hook ran
    expect(end.record.reason).toBe("server-ended-call"); // the job ended it: nothing else had
  });

  it("the job's shutdown callback finishes the end without onSessionEnd (and says so)", async () => {
    const { end, ctx, sink } = setup();
    await end.start();
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const p = ctx.runShutdownCallbacks();
    await run(30_000);
    await p;
    expect(sink.stored).toHaveLength(1);
    expect(errors.mock.calls.some((c) => String(c[0]).includes("onSessionEnd is not wired"))).toBe(true);
    errors.mockRestore();
  });

  it("crash drafts: at start, after conversation items (throttled), every interval, stopped at the end", async () => {
    const { end, session, sink } = setup({ checkpointInterval: 5 });
    await end.start();
    await run(0);
    expect(sink.drafts).toHaveLength(1);
    const first = JSON.parse(new TextDecoder().decode(sink.drafts[0]!.body)) as Record<string, unknown>;
    expect(first).toMatchObject({ complete: false, ended_reason: "agent-crashed", end_id: end.endId });
    session.addItem({ type: "message", role: "user", content: ["hello"] });
    await run(0);
    expect(sink.drafts).toHaveLength(2);
    session.addItem({ type: "message", role: "assistant", content: ["hi"] });
    await run(0);
    const n = sink.drafts.length;
    expect(n).toBe(3);
    expect(JSON.stringify(JSON.parse(new TextDecoder().decode(sink.drafts[2]!.body)))).toContain('"hi"');
    await run(5_000);
    expect(sink.drafts.length).toBeGreaterThan(n); // the interval
    expect(sink.scopes).toEqual([{ endId: end.endId, scope: "RM_1/agent-1" }]);
    await end.end("server-ended-call");
    await untilEnded(end);
    const after = sink.drafts.length;
    await run(30_000);
    expect(sink.drafts.length).toBe(after);
  });
});
