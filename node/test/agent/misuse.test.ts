/** Misuse is loud (clear errors) and survived (nothing throws into the room or the session). */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseReport } from "endcall";
import { EndCall } from "../../src/agent/end_call.js";
import { EndCallMisuseError } from "../../src/agent/misuse.js";
import { FakeJobContext, FakeRoom, FakeSession } from "../../src/testing/fakes.js";
import { MemorySink } from "../../src/testing/memory_sink.js";
import { CUSTOMER, request, run, setup, untilEnded } from "./harness.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

const make = (options: Record<string, unknown>) => () =>
  new EndCall(new FakeJobContext(), new FakeSession(), { sink: new MemorySink(), ...options } as never);

describe("misuse", () => {
  it("a second EndCall on one job throws", () => {
    const s = setup();
    expect(() => new EndCall(s.ctx, s.session, { sink: s.sink })).toThrow(EndCallMisuseError);
    expect(() => new EndCall(s.ctx, s.session, { sink: s.sink })).toThrow(/already exists for this JobContext/);
  });

  it("bad options throw naming the option, before the second-instance check", () => {
    expect(() => new EndCall(new FakeJobContext(), new FakeSession(), {} as never)).toThrow(/needs a `sink`/);
    expect(() => new EndCall(new FakeJobContext(), new FakeSession(), { sink: { store() {} } } as never)).toThrow(/sink.check/);
    expect(make({ drainTimeout: -1 })).toThrow(/drainTimeout/);
    expect(make({ closeTimeout: Number.NaN })).toThrow(/closeTimeout/);
    expect(make({ disconnectGrace: "3" })).toThrow(/disconnectGrace/);
    expect(make({ maxDuration: -5 })).toThrow(/maxDuration/);
    expect(make({ silenceTimeout: Infinity })).toThrow(/silenceTimeout/);
    expect(make({ method: "" })).toThrow(/method/);
    expect(make({ method: "m".repeat(65) })).toThrow(/method/);
    expect(make({ toolName: "1bad" })).toThrow(/toolName/);
    expect(make({ toolDescription: "  " })).toThrow(/toolDescription/);
    expect(make({ goodbye: { "Not a reason": "x" } })).toThrow(/goodbye/);
    expect(make({ goodbye: 42 })).toThrow(/goodbye/);
    expect(make({ reportMeta: { x: "y".repeat(5_000) } })).toThrow(/4096/);
    const s = setup();
    expect(() => new EndCall(s.ctx, s.session, { sink: s.sink, drainTimeout: -1 })).toThrow(/drainTimeout/);
    expect(make({ maxDuration: 0, silenceTimeout: null })).not.toThrow(); // off
  });

  it("start() before the room is connected says what to do", async () => {
    const room = new FakeRoom();
    room.localParticipant = undefined;
    const end = new EndCall(new FakeJobContext(room), new FakeSession(), { sink: new MemorySink() });
    await expect(end.start()).rejects.toThrow(/ctx.connect/);
    await expect(end.wait()).rejects.toThrow(/start\(\) was not called/);
  });

  it("start() never called: the job's end still builds the report (agent-error) and logs why", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const s = setup();
    const p = EndCall.onSessionEnd(s.ctx);
    await run(30_000);
    await p;
    const r = parseReport(s.sink.stored[0]!.body);
    expect(r.ended_reason).toBe("agent-error");
    expect(r.end.error).toMatch(/start\(\) was never called/);
    expect(errors.mock.calls.some((c) => String(c[0]).includes("start() was never called"))).toBe(true);
  });

  it("an unwritable outbox is an error at start(), and the call goes on", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const s = setup({}, { checkError: new Error("outbox /x is read-only: fix the path") });
    await s.end.start();
    expect(errors.mock.calls.some((c) => String(c[0]).includes("read-only"))).toBe(true);
    expect(s.end.state).toBe("active");
  });

  it("onSessionEnd for a job without EndCall only warns", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    await EndCall.onSessionEnd(new FakeJobContext());
    expect(warn).toHaveBeenCalled();
  });

  it("nothing throws into the room: garbage payloads, failing attributes, failing sinks", async () => {
    vi.spyOn(console, "warn").mockImplementation(() => undefined);
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    const s = setup();
    s.local.failAttributes = true;
    s.sink.store = async () => {
      throw new Error("disk full");
    };
    s.sink.deliver = async () => {
      throw new Error("network");
    };
    await s.end.start();
    expect(() => s.room.emit("dataReceived", new Uint8Array([0xff, 0xfe]), s.room.remoteParticipants.get(CUSTOMER), 0, "end_interview")).not.toThrow();
    expect(() => s.room.emit("dataReceived", null, undefined, 0, "end_interview")).not.toThrow();
    expect(() => s.room.emit("participantAttributesChanged", null, null)).not.toThrow();
    expect(() => s.room.emit("participantDisconnected", {})).not.toThrow();
    expect(() => s.room.emit("disconnected", undefined)).not.toThrow();
    expect(() => s.session.emit("close", null)).not.toThrow();
    await s.local.call("end_interview", CUSTOMER, request("r1")).catch(() => undefined);
    await untilEnded(s.end);
    await run(10_000);
    expect(s.end.report).not.toBeNull(); // built, kept in memory
    expect(s.ctx.shutdownReasons).toHaveLength(1);
  });

  it("a sink whose markEnding never answers delays acks by at most 1 s", async () => {
    const s = setup();
    s.sink.markEnding = () => new Promise<boolean>(() => undefined);
    await s.end.start();
    let done = false;
    void s.local.call("end_interview", CUSTOMER, request("r1")).then(() => {
      done = true;
    });
    await run(999);
    expect(done).toBe(false);
    await run(2);
    expect(done).toBe(true);
  });
});
