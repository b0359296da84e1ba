// @vitest-environment jsdom
/** `useEndInterview()` with @testing-library/react against the FakeRoom: state, outcome,
 * double click, unmount mid-flight, abort, agent-initiated end, RoomContext, pagehide beacon. */
import { RoomContext } from "@livekit/components-react";
import { act, cleanup, render, renderHook, screen, waitFor } from "@testing-library/react";
import type { Room } from "livekit-client";
import type { ReactNode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseRequest } from "endcall";
import { useEndInterview, type UseEndInterviewOptions } from "../src/react";
import { FakeAgent, FakeRoom } from "endcall/testing";

let room: FakeRoom;
let beacons: Array<{ url: string; body: string }>;

beforeEach(() => {
  room = new FakeRoom("interview-7", "candidate-7");
  beacons = [];
  Object.defineProperty(navigator, "sendBeacon", {
    configurable: true,
    value: (url: string, body: string) => {
      beacons.push({ url, body });
      return true;
    },
  });
});
afterEach(() => cleanup());

const pagehide = (): void => {
  window.dispatchEvent(new Event("pagehide"));
};

describe("useEndInterview", () => {
  it("idle → ending → ended with the outcome", async () => {
    new FakeAgent(room, { delayMs: 30 });
    const { result } = renderHook(() => useEndInterview({ room }));
    expect(result.current.state).toBe("idle");
    let running!: Promise<unknown>;
    act(() => {
      running = result.current.endInterview();
    });
    expect(result.current.state).toBe("ending");
    await act(async () => {
      await running;
    });
    expect(result.current.state).toBe("ended");
    expect(result.current.outcome).toMatchObject({ status: "accepted", via: "rpc" });
    expect(result.current.error).toBeNull();
    expect(result.current.agentEnded).toBeNull(); // the customer ended it
    expect(room.disconnectCalls).toBe(1);
  });

  it("a double click shares one in-flight promise", async () => {
    const agent = new FakeAgent(room, { delayMs: 30 });
    const { result } = renderHook(() => useEndInterview({ room }));
    let outcomes: unknown[] = [];
    await act(async () => {
      outcomes = await Promise.all([result.current.endInterview(), result.current.endInterview()]);
    });
    expect(outcomes[0]).toBe(outcomes[1]);
    expect(agent.received).toHaveLength(1);
    expect(room.localParticipant.rpcCalls).toHaveLength(1);
  });

  it("unmounting mid-flight aborts: no listener or timer left, no state set", async () => {
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    const errors = vi.spyOn(console, "error");
    const { result, unmount } = renderHook(() =>
      useEndInterview({ room, ackTimeoutMs: 10_000, fallbackTimeoutMs: 10_000 }),
    );
    let running!: Promise<{ status: string; errors: Array<{ code: string }> }>;
    act(() => {
      running = result.current.endInterview();
    });
    expect(room.listenerCount()).toBeGreaterThan(0);
    unmount();
    const outcome = await running;
    expect(outcome.status).toBe("unacknowledged");
    expect(outcome.errors.at(-1)?.code).toBe("aborted");
    expect(room.listenerCount()).toBe(0);
    expect(room.disconnectCalls).toBe(1);
    expect(errors).not.toHaveBeenCalled();
    errors.mockRestore();
  });

  it("the caller's AbortSignal aborts", async () => {
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    const controller = new AbortController();
    const { result } = renderHook(() =>
      useEndInterview({ room, signal: controller.signal, ackTimeoutMs: 10_000 }),
    );
    let running!: Promise<unknown>;
    act(() => {
      running = result.current.endInterview();
    });
    await act(async () => {
      controller.abort();
      await running;
    });
    expect(result.current.state).toBe("ended");
    expect(result.current.outcome?.status).toBe("unacknowledged");
    expect(result.current.error).toEqual({ channel: "request", code: "aborted", message: "aborted" });
  });

  it("agent-initiated end: agentEnded carries the reason; the room closing ends the state", async () => {
    const agent = new FakeAgent(room);
    const { result } = renderHook(() => useEndInterview({ room }));
    expect(result.current.agentEnded).toBeNull();
    act(() => agent.end("exceeded-max-duration"));
    expect(result.current.agentEnded).toEqual({ state: "ending", reason: "exceeded-max-duration", endId: "e_fake" });
    act(() => agent.finish(false));
    expect(result.current.agentEnded).toEqual({ state: "ended", reason: "exceeded-max-duration", endId: "e_fake" });
    expect(result.current.state).toBe("idle");
    await act(async () => {
      await room.disconnect();
    });
    expect(result.current.state).toBe("ended");
  });

  it("agentEnded is set at mount when the agent already ended", () => {
    const agent = new FakeAgent(room);
    agent.end("assistant-ended-call");
    const { result } = renderHook(() => useEndInterview({ room }));
    expect(result.current.agentEnded?.reason).toBe("assistant-ended-call");
  });

  it("takes the room from @livekit/components-react's RoomContext", async () => {
    new FakeAgent(room);
    const wrapper = ({ children }: { children: ReactNode }) => (
      <RoomContext.Provider value={room as unknown as Room}>{children}</RoomContext.Provider>
    );
    const { result } = renderHook(() => useEndInterview(), { wrapper });
    await act(async () => {
      await result.current.endInterview();
    });
    expect(result.current.outcome?.via).toBe("rpc");
  });

  it("without any room: unacknowledged no_room", async () => {
    const { result } = renderHook(() => useEndInterview());
    await act(async () => {
      await result.current.endInterview();
    });
    expect(result.current.state).toBe("ended");
    expect(result.current.error?.code).toBe("no_room");
  });

  it("unacknowledged: error is the last error", async () => {
    new FakeAgent(room, { rpc: "fail", data: "fail" });
    const { result } = renderHook(() => useEndInterview({ room, ackTimeoutMs: 20, fallbackTimeoutMs: 50 }));
    await act(async () => {
      await result.current.endInterview();
    });
    expect(result.current.outcome?.status).toBe("unacknowledged");
    expect(result.current.error).toEqual({ channel: "data", code: "send_failed", message: "data channel closed" });
  });

  it("a 10-line page: the button ends the interview and the page says so", async () => {
    new FakeAgent(room, { delayMs: 10 });
    function Page({ options }: { options: UseEndInterviewOptions }) {
      const { endInterview, state, outcome, agentEnded } = useEndInterview(options);
      if (agentEnded) return <p>The interviewer ended the interview ({agentEnded.reason})</p>;
      if (state === "ended") return <p>Ended: {outcome?.status}</p>;
      return (
        <button onClick={() => void endInterview()} disabled={state === "ending"}>
          End interview
        </button>
      );
    }
    render(<Page options={{ room }} />);
    await act(async () => {
      screen.getByRole("button").click();
      screen.getByRole("button").click();
    });
    await waitFor(() => expect(screen.getByText("Ended: accepted")).toBeTruthy());
    expect(room.localParticipant.rpcCalls).toHaveLength(1);
  });
});

