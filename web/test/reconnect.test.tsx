// @vitest-environment jsdom
/** `useEndInterview` and the tab-close beacon with one `Room` object reused for many calls, as
 * LiveKit's React starter does (issue 24): after the room connects again the hook is back to
 * `idle`, the next end sends a new request, and the beacon is armed again. */
import { act, cleanup, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { installEndBeacon, parseRequest } from "endcall";
import { useEndInterview } from "../src/react";
import { FakeAgent, FakeRoom } from "endcall/testing";

let room: FakeRoom;
let beacons: Array<{ url: string; body: Record<string, unknown> }>;
const opts = { fallbackUrl: "https://example.test/v1/end", token: "tok-1" };

beforeEach(() => {
  room = new FakeRoom("interview-1", "candidate-1");
  beacons = [];
  Object.defineProperty(navigator, "sendBeacon", {
    configurable: true,
    value: (url: string, body: string) => {
      beacons.push({ url, body: JSON.parse(body) as Record<string, unknown> });
      return true;
    },
  });
});
afterEach(() => cleanup());

const pagehide = (): void => {
  window.dispatchEvent(new Event("pagehide"));
};
const reconnect = async (): Promise<void> => {
  await act(async () => {
    await room.connect();
  });
};

describe("useEndInterview with one Room for three calls", () => {
  it("each call: idle → ending → ended, its own request; after a reconnect idle again, beacon re-armed", async () => {
    const { result } = renderHook(() => useEndInterview({ room, ...opts }));
    const ids: string[] = [];
    for (let call = 1; call <= 3; call++) {
      if (call > 1) await reconnect();
      expect(result.current.state).toBe("idle");
      expect(result.current.outcome).toBeNull();
      expect(result.current.error).toBeNull();
      const agent = new FakeAgent(room, { endId: `e_${call}`, delayMs: 10 });

      let running!: Promise<unknown>;
      act(() => {
        running = result.current.endInterview();
      });
      expect(result.current.state).toBe("ending");
      await act(async () => {
        await running;
      });
      expect(result.current.state).toBe("ended");
      expect(result.current.outcome).toMatchObject({ status: "accepted", via: "rpc", ack: { end_id: `e_${call}` } });
      const id = result.current.outcome!.requestId;
      expect(agent.received).toEqual([{ channel: "rpc", id, reason: "customer-ended-call" }]);
      expect(room.disconnectCalls).toBe(call);

      // within the call: a second click returns the same outcome and sends nothing
      await act(async () => {
        expect(await result.current.endInterview()).toBe(result.current.outcome);
      });
      expect(agent.received).toHaveLength(1);
      // and the beacon stays quiet: this call's end was acknowledged
      pagehide();
      expect(beacons).toEqual([]);
      ids.push(id);
    }
    expect(new Set(ids).size).toBe(3);

    // a fourth connection, closed with the tab: the beacon is armed again, with a fresh id
    await reconnect();
    expect(result.current.state).toBe("idle");
    new FakeAgent(room);
    pagehide();
    expect(beacons).toHaveLength(1);
    expect(beacons[0]!.body).toMatchObject({ type: "end.request", reason: "customer-ended-call", room: "interview-1", token: "tok-1" });
    expect(ids).not.toContain(beacons[0]!.body.id);
  });

  it("the beacon is sent once per connection: a reconnect arms it again", async () => {
    renderHook(() => useEndInterview({ room, ...opts, beaconReason: "customer-tab-closed" }));
    new FakeAgent(room);
    pagehide(); // bfcache: pagehide may fire, the page come back, and fire again
    pagehide();
    expect(beacons).toHaveLength(1);
    await act(async () => {
      await room.disconnect();
    });
    await reconnect();
    new FakeAgent(room);
    pagehide();
    pagehide();
    expect(beacons).toHaveLength(2);
    expect(beacons[1]!.body.id).not.toBe(beacons[0]!.body.id);
    expect(beacons.map((b) => b.body.reason)).toEqual(["customer-tab-closed", "customer-tab-closed"]);
  });

  it("agentEnded is cleared on a new connection and set again by the next call's agent", async () => {
    const { result } = renderHook(() => useEndInterview({ room }));
    const first = new FakeAgent(room);
    act(() => first.end("exceeded-max-duration"));
    expect(result.current.agentEnded).toEqual({ state: "ending", reason: "exceeded-max-duration", endId: "e_fake" });
    await act(async () => {
      await room.disconnect();
    });
    expect(result.current.state).toBe("ended");
    await reconnect();
    expect(result.current.agentEnded).toBeNull();
    expect(result.current.state).toBe("idle");
    // the same reason and end id as before (a scripted agent) is still news on this connection
    const second = new FakeAgent(room);
    act(() => second.end("exceeded-max-duration"));
    expect(result.current.agentEnded).toEqual({ state: "ending", reason: "exceeded-max-duration", endId: "e_fake" });
  });

  it("an end of the previous connection finishing late does not overwrite the new connection's state", async () => {
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    const { result } = renderHook(() => useEndInterview({ room, ackTimeoutMs: 40, fallbackTimeoutMs: 40 }));
    let running!: Promise<unknown>;
    act(() => {
      running = result.current.endInterview();
    });
    await act(async () => {
      await room.disconnect(); // the page's own session.end()
    });
    await reconnect();
    expect(result.current.state).toBe("idle");
    await act(async () => {
      await running;
    });
    expect(result.current.state).toBe("idle");
    expect(result.current.outcome).toBeNull();
    expect(room.state).toBe("connected"); // the old end did not disconnect the new call
    const agent = new FakeAgent(room);
    await act(async () => {
      await result.current.endInterview();
    });
    expect(result.current.outcome).toMatchObject({ status: "accepted" });
    expect(agent.received).toHaveLength(1);
  });

  it("a hook mounted before the first connect, and unmounted: no listener is left", async () => {
    const fresh = new FakeRoom("interview-2");
    await fresh.disconnect();
    const { result, unmount } = renderHook(() => useEndInterview({ room: fresh, ...opts }));
    await act(async () => {
      await fresh.connect();
    });
    expect(result.current.state).toBe("idle");
    unmount();
    expect(fresh.listenerCount()).toBe(0);
  });
});

describe("installEndBeacon without React", () => {
  it("in-flight end on the new connection: the beacon carries that connection's request id", async () => {
    const stop = installEndBeacon(room, opts);
    new FakeAgent(room);
    pagehide();
    await room.disconnect();
    await room.connect();
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    const { endCall } = await import("endcall");
    void endCall(room, { ackTimeoutMs: 10_000 });
    pagehide();
    expect(beacons).toHaveLength(2);
    const rpcId = parseRequest(room.localParticipant.rpcCalls.at(-1)!.payload, { origin: "client" }).id;
    expect(beacons[1]!.body.id).toBe(rpcId);
    stop();
    await room.disconnect();
  });
});
