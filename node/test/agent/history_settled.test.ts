/** The close step waits for the session's history to be final, not for the SDK's whole close:
 * @livekit/agents 1.9's `closeImplInner` pauses 500 ms for a user turn after the activity is
 * drained, then tears down; the report is built as soon as the history cannot change (the
 * activity drained, nothing speaking, no tool running, the audio input detached, no customer
 * words pending), and otherwise — or when EndCall did not start the close — after `close`. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseReport } from "endcall";
import { historySettled, UserWords } from "../../src/agent/end_path.js";
import type { FakeSession } from "../../src/testing/fakes.js";
import { CUSTOMER, request, run, setup } from "./harness.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** The SDK's state once `closeImplInner` drained the activity and detached the audio input
 * (before its 500 ms user-turn pause and the teardown). */
function drainedActivity(): Record<string, unknown> {
  return {
    _schedulingPaused: true,
    _mainTask: { done: true },
    speechTasks: new Set([{ done: true }]),
    _currentSpeech: { done: () => true },
    _toolExecutor: { runningTasks: new Map() },
  };
}

/** `shutdown()` reaches the drained state `afterMs` later; `close` comes `closeMs` after it. */
function slowClose(session: FakeSession, closeMs: number, afterMs = 20, activity = drainedActivity()): void {
  const s = session as unknown as Record<string, unknown>;
  s.activity = { _schedulingPaused: false, _mainTask: { done: false }, speechTasks: new Set(), _toolExecutor: { runningTasks: new Map() } };
  s.input = { audio: { stream: true } };
  session.closeDelayMs = closeMs;
  const shutdown = session.shutdown.bind(session);
  session.shutdown = (options) => {
    shutdown(options);
    setTimeout(() => {
      s.activity = activity;
      s.input = { audio: null };
    }, afterMs);
  };
}

function storedAt(sink: { stored: unknown[] }, session: FakeSession) {
  const seen: { stored: number | null; closed: number | null } = { stored: null, closed: null };
  session.on("close", () => {
    seen.closed ??= Date.now();
  });
  const t = setInterval(() => {
    if (sink.stored.length && seen.stored === null) seen.stored = Date.now();
  }, 5);
  return { seen, stop: () => clearInterval(t) };
}

