/** One `Room` object, many calls (issue 24): an end belongs to one connection of the room. After
 * a disconnect and a new connect of the same `FakeRoom` (a new local participant sid, as
 * livekit-client gives on every join), `endCall` starts fresh; within one connection it is as
 * idempotent as before. */
import { describe, expect, it, vi } from "vitest";
import { endCall, parseRequest } from "endcall";
import { FakeAgent, FakeRoom } from "endcall/testing";

const idOf = (payload: string): string => parseRequest(payload, { origin: "client" }).id;

describe("one Room reused for three calls", () => {
  it("each call's end sends its own request with a new id; repeats within a call change nothing", async () => {
    const room = new FakeRoom("interview-1", "candidate-1");
    const ids: string[] = [];
    for (let call = 1; call <= 3; call++) {
      if (call > 1) await room.connect();
      const agent = new FakeAgent(room, { endId: `e_${call}` });
      const rpcBefore = room.localParticipant.rpcCalls.length;

      const outcome = await endCall(room);
      expect(outcome).toMatchObject({ status: "accepted", via: "rpc", ack: { end_id: `e_${call}` } });
      // this call's agent got exactly one request, with this outcome's id
      expect(agent.received).toEqual([{ channel: "rpc", id: outcome.requestId, reason: "customer-ended-call" }]);
      expect(room.localParticipant.rpcCalls).toHaveLength(rpcBefore + 1);
      expect(idOf(room.localParticipant.rpcCalls.at(-1)!.payload)).toBe(outcome.requestId);
      expect(room.disconnectCalls).toBe(call);
      expect(room.state).toBe("disconnected");

      // idempotent within the connection: the same outcome, nothing sent, no second disconnect
      expect(await endCall(room)).toBe(outcome);
      expect(room.localParticipant.rpcCalls).toHaveLength(rpcBefore + 1);
      expect(room.disconnectCalls).toBe(call);
      ids.push(outcome.requestId);
    }
    expect(new Set(ids).size).toBe(3);
    expect(room.connections).toBe(3);
    expect(room.listenerCount()).toBe(0);
  });

  it("a double click on the second connection shares one request, as on the first", async () => {
    const room = new FakeRoom();
    new FakeAgent(room);
    const first = await endCall(room);
    await room.connect();
    const agent = new FakeAgent(room, { delayMs: 20 });
    const a = endCall(room);
    const b = endCall(room, { reason: "customer-other" });
    expect(b).toBe(a);
    const outcome = await a;
    expect(outcome.requestId).not.toBe(first.requestId);
    expect(agent.received).toHaveLength(1);
  });

  it("an end still running when the room connects again leaves the new connection alone", async () => {
    const room = new FakeRoom();
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    // connection 1: an end whose RPC is never answered, still waiting for it
    const old = endCall(room, { ackTimeoutMs: 40, fallbackTimeoutMs: 60, fallbackUrl: "https://fallback.test/v1/end",
      fetch: () => Promise.reject(new Error("the old end must not call the fallback")) });
    await room.disconnect(); // e.g. the page's own session.end()
    await room.connect();
    const agent = new FakeAgent(room, { delayMs: 5 }); // the next call's agent (same identity)
    const current = endCall(room, { disconnect: false });
    expect(current).not.toBe(old);
    const stale = await old;
    // it sent nothing on the new connection (no data packet, no REST) and did not disconnect it
    expect(stale.status).toBe("unacknowledged");
    expect(stale.errors).toEqual([]);
    expect(room.localParticipant.published).toEqual([]);
    expect(room.state).toBe("connected");
    expect(room.disconnectCalls).toBe(1);
    const outcome = await current;
    expect(outcome.status).toBe("accepted");
    expect(agent.received.map((r) => r.id)).toEqual([outcome.requestId]);
    // the old end's failure did not forget the new, acknowledged one
    expect(endCall(room)).toBe(current);
    expect(room.listenerCount()).toBe(0);
  });

  it("an unacknowledged end on a connection is still retried with a new id on that connection", async () => {
    const room = new FakeRoom();
    await room.disconnect();
    await room.connect();
    const failed = await endCall(room, { disconnect: false }); // no agent, no fallback
    expect(failed.status).toBe("unacknowledged");
    new FakeAgent(room);
    const retried = await endCall(room, { disconnect: false });
    expect(retried.status).toBe("accepted");
    expect(retried.requestId).not.toBe(failed.requestId);
  });

  it("a room double without a local participant sid keeps the first acknowledged end (one connection)", async () => {
    const room = new FakeRoom();
    (room.localParticipant as { sid?: string }).sid = undefined;
    new FakeAgent(room);
    const first = await endCall(room);
    room.state = "connected"; // reconnected, but nothing tells the connections apart
    new FakeAgent(room);
    expect(await endCall(room)).toBe(first);
  });

  it("no timer or listener is left behind across connections (fake timers)", async () => {
    vi.useFakeTimers();
    try {
      const room = new FakeRoom();
      for (let call = 1; call <= 3; call++) {
        if (call > 1) await room.connect();
        new FakeAgent(room, { rpc: "silent", data: "silent" });
        const running = endCall(room, { ackTimeoutMs: 100, fallbackTimeoutMs: 100 });
        await vi.advanceTimersByTimeAsync(250);
        expect((await running).status).toBe("unacknowledged");
        expect(vi.getTimerCount()).toBe(0);
        expect(room.listenerCount()).toBe(0);
      }
    } finally {
      vi.useRealTimers();
    }
  });
});
