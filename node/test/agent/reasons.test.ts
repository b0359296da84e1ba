/** Every reason, from every channel that produces it: the first accepted trigger wins; the
 * graces of tentative ends; the timers on a fake clock; the end tool. */
import { llm } from "@livekit/agents";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseAck, parseReport } from "endcall";
import { EventEmitter } from "node:events";
import { jobIpc } from "../../src/agent/job_lifecycle.js";
import { FakeSpeechHandle } from "../../src/testing/fakes.js";

class FakeIpc extends EventEmitter {
  readonly sent: unknown[] = [];
  send = (message: unknown): boolean => {
    this.sent.push(message);
    return true;
  };
}
import { CUSTOMER, request, run, setup, untilEnded } from "./harness.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

async function reportOf(s: ReturnType<typeof setup>) {
  await untilEnded(s.end);
  return parseReport(s.sink.stored[0]!.body);
}

describe("customer-disconnected and its grace", () => {
  it("the customer leaving ends after the grace with LiveKit's DisconnectReason", async () => {
    const s = setup();
    await s.end.start();
    s.room.leave(CUSTOMER, 1); // CLIENT_INITIATED
    await run(2_900);
    expect(s.end.state).toBe("active");
    await run(200);
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "customer-disconnected", initiator: { kind: "customer", identity: CUSTOMER } });
    expect(r.end).toMatchObject({ channel: "disconnect", disconnect_reason: "CLIENT_INITIATED" });
  });

  it("an end request within the grace (the tab-close beacon through the server) wins with its own reason", async () => {
    const s = setup();
    await s.end.start();
    s.room.leave(CUSTOMER, 1);
    await run(1_000);
    s.local.serverWrites({ "endcall.request": request("r_beacon", { reason: "customer-tab-closed", initiator: CUSTOMER }) });
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "customer-tab-closed", request_id: "r_beacon" });
    expect(r.end).toMatchObject({ channel: "server", disconnect_reason: "CLIENT_INITIATED" });
  });

  it("RoomIO closing the session for the leave decides nothing more during the grace", async () => {
    const s = setup();
    await s.end.start();
    s.room.leave(CUSTOMER, 1);
    s.session.close("participant_disconnected");
    await run(3_100);
    const r = await reportOf(s);
    expect(r.ended_reason).toBe("customer-disconnected");
    expect(r.end.close_reason).toBe("participant_disconnected");
  });

  it("a customer who dropped and rejoins within the grace goes on", async () => {
    const s = setup({ disconnectGrace: 3 });
    s.session._roomIO.inputOptions.closeOnDisconnect = true;
    await s.end.start();
    s.room.leave(CUSTOMER, 14); // CONNECTION_TIMEOUT: RoomIO keeps the session
    await run(1_000);
    s.room.join(CUSTOMER);
    await run(10_000);
    expect(s.end.state).toBe("active");
  });

  it("disconnectGrace 0 ends at once; closeOnDisconnect=false never ends on a leave", async () => {
    const a = setup({ disconnectGrace: 0 });
    await a.end.start();
    a.room.leave(CUSTOMER, 1);
    expect(a.end.state).not.toBe("active");

    const b = setup();
    b.session._roomIO.inputOptions.closeOnDisconnect = false;
    await b.end.start();
    b.room.leave(CUSTOMER, 1);
    await run(10_000);
    expect(b.end.state).toBe("active");
  });

  it("the room closing behind the customer accepts at once", async () => {
    const s = setup();
    await s.end.start();
    s.room.disconnect(10); // ROOM_CLOSED
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "customer-disconnected" });
    expect(r.end).toMatchObject({ channel: "room", disconnect_reason: "ROOM_CLOSED" });
  });
});