describe("pagehide beacon", () => {
  const opts = { fallbackUrl: "https://example.test/v1/end", token: "tok-1" };

  it("is sent once, as text/plain-able JSON with the end.request, room and token", () => {
    new FakeAgent(room);
    renderHook(() => useEndInterview({ room, ...opts }));
    pagehide();
    pagehide();
    expect(beacons).toHaveLength(1);
    expect(beacons[0]!.url).toBe(opts.fallbackUrl);
    expect(typeof beacons[0]!.body).toBe("string"); // a string body is sent as text/plain
    const body = JSON.parse(beacons[0]!.body) as Record<string, unknown>;
    expect(body).toMatchObject({ type: "end.request", v: 1, reason: "customer-ended-call", room: "interview-7", token: "tok-1" });
    const { room: _room, token: _token, ...request } = body;
    expect(parseRequest(JSON.stringify(request), { origin: "client" }).id).toBe(body.id);
  });

  it("is not sent after an ended call", async () => {
    new FakeAgent(room);
    const { result } = renderHook(() => useEndInterview({ room, ...opts }));
    await act(async () => {
      await result.current.endInterview();
    });
    pagehide();
    expect(beacons).toEqual([]);
  });

  it("is not sent when the agent is already ending the call", () => {
    const agent = new FakeAgent(room);
    renderHook(() => useEndInterview({ room, ...opts }));
    act(() => agent.end("silence-timed-out"));
    pagehide();
    expect(beacons).toEqual([]);
  });

  it("while an end is in flight, carries the same request id", async () => {
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    const { result } = renderHook(() => useEndInterview({ room, ...opts, ackTimeoutMs: 10_000 }));
    act(() => {
      void result.current.endInterview();
    });
    pagehide();
    expect(beacons).toHaveLength(1);
    const rpcId = parseRequest(room.localParticipant.rpcCalls[0]!.payload, { origin: "client" }).id;
    expect((JSON.parse(beacons[0]!.body) as { id: string }).id).toBe(rpcId);
  });

  it("uses beaconReason, and beacon: false turns it off", () => {
    renderHook(() => useEndInterview({ room, ...opts, beacon: false }));
    pagehide();
    expect(beacons).toEqual([]);
    cleanup();
    renderHook(() => useEndInterview({ room, ...opts, beaconReason: "customer-tab-closed" }));
    pagehide();
    expect((JSON.parse(beacons[0]!.body) as { reason: string }).reason).toBe("customer-tab-closed");
  });

  it("stops listening on unmount", () => {
    const { unmount } = renderHook(() => useEndInterview({ room, ...opts }));
    unmount();
    pagehide();
    expect(beacons).toEqual([]);
    expect(room.listenerCount()).toBe(0);
  });
});
