import { describe, expect, it } from "vitest";
import { EndMachine, initiatorKindFor, makeTrigger, newEndId } from "../../src/agent/machine.js";
import { isValidId } from "endcall";

const t = (reason: string, requestId: string | null = null, kind: "customer" | "system" = "customer") =>
  makeTrigger({ reason, initiator: { kind, identity: kind === "customer" ? "cand-1" : null }, channel: "rpc", requestId });

describe("EndMachine", () => {
  it("accepts the first trigger and answers later ones already_ending, then already_ended", () => {
    const m = new EndMachine({ drainMs: 12_000, endId: "e_1" });
    const a = m.submit(t("customer-ended-call", "r1"));
    expect(a.accepted).toBe(true);
    expect(a.ack).toEqual({ type: "end.ack", v: 1, id: "r1", status: "accepted", end_id: "e_1", reason: "customer-ended-call", drain_ms: 12_000 });
    const b = m.submit(t("exceeded-max-duration", "r2", "system"));
    expect(b.accepted).toBe(false);
    expect(b.ack.status).toBe("already_ending");
    expect(b.ack.reason).toBe("customer-ended-call"); // the effective reason
    m.finish();
    expect(m.submit(t("customer-ended-call", "r3")).ack.status).toBe("already_ended");
    expect(m.record.state).toBe("ended");
    expect(m.record.endedAt).not.toBeNull();
  });

  it("gives a repeated request id exactly the same ack, even after the state moved on", () => {
    const m = new EndMachine({ drainMs: 5 });
    const first = m.submit(t("customer-ended-call", "r1"));
    m.finish();
    const again = m.submit(t("customer-ended-call", "r1"));
    expect(again.replayed).toBe(true);
    expect(again.ack).toEqual(first.ack);
    const second = m.submit(t("customer-ended-call", "r2"));
    expect(second.ack.status).toBe("already_ended");
    expect(m.submit(t("customer-ended-call", "r2")).ack).toEqual(second.ack);
  });

  it("records the accepted trigger once and one end_id for every ack", () => {
    const m = new EndMachine({ drainMs: 0 });
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) ids.add(m.submit(t(i ? "customer-tab-closed" : "customer-ended-call", `r${i}`)).ack.end_id);
    expect(ids.size).toBe(1);
    expect(m.record.reason).toBe("customer-ended-call");
    expect(m.record.requestId).toBe("r0");
    expect(isValidId(m.endId)).toBe(true);
  });

  it("holds a tentative trigger; an accepted one takes over its disconnect reason", () => {
    const m = new EndMachine({ drainMs: 0 });
    const left = makeTrigger({ reason: "customer-disconnected", initiator: { kind: "customer", identity: "c" }, channel: "disconnect", disconnectReason: "CLIENT_INITIATED" });
    expect(m.hold(left)).toBe(true);
    expect(m.state).toBe("active");
    expect(m.hold(makeTrigger({ reason: "room-deleted", initiator: { kind: "server", identity: null }, channel: "room", error: "x" }))).toBe(false);
    expect(m.held?.error).toBe("x"); // details filled, the held one kept
    const v = m.submit(t("customer-tab-closed", "beacon"));
    expect(v.accepted).toBe(true);
    expect(m.held).toBeNull();
    expect(m.record.disconnectReason).toBe("CLIENT_INITIATED");
    expect(m.hold(left)).toBe(false); // not active any more
  });

  it("note fills only unset fields", () => {
    const m = new EndMachine({ drainMs: 0 });
    m.submit(t("customer-ended-call", "r1"));
    m.note({ disconnectReason: "A", error: null });
    m.note({ disconnectReason: "B", error: "boom" });
    expect(m.record.disconnectReason).toBe("A");
    expect(m.record.error).toBe("boom");
  });

  it("forgets the oldest request ids past its bound", () => {
    const m = new EndMachine({ drainMs: 0, maxRemembered: 2 });
    m.submit(t("customer-ended-call", "r1"));
    m.submit(t("customer-ended-call", "r2"));
    m.submit(t("customer-ended-call", "r3"));
    expect(m.submit(t("customer-ended-call", "r1")).replayed).toBe(false);
    expect(m.submit(t("customer-ended-call", "r3")).replayed).toBe(true);
  });

  it("refuses a bad end_id or drain_ms", () => {
    expect(() => new EndMachine({ drainMs: 0, endId: "bad id" })).toThrow(RangeError);
    expect(() => new EndMachine({ drainMs: -1 })).toThrow(RangeError);
    expect(() => new EndMachine({ drainMs: 1.5 })).toThrow(RangeError);
  });

  it("knows each reason's initiator kind", () => {
    expect(initiatorKindFor("customer-ended-call")).toBe("customer");
    expect(initiatorKindFor("customer-tab-closed")).toBe("customer");
    expect(initiatorKindFor("assistant-ended-call")).toBe("agent");
    expect(initiatorKindFor("server-ended-call")).toBe("server");
    expect(initiatorKindFor("room-deleted")).toBe("server");
    for (const r of ["exceeded-max-duration", "silence-timed-out", "worker-shutdown", "agent-error", "custom-x"]) {
      expect(initiatorKindFor(r)).toBe("system");
    }
    expect(isValidId(newEndId())).toBe(true);
  });
});