describe("room, job and session", () => {
  it("room-deleted is tentative for shutdownGrace: a request on its way wins", async () => {
    const s = setup();
    await s.end.start();
    s.room.disconnect(5); // ROOM_DELETED
    await run(500);
    expect(s.end.state).toBe("active");
    s.local.serverWrites({ "endcall.request": request("late", { reason: "customer-ended-call", initiator: CUSTOMER }) });
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "customer-ended-call", request_id: "late" });
    expect(r.end.disconnect_reason).toBe("ROOM_DELETED");
  });

  it("room-deleted after the grace, initiated by the server", async () => {
    const s = setup();
    await s.end.start();
    s.room.disconnect(5);
    await run(1_100);
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "room-deleted", initiator: { kind: "server", identity: null } });
    expect(r.end.channel).toBe("room");
  });

  it("the agent disconnected for another reason is agent-error", async () => {
    const s = setup();
    await s.end.start();
    s.room.disconnect(3); // SERVER_SHUTDOWN
    const r = await reportOf(s);
    expect(r.ended_reason).toBe("agent-error");
    expect(r.end.error).toContain("SERVER_SHUTDOWN");
  });

  it("user code calling ctx.shutdown() is server-ended-call over the job channel", async () => {
    const s = setup();
    await s.end.start();
    s.ctx.shutdown("done");
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "server-ended-call", initiator: { kind: "server" } });
    expect(r.end).toMatchObject({ channel: "job", job_shutdown_reason: "done" });
    expect(s.ctx.shutdownReasons).toEqual(["done"]); // EndCall does not shut it down twice
  });

  it("the worker's shutdownRequest is worker-shutdown (after shutdownGrace)", async () => {
    const s = setup();
    const ipc = new FakeIpc();
    vi.spyOn(jobIpc, "source").mockReturnValue(ipc);
    await s.end.start();
    ipc.emit("message", { case: "pingRequest", value: { timestamp: 1 } }); // ignored
    ipc.emit("message", { case: "shutdownRequest", value: { reason: "SIGTERM" } });
    ipc.send({ case: "exiting", value: { reason: "SIGTERM" } });
    s.session.close("user_initiated"); // the job closes the session (Node's close reason)
    await run(500);
    expect(s.end.state).toBe("active"); // tentative: a request on its way may still explain it
    await run(600);
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "worker-shutdown", initiator: { kind: "system" } });
    expect(r.end).toMatchObject({ channel: "job", job_shutdown_reason: "SIGTERM", close_reason: "user_initiated" });
    expect(s.ctx.shutdownReasons).toEqual([]); // the job is already shutting down
    expect(ipc.sent).toHaveLength(1); // the job's own messages pass through
  });

  it("a crashed entrypoint is agent-error (seen in the job's own exiting message)", async () => {
    const s = setup();
    const ipc = new FakeIpc();
    vi.spyOn(jobIpc, "source").mockReturnValue(ipc);
    await s.end.start();
    ipc.send({ case: "exiting", value: { reason: "job crashed" } });
    s.session.close("user_initiated");
    const r = await reportOf(s);
    expect(r.ended_reason).toBe("agent-error");
    expect(r.end).toMatchObject({ channel: "job", error: "job crashed", job_shutdown_reason: "job crashed" });
  });

  it("stops watching at the job's end: ctx.shutdown and the IPC are restored", async () => {
    const s = setup();
    const ipc = new FakeIpc();
    const send = ipc.send;
    vi.spyOn(jobIpc, "source").mockReturnValue(ipc);
    const shutdown = s.ctx.shutdown;
    await s.end.start();
    expect(s.ctx.shutdown).not.toBe(shutdown);
    expect(ipc.listenerCount("message")).toBe(1);
    const p = s.ctx.runShutdownCallbacks();
    await run(30_000);
    await p;
    expect(s.ctx.shutdown).toBe(shutdown);
    expect(ipc.send).toBe(send);
    expect(ipc.listenerCount("message")).toBe(0);
  });

  it("a session error is agent-error with the error", async () => {
    const s = setup();
    await s.end.start();
    s.session.close("error", { type: "llm_error", error: new Error("quota") });
    const r = await reportOf(s);
    expect(r.ended_reason).toBe("agent-error");
    expect(r.end).toMatchObject({ channel: "session", error: "llm_error: quota", close_reason: "error" });
  });

  it("user code closing the session is server-ended-call", async () => {
    const s = setup();
    await s.end.start();
    s.session.close("user_initiated");
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "server-ended-call" });
    expect(r.end.channel).toBe("session");
  });

  it("end() from code: any valid reason, an initiator, meta and a request id", async () => {
    const s = setup();
    await s.end.start();
    const ack = await s.end.end("backend-cancelled", { initiator: { kind: "server", identity: "ops" }, meta: { why: "x" }, requestId: "api1" });
    expect(ack).toMatchObject({ id: "api1", status: "accepted", reason: "backend-cancelled" });
    expect((await s.end.end("server-ended-call", { requestId: "api1" })).status).toBe("accepted"); // same id, same ack
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "backend-cancelled", initiator: { kind: "server", identity: "ops" }, meta: { why: "x" } });
    expect((await s.end.end("server-ended-call")).status).toBe("already_ended");
    await expect(s.end.end("Not A Reason")).rejects.toThrow(RangeError);
    await expect(s.end.end("server-ended-call", { requestId: "bad id" })).rejects.toThrow(RangeError);
  });
});

