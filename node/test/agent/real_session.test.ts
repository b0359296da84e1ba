/** EndCall on a real `@livekit/agents` AgentSession and JobContext (FakeLLM, no audio, a fake
 * room): the LLM calls the end tool, the goodbye turn plays, the session is shut down with
 * drain, the report carries the SDK's own session report (the real chat history, tool call
 * included), and the job is shut down with the reason. */
import { JobContext, initializeLogger, llm, voice } from "@livekit/agents";
import { beforeAll, describe, expect, it } from "vitest";
import { parseReport } from "endcall";
import { EndCall } from "../../src/agent/end_call.js";
import { FakeRoom } from "../../src/testing/fakes.js";
import { MemorySink } from "../../src/testing/memory_sink.js";

beforeAll(() => {
  initializeLogger({ pretty: false, level: "silent" });
});

function realJob(room: FakeRoom, shutdowns: string[]): JobContext {
  return new JobContext(
    {} as never,
    {
      acceptArguments: { name: "agent", identity: "agent-1", metadata: "" },
      job: { id: "AJ_real", agentName: "interview-agent", room: { name: room.name, sid: "RM_real" }, attributes: {} } as never,
      url: "wss://example.invalid",
      token: "token",
      workerId: "worker-id",
      fakeJob: true,
    },
    room as never,
    () => undefined,
    (reason: string) => shutdowns.push(reason),
    {} as never,
  );
}

async function until(pred: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("a real AgentSession", () => {
  it("the LLM's end tool ends the call with assistant-ended-call and a full report", async () => {
    const room = new FakeRoom();
    room.join("cand-1");
    const shutdowns: string[] = [];
    const ctx = realJob(room, shutdowns);
    const model = new voice.testing.FakeLLM([
      { input: "I am done, bye", content: "Thanks for your time.", toolCalls: [{ name: "end_call", args: {} }] },
      { input: '"say goodbye to the user"', content: "Goodbye!" },
    ]);
    const session = new voice.AgentSession({ llm: model, vad: null });
    const sink = new MemorySink();
    const end = new EndCall(ctx, session, { sink, closeTimeout: 5, drainTimeout: 5 });
    await session.start({ agent: new voice.Agent({ instructions: "interview", tools: [end.tool] }) });
    await end.start();
    expect(room.localParticipant!.attributes["endcall.state"]).toBe("active");

    session.generateReply({ userInput: "I am done, bye" });
    await until(() => end.state === "ended");
    expect(end.record).toMatchObject({ reason: "assistant-ended-call", channel: "tool" });
    expect(shutdowns).toEqual(["assistant-ended-call"]);
    const r = parseReport(sink.stored[0]!.body);
    expect(r).toMatchObject({ ended_reason: "assistant-ended-call", initiator: { kind: "agent", identity: "agent-1" }, job_id: "AJ_real", complete: true });
    expect(r.end.close_reason).toBe("assistant-ended-call");
    const items = (r.session.chat_history as { items: { type: string; role?: string; name?: string; content?: string[] }[] }).items;
    expect(items.some((i) => i.type === "function_call" && i.name === "end_call")).toBe(true);
    const said = items.filter((i) => i.role === "assistant").map((i) => i.content?.join(""));
    expect(said).toContain("Thanks for your time.");
    expect(said).toContain("Goodbye!"); // the reply to the tool (the goodbye) played before the shutdown
    expect(r.session.sdk_version).toBeDefined(); // the SDK's own report (sessionReportToJSON)
    await EndCall.onSessionEnd(ctx);
    expect(sink.deliveries).toHaveLength(1);
  });

  it("a fixed goodbye is said after the calling turn (the tool asks for no reply)", async () => {
    const room = new FakeRoom();
    room.join("cand-1");
    const ctx = realJob(room, []);
    const model = new voice.testing.FakeLLM([
      { input: "bye", content: "Noted.", toolCalls: [{ name: "end_call", args: {} }] },
    ]);
    const session = new voice.AgentSession({ llm: model, vad: null });
    const sink = new MemorySink();
    const end = new EndCall(ctx, session, { sink, goodbye: "Thank you. Goodbye!" });
    await session.start({ agent: new voice.Agent({ instructions: "x", tools: [end.tool] }) });
    await end.start();
    session.generateReply({ userInput: "bye" });
    await until(() => end.state === "ended");
    const r = parseReport(sink.stored[0]!.body);
    const said = (r.session.chat_history as { items: { role?: string; content?: string[] }[] }).items
      .filter((i) => i.role === "assistant")
      .map((i) => i.content?.join(""));
    expect(said.slice(-2)).toEqual(["Noted.", "Thank you. Goodbye!"]);
    expect(r.end.drain_timed_out).toBeUndefined();
  });

  it("the customer's RPC: ack first, then the session is shut down with drain and the job with the reason", async () => {
    const room = new FakeRoom();
    room.join("cand-1");
    const shutdowns: string[] = [];
    const ctx = realJob(room, shutdowns);
    const session = new voice.AgentSession({ llm: new voice.testing.FakeLLM([]), vad: null });
    const sink = new MemorySink();
    const end = new EndCall(ctx, session, { sink });
    await session.start({ agent: new voice.Agent({ instructions: "x", tools: [end.tool] }) });
    await end.start();
    const events: string[] = [];
    session.on(voice.AgentSessionEventTypes.Close, (ev) => events.push(`close:${String(ev.reason)}`));
    const ack = JSON.parse(await room.localParticipant!.call("end_interview", "cand-1", JSON.stringify({ type: "end.request", v: 1, id: "r1" })));
    events.push(`ack:${ack.status}`);
    await until(() => end.state === "ended");
    // the report is built once the history is final (the real session's drained activity),
    // before or after the rest of its close; the close follows, with the reason it was given
    await until(() => events.length === 2);
    expect(events).toEqual(["ack:accepted", "close:customer-ended-call"]);
    expect(shutdowns).toEqual(["customer-ended-call"]);
    const r = parseReport(sink.stored[0]!.body);
    expect(r).toMatchObject({ ended_reason: "customer-ended-call", request_id: "r1", initiator: { kind: "customer", identity: "cand-1" } });
    expect(r.end.close_reason).toBe("customer-ended-call");
    expect(r.end.close_timed_out).toBeUndefined();
    expect(room.localParticipant!.attributes).toMatchObject({ "endcall.state": "ended", "endcall.end_id": end.endId, "endcall.request_id": "r1" });
  });

  it("user code closing the session is server-ended-call", async () => {
    const room = new FakeRoom();
    room.join("cand-1");
    const shutdowns: string[] = [];
    const ctx = realJob(room, shutdowns);
    const session = new voice.AgentSession({ llm: new voice.testing.FakeLLM([]), vad: null });
    const sink = new MemorySink();
    const end = new EndCall(ctx, session, { sink });
    await session.start({ agent: new voice.Agent({ instructions: "x", tools: [end.tool] }) });
    await end.start();
    await session.close();
    await until(() => end.state === "ended");
    const r = parseReport(sink.stored[0]!.body);
    expect(r.ended_reason).toBe("server-ended-call");
    expect(r.end.close_reason).toBe("user_initiated");
    void llm;
  });
});