describe("the close step waits for the history, not the whole close", () => {
  it("the report is built once the history is final, before a slow close; close_reason is the shutdown's", async () => {
    const { end, local, session, sink, ctx } = setup();
    slowClose(session, 3_000);
    session.addItem({ type: "message", role: "user", content: ["my answer"] });
    await end.start();
    const t0 = Date.now();
    const w = storedAt(sink, session);
    await local.call("end_interview", CUSTOMER, request("r1"));
    await run(500);
    expect(end.state).toBe("ended"); // long before the close (3 s)
    expect(sink.stored).toHaveLength(1);
    expect(w.seen.stored! - t0).toBeLessThan(200);
    expect(ctx.shutdownReasons).toEqual(["customer-ended-call"]);
    const r = parseReport(sink.stored[0]!.body);
    expect(r.end).toMatchObject({ close_reason: "customer-ended-call" });
    expect(r.end.close_timed_out).toBeUndefined();
    expect(JSON.stringify(r.session)).toContain("my answer");
    const steps = (end as unknown as { path: { steps: { durations(): Record<string, number> } } }).path.steps.durations();
    expect(steps.close).toBeLessThan(100);
    await run(5_000);
    expect(w.seen.closed! - t0).toBeGreaterThanOrEqual(3_000);
    expect(sink.stored).toHaveLength(1); // one final report
    w.stop();
  });

  it("pending customer words (an interim transcript) wait for the close, which commits them", async () => {
    const { end, local, session, sink } = setup();
    slowClose(session, 600);
    await end.start();
    session.emit("user_input_transcribed", { transcript: "and one more th", isFinal: false });
    await local.call("end_interview", CUSTOMER, request("r1"));
    await run(400);
    expect(sink.stored).toHaveLength(0); // not before the close
    // the SDK's close commits the user turn, then emits close
    session.addItem({ type: "message", role: "user", content: ["and one more thing"] });
    await run(400);
    expect(sink.stored).toHaveLength(1);
    const r = parseReport(sink.stored[0]!.body);
    expect(JSON.stringify(r.session)).toContain("and one more thing");
    expect(r.end.close_reason).toBe("customer-ended-call");
  });

  it("a final transcript not yet committed, or the customer speaking, waits for the close too", async () => {
    for (const kind of ["final", "speaking"] as const) {
      const { end, local, session, sink } = setup();
      slowClose(session, 600);
      await end.start();
      if (kind === "final") session.emit("user_input_transcribed", { transcript: "done", isFinal: true });
      else session.userState = "speaking";
      await local.call("end_interview", CUSTOMER, request("r1"));
      await run(400);
      expect(sink.stored, kind).toHaveLength(0);
      await run(400);
      expect(sink.stored, kind).toHaveLength(1);
    }
  });

  it("a running tool, a speech not done or the audio input still attached wait for the close", async () => {
    const variants: Record<string, (a: Record<string, unknown>) => void> = {
      tool: (a) => (a._toolExecutor = { runningTasks: new Map([["t", {}]]) }),
      speech: (a) => (a._currentSpeech = { done: () => false }),
      task: (a) => (a.speechTasks = new Set([{ done: false }])),
      main: (a) => (a._mainTask = { done: false }),
      unknown: (a) => delete a._toolExecutor,
    };
    for (const [name, change] of Object.entries(variants)) {
      const { end, local, session, sink } = setup();
      const activity = drainedActivity();
      change(activity);
      slowClose(session, 600, 20, activity);
      await end.start();
      await local.call("end_interview", CUSTOMER, request("r1"));
      await run(400);
      expect(sink.stored, name).toHaveLength(0);
      await run(400);
      expect(sink.stored, name).toHaveLength(1);
    }
  });

  it("a close EndCall did not start (the customer's tab closed) is waited for in full", async () => {
    const { end, session, sink, room } = setup({ disconnectGrace: 0 });
    slowClose(session, 0);
    await end.start();
    const s = session as unknown as Record<string, unknown>;
    // RoomIO closes the session itself (closeOnDisconnect), drained at once, close 500 ms later
    session._closing = true;
    s.activity = drainedActivity();
    s.input = { audio: null };
    setTimeout(() => session.close("participant_disconnected"), 500);
    room.leave(CUSTOMER, 1); // CLIENT_INITIATED
    await run(300);
    expect(sink.stored).toHaveLength(0);
    await run(400);
    expect(sink.stored).toHaveLength(1);
    expect(parseReport(sink.stored[0]!.body).end.close_reason).toBe("participant_disconnected");
  });
});

describe("historySettled / UserWords", () => {
  it("says no to anything it cannot read", () => {
    expect(historySettled(null)).toBe(false);
    expect(historySettled({})).toBe(false);
    expect(historySettled({ _closing: true })).toBe(false);
    expect(historySettled({ _closing: false, activity: drainedActivity(), input: { audio: null } })).toBe(false);
    expect(historySettled({ _closing: true, activity: drainedActivity(), input: { audio: null } })).toBe(true);
    expect(historySettled({ _closing: true, activity: drainedActivity(), input: { audio: {} } })).toBe(false);
    expect(historySettled({ _closing: true, activity: drainedActivity(), input: { audio: null }, _recorderIO: { recording: true } })).toBe(false);
    expect(historySettled({ _closing: true, activity: { ...drainedActivity(), _schedulingPaused: false }, input: { audio: null } })).toBe(false);
    const throwing = { _closing: true, get activity(): never { throw new Error("x"); } };
    expect(historySettled(throwing)).toBe(false);
  });

  it("follows interim and final transcripts until a user item commits them", () => {
    const w = new UserWords();
    const s = { userState: "listening" };
    expect(w.pending(s)).toBe(false);
    w.onTranscribed({ transcript: "hel", isFinal: false });
    expect(w.pending(s)).toBe(true);
    w.onTranscribed({ transcript: "hello", isFinal: true });
    expect(w.pending(s)).toBe(true);
    w.onItemAdded({ item: { role: "assistant" } });
    expect(w.pending(s)).toBe(true);
    w.onItemAdded({ item: { role: "user" } });
    expect(w.pending(s)).toBe(false);
    w.onTranscribed({ transcript: "  ", isFinal: false });
    expect(w.pending(s)).toBe(false);
    expect(w.pending({ userState: "speaking" })).toBe(true);
  });
});