describe("timers", () => {
  it("maxDuration ends with exceeded-max-duration and its goodbye", async () => {
    const s = setup({ maxDuration: 60, goodbye: { "exceeded-max-duration": "Our time is up.", "*": "Bye" } });
    await s.end.start();
    await run(59_000);
    expect(s.end.state).toBe("active");
    await run(1_000);
    expect(s.end.state).not.toBe("active");
    const r = await reportOf(s);
    expect(r).toMatchObject({ ended_reason: "exceeded-max-duration", initiator: { kind: "system", identity: null } });
    expect(r.end.channel).toBe("timer");
    expect(s.session.said.map((h) => h.text)).toEqual(["Our time is up."]);
    expect(s.session.interrupts).toBe(0);
  });

  it("silenceTimeout counts from the start or the end of the customer's last speech", async () => {
    const s = setup({ silenceTimeout: 10 });
    await s.end.start();
    await run(8_000);
    s.session.emit("user_state_changed", { newState: "speaking" });
    await run(30_000); // speaking: no count
    expect(s.end.state).toBe("active");
    s.session.emit("user_state_changed", { newState: "listening" });
    await run(9_000);
    s.session.emit("user_input_transcribed", { transcript: "hm", isFinal: true });
    await run(9_000);
    expect(s.end.state).toBe("active");
    s.session.emit("user_state_changed", { newState: "away" }); // away changes nothing
    await run(1_100);
    const r = await reportOf(s);
    expect(r.ended_reason).toBe("silence-timed-out");
    expect(s.session.said).toHaveLength(0); // no goodbye configured
  });

  it("timers stop once the call is ending", async () => {
    const s = setup({ maxDuration: 5, silenceTimeout: 3 });
    await s.end.start();
    await s.end.end("server-ended-call");
    await run(10_000);
    expect(s.end.record.reason).toBe("server-ended-call");
  });
});

describe("end tool", () => {
  const toolCtx = (s: ReturnType<typeof setup>, handle: FakeSpeechHandle) => ({
    ctx: { session: s.session, speechHandle: handle },
    toolCallId: "call_1",
    abortSignal: new AbortController().signal,
  });

  it("has the configured name and description", () => {
    const s = setup({ toolName: "end_interview", toolDescription: "Call when the interview is over." });
    expect(s.end.tool.name).toBe("end_interview");
    expect(s.end.tool.description).toBe("Call when the interview is over.");
    expect(setup().end.tool.name).toBe("end_call");
  });

  it("with a fixed goodbye: no reply, waits for the calling turn, then says it", async () => {
    const s = setup({ goodbye: "Thank you. Goodbye!" });
    await s.end.start();
    const turn = new FakeSpeechHandle("turn");
    const out = await s.end.tool.execute({}, toolCtx(s, turn) as never);
    expect(out).toBeUndefined();
    expect(s.end.record).toMatchObject({ reason: "assistant-ended-call", channel: "tool" });
    expect(s.end.record.initiator).toEqual({ kind: "agent", identity: "agent-1" });
    await run(1_000);
    expect(s.session.said).toHaveLength(0); // the calling turn still plays
    turn.finish();
    await run(100);
    expect(s.session.said.map((h) => h.text)).toEqual(["Thank you. Goodbye!"]);
    const r = await reportOf(s);
    expect(r.ended_reason).toBe("assistant-ended-call");
    expect(s.session.interrupts).toBe(0);
    // a second call while ending returns nothing and changes nothing
    expect(await s.end.tool.execute({}, toolCtx(s, new FakeSpeechHandle()) as never)).toBeUndefined();
  });

  it("without a goodbye the model says it (the tool asks for it)", async () => {
    const s = setup();
    await s.end.start();
    const turn = new FakeSpeechHandle();
    expect(await s.end.tool.execute({}, toolCtx(s, turn) as never)).toBe("say goodbye to the user");
    turn.finish();
    await reportOf(s);
    expect(s.session.said).toHaveLength(0);
  });

  it("a customer request after the tool gets already_ending with the tool's reason", async () => {
    const s = setup();
    await s.end.start();
    await s.end.tool.execute({}, toolCtx(s, new FakeSpeechHandle()) as never);
    const ack = parseAck(await s.local.call("end_interview", CUSTOMER, request("r1")));
    expect(ack).toMatchObject({ status: "already_ending", reason: "assistant-ended-call" });
  });
});

describe("end tool with an auto-replying realtime model", () => {
  class RtModel extends llm.RealtimeModel {
    constructor() {
      super({ messageTruncation: false, turnDetection: true, userTranscription: true, autoToolReplyGeneration: true, audioOutput: true, manualFunctionCalls: false } as never);
    }
    get model(): string {
      return "rt";
    }
    session(): never {
      throw new Error("unused");
    }
    async close(): Promise<void> {}
  }

  function realtime(s: ReturnType<typeof setup>) {
    (s.session as unknown as { currentAgent: unknown }).currentAgent = { getActivityOrThrow: () => ({ llm: new RtModel() }) };
  }

  it("tells the model the goodbye's words and waits for its next speech to play out", async () => {
    const s = setup({ goodbye: "Bye now." });
    realtime(s);
    await s.end.start();
    const turn = new FakeSpeechHandle("turn");
    const out = await s.end.tool.execute({}, { ctx: { session: s.session, speechHandle: turn }, toolCallId: "c", abortSignal: new AbortController().signal } as never);
    expect(out).toBe('Say exactly this goodbye to the user, nothing else: "Bye now."');
    turn.finish();
    const reply = new FakeSpeechHandle("reply");
    s.session.emit("speech_created", { speechHandle: turn }); // the calling turn itself: not the reply
    s.session.emit("speech_created", { speechHandle: reply });
    await run(3_000);
    expect(s.end.state).toBe("ending"); // the reply still plays
    reply.finish();
    await untilEnded(s.end);
    expect(s.session.said).toHaveLength(0); // the model said it, not session.say
    expect(s.end.record.reason).toBe("assistant-ended-call");
  });

  it("a model that does not reply within 5 s does not hold the end", async () => {
    vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const s = setup({ drainTimeout: 30 });
    realtime(s);
    await s.end.start();
    const turn = new FakeSpeechHandle("turn");
    turn.finish();
    expect(await s.end.tool.execute({}, { ctx: { session: s.session, speechHandle: turn }, toolCallId: "c", abortSignal: new AbortController().signal } as never)).toBe("say goodbye to the user");
    await run(4_900);
    expect(s.end.state).toBe("ending");
    await run(200);
    await untilEnded(s.end, 1_000);
    expect(s.end.state).toBe("ended");
    expect(parseReport(s.sink.stored[0]!.body).end.drain_timed_out).toBeUndefined();
  });
});
