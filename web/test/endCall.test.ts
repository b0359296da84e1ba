/** `endCall` against the structural FakeRoom/FakeAgent and a real REST fallback server on
 * 127.0.0.1 (node:http), for every case issue 5 lists. */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { endCall, installEndBeacon, onAgentEnded, parseRequest, type AgentEndState, type EndCallOutcome, type EndCallRoom } from "endcall";
import { FakeAgent, FakeRoom, FakeRpcError, RpcErrorCode } from "endcall/testing";
import type { Room } from "livekit-client";

// A real livekit-client Room satisfies the structural type without a cast (checked by tsc).
export const realRoomFits = (room: Room): EndCallRoom => room;

interface Seen {
  body: Record<string, unknown>;
  auth: string | undefined;
  contentType: string | undefined;
}

/** The fallback server double: answers POST /v1/end as `answer` says, records what it got. */
class FallbackServer {
  readonly seen: Seen[] = [];
  answer: (seen: Seen) => { status: number; body: unknown } | null = () => ({
    status: 202,
    body: { status: "accepted", acked_by: "server", escalated: "delete_room" },
  });
  private server: Server | undefined;
  url = "";

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res) => {
      let text = "";
      req.on("data", (chunk: Buffer) => (text += chunk.toString("utf-8")));
      req.on("end", () => {
        const seen = {
          body: JSON.parse(text) as Record<string, unknown>,
          auth: req.headers.authorization,
          contentType: req.headers["content-type"],
        };
        this.seen.push(seen);
        const reply = this.answer(seen);
        if (!reply) return; // never answer
        res.writeHead(reply.status, { "Content-Type": "application/json" });
        res.end(JSON.stringify(reply.body));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/v1/end`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

let server: FallbackServer;
let room: FakeRoom;
beforeEach(async () => {
  server = new FallbackServer();
  await server.start();
  room = new FakeRoom("interview-1", "candidate-1");
});
afterEach(async () => {
  await server.stop();
});

const fast = { ackTimeoutMs: 60, fallbackTimeoutMs: 400 };

function expectClean(r: FakeRoom): void {
  expect(r.listenerCount()).toBe(0);
}

describe("endCall", () => {
  it("RPC ack: accepted via rpc, then disconnects", async () => {
    const agent = new FakeAgent(room, { endId: "e_1", drainMs: 900 });
    const outcome = await endCall(room, { fallbackUrl: server.url, token: "t" });
    expect(outcome).toMatchObject({ status: "accepted", via: "rpc", errors: [] });
    expect(outcome.ack).toEqual({
      type: "end.ack",
      v: 1,
      id: outcome.requestId,
      status: "accepted",
      end_id: "e_1",
      reason: "customer-ended-call",
      drain_ms: 900,
    });
    expect(room.disconnectCalls).toBe(1);
    expect(agent.received).toEqual([{ channel: "rpc", id: outcome.requestId, reason: "customer-ended-call" }]);
    const rpc = room.localParticipant.rpcCalls[0]!;
    expect(rpc.method).toBe("end_interview");
    expect(rpc.destinationIdentity).toBe("agent-1");
    expect(rpc.responseTimeout).toBeGreaterThanOrEqual(8_000);
    const request = parseRequest(rpc.payload, { origin: "client" });
    expect(request.id).toBe(outcome.requestId);
    expect(request.sent_at).toBeTypeOf("number");
    expect(server.seen).toEqual([]); // no fallback needed
    expect(room.localParticipant.published).toEqual([]);
    expectClean(room);
  });

  it("already_ending: the agent was already ending for another reason", async () => {
    const agent = new FakeAgent(room);
    agent.end("exceeded-max-duration");
    const outcome = await endCall(room);
    expect(outcome.status).toBe("already_ending");
    expect(outcome.via).toBe("rpc");
    expect(outcome.ack).toMatchObject({ reason: "exceeded-max-duration" });
  });

  it("RPC unsupported → data packet acked", async () => {
    const agent = new FakeAgent(room, { rpc: "unsupported" });
    const bodies: string[] = [];
    const spy: typeof fetch = (input, init) => {
      bodies.push(String(init?.body));
      return fetch(input, init);
    };
    const outcome = await endCall(room, { ...fast, fallbackUrl: server.url, token: "t", fetch: spy });
    expect(outcome.status).toBe("accepted");
    expect(outcome.via).toBe("data");
    expect(outcome.errors).toEqual([
      { channel: "rpc", code: "rpc_error", message: "Method not supported at destination", status: RpcErrorCode.UNSUPPORTED_METHOD },
    ]);
    const sent = room.localParticipant.published[0]!;
    expect(sent.options).toEqual({ reliable: true, destinationIdentities: ["agent-1"], topic: "end_interview" });
    expect(parseRequest(sent.data, { origin: "client" }).id).toBe(outcome.requestId);
    expect(agent.received.map((r) => r.channel)).toEqual(["data"]);
    // the REST fallback started in parallel with the same request id (and was cancelled when
    // the data ack won)
    expect(bodies.map((b) => (JSON.parse(b) as { id: string }).id)).toEqual([outcome.requestId]);
    expectClean(room);
  });

  it("RPC silent → REST ack from the fallback server (real HTTP)", async () => {
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    server.answer = () => ({
      status: 202,
      body: { status: "accepted", acked_by: "agent", end_id: "e_9", reason: "customer-ended-call" },
    });
    const outcome = await endCall(room, { ...fast, fallbackUrl: server.url, token: "lk-token", meta: { button: "end" } });
    expect(outcome.status).toBe("accepted");
    expect(outcome.via).toBe("rest");
    expect(outcome.ack).toEqual({ status: "accepted", acked_by: "agent", end_id: "e_9", reason: "customer-ended-call" });
    expect(outcome.errors).toEqual([{ channel: "rpc", code: "timeout", message: "no ack within 60 ms" }]);
    const seen = server.seen[0]!;
    expect(seen.auth).toBe("Bearer lk-token");
    expect(seen.contentType).toBe("application/json");
    expect(seen.body).toMatchObject({
      type: "end.request",
      v: 1,
      id: outcome.requestId,
      reason: "customer-ended-call",
      room: "interview-1",
      meta: { button: "end" },
    });
    // one request id everywhere: RPC, data and REST carry the same id
    const rpcId = parseRequest(room.localParticipant.rpcCalls[0]!.payload, { origin: "client" }).id;
    const dataId = parseRequest(room.localParticipant.published[0]!.data, { origin: "client" }).id;
    expect(new Set([rpcId, dataId, seen.body.id])).toEqual(new Set([outcome.requestId]));
    expect(room.disconnectCalls).toBe(1);
    expectClean(room);
  });

  it("REST answers 200 already_ended (room gone)", async () => {
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    server.answer = () => ({ status: 200, body: { status: "already_ended" } });
    const outcome = await endCall(room, { ...fast, fallbackUrl: server.url, token: "t" });
    expect(outcome).toMatchObject({ status: "already_ended", via: "rest", ack: { status: "already_ended" } });
  });

  it("a late RPC ack still wins during the fallback", async () => {
    new FakeAgent(room, { delayMs: 150, data: "silent" });
    server.answer = () => null;
    const outcome = await endCall(room, { ackTimeoutMs: 30, fallbackTimeoutMs: 2_000, fallbackUrl: server.url });
    expect(outcome.via).toBe("rpc");
    expect(outcome.status).toBe("accepted");
  });

  it("every channel failing → unacknowledged with every error, still disconnects", async () => {
    new FakeAgent(room, { rpc: "fail", data: "fail" });
    server.answer = () => ({ status: 401, body: { code: "unauthorized", message: "token expired" } });
    const outcome = await endCall(room, { ...fast, fallbackUrl: server.url, token: "old" });
    expect(outcome.status).toBe("unacknowledged");
    expect(outcome.via).toBe("none");
    expect(outcome.ack).toBeNull();
    expect(outcome.errors).toEqual(
      expect.arrayContaining([
        { channel: "rpc", code: "rpc_error", message: "Application error in method handler", status: 1500 },
        { channel: "data", code: "send_failed", message: "data channel closed" },
        { channel: "rest", code: "unauthorized", message: "token expired", status: 401 },
      ]),
    );
    expect(outcome.errors).toHaveLength(3);
    expect(room.disconnectCalls).toBe(1);
    expectClean(room);
  });

  it("every channel silent → unacknowledged after the timeouts, still disconnects", async () => {
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    server.answer = () => null;
    const outcome = await endCall(room, { ackTimeoutMs: 30, fallbackTimeoutMs: 100, fallbackUrl: server.url });
    expect(outcome.status).toBe("unacknowledged");
    expect(outcome.errors.map((e) => [e.channel, e.code])).toEqual([
      ["rpc", "timeout"],
      ["data", "timeout"],
      ["rest", "timeout"],
    ]);
    expect(room.disconnectCalls).toBe(1);
    expectClean(room);
  });

  it("the agent's refusal over RPC keeps its protocol code", async () => {
    new FakeAgent(room, { rpc: "forbidden", data: "forbidden" });
    const outcome = await endCall(room, fast);
    expect(outcome.status).toBe("unacknowledged");
    expect(outcome.errors).toEqual([
      { channel: "rpc", code: "forbidden", message: "only the customer may end this call", status: 4403 },
      { channel: "data", code: "forbidden", message: "no" },
    ]);
  });

  it("no agent in the room: REST only", async () => {
    const outcome = await endCall(room, { ...fast, fallbackUrl: server.url, token: "t" });
    expect(outcome).toMatchObject({ status: "accepted", via: "rest", ack: { acked_by: "server", escalated: "delete_room" } });
    expect(outcome.errors).toEqual([{ channel: "rpc", code: "no_agent", message: "no agent in the room" }]);
    expect(room.localParticipant.rpcCalls).toEqual([]);
    expect(room.disconnectCalls).toBe(1);
  });

  it("no agent and no fallback: unacknowledged at once, still disconnects", async () => {
    const outcome = await endCall(room);
    expect(outcome.status).toBe("unacknowledged");
    expect(outcome.errors.map((e) => e.code)).toEqual(["no_agent"]);
    expect(room.disconnectCalls).toBe(1);
  });

  it("finds the agent by lk.agent.state when its kind is not AGENT, or by agentIdentity", async () => {
    room.addParticipant("someone-else");
    const agent = new FakeAgent(room, { identity: "bot" });
    (agent.participant as { kind: number }).kind = 0;
    expect((await endCall(room, { disconnect: false })).via).toBe("rpc");
    const other = new FakeRoom();
    const named = new FakeAgent(other, { identity: "named" });
    (named.participant as { kind: number }).kind = 0;
    named.participant.attributes = {};
    const outcome = await endCall(other, { agentIdentity: "named" });
    expect(outcome.via).toBe("rpc");
    expect(other.localParticipant.rpcCalls[0]!.destinationIdentity).toBe("named");
  });

  it("double click: concurrent calls share one in-flight promise and one request", async () => {
    const agent = new FakeAgent(room, { delayMs: 20 });
    const first = endCall(room);
    const second = endCall(room, { reason: "customer-other" });
    expect(second).toBe(first);
    const [a, b] = await Promise.all([first, second]);
    expect(a).toBe(b);
    expect(room.localParticipant.rpcCalls).toHaveLength(1);
    expect(agent.received).toHaveLength(1);
    expect(room.disconnectCalls).toBe(1);
    // after an acknowledged end, later calls get the same outcome
    expect(await endCall(room)).toBe(a);
  });

  it("an unacknowledged end can be retried with a new request", async () => {
    const first = await endCall(room, { disconnect: false });
    expect(first.status).toBe("unacknowledged");
    new FakeAgent(room);
    const second = await endCall(room, { disconnect: false });
    expect(second.status).toBe("accepted");
    expect(second.requestId).not.toBe(first.requestId);
  });

  it("abort: stops waiting, cleans up, still disconnects", async () => {
    new FakeAgent(room, { rpc: "silent", data: "silent" });
    server.answer = () => null;
    const controller = new AbortController();
    const running = endCall(room, { ackTimeoutMs: 20, fallbackTimeoutMs: 10_000, fallbackUrl: server.url, signal: controller.signal });
    await vi.waitFor(() => expect(server.seen).toHaveLength(1));
    const before = Date.now();
    controller.abort();
    const outcome = await running;
    expect(Date.now() - before).toBeLessThan(5_000);
    expect(outcome.status).toBe("unacknowledged");
    expect(outcome.errors.at(-1)).toEqual({ channel: "request", code: "aborted", message: "aborted" });
    expect(room.disconnectCalls).toBe(1);
    expectClean(room);
  });

  it("an already aborted signal sends nothing but still disconnects", async () => {
    new FakeAgent(room);
    const outcome = await endCall(room, { signal: AbortSignal.abort(), fallbackUrl: server.url });
    // the RPC went out synchronously before the abort was seen; nothing else did
    expect(outcome.errors.some((e) => e.code === "aborted") || outcome.status === "accepted").toBe(true);
    expect(room.localParticipant.published).toEqual([]);
    expect(server.seen).toEqual([]);
    expect(room.disconnectCalls).toBe(1);
  });

  it("waitForAgentMs: waits until the agent says ended and leaves, then disconnects", async () => {
    const agent = new FakeAgent(room);
    let disconnectedAt = 0;
    let finishedAt = 0;
    room.on("disconnected", () => (disconnectedAt = Date.now()));
    const running = endCall(room, { waitForAgentMs: 5_000 });
    await vi.waitFor(() => expect(agent.received).toHaveLength(1));
    await new Promise((r) => setTimeout(r, 50));
    expect(room.disconnectCalls).toBe(0);
    finishedAt = Date.now();
    agent.finish();
    const outcome = await running;
    expect(outcome.status).toBe("accepted");
    expect(disconnectedAt).toBeGreaterThanOrEqual(finishedAt);
  });

  it("waitForAgentMs is bounded", async () => {
    new FakeAgent(room);
    const outcome = await endCall(room, { waitForAgentMs: 50 });
    expect(outcome.status).toBe("accepted");
    expect(room.disconnectCalls).toBe(1);
    expect(room.listenerCount()).toBe(0);
  });

  it("disconnect: false keeps the room", async () => {
    new FakeAgent(room);
    const outcome = await endCall(room, { disconnect: false });
    expect(outcome.status).toBe("accepted");
    expect(room.disconnectCalls).toBe(0);
  });

  it("a failing disconnect is reported, not thrown", async () => {
    new FakeAgent(room);
    room.disconnect = () => Promise.reject(new Error("boom"));
    const outcome = await endCall(room);
    expect(outcome.status).toBe("accepted");
    expect(outcome.errors).toEqual([{ channel: "disconnect", code: "disconnect_failed", message: "boom" }]);
  });

  it("a bad option (non-customer reason) is reported and the person still leaves", async () => {
    const agent = new FakeAgent(room);
    const outcome = await endCall(room, { reason: "assistant-ended-call" });
    expect(outcome.status).toBe("unacknowledged");
    expect(outcome.errors).toEqual([
      { channel: "request", code: "bad_request", message: "invalid requestId, reason or meta" },
    ]);
    expect(agent.received).toEqual([]);
    expect(room.disconnectCalls).toBe(1);
  });

  it("acks for other requests or from other participants are ignored", async () => {
    new FakeAgent(room, { rpc: "unsupported", data: "silent" });
    room.addParticipant("intruder");
    const running = endCall(room, { ackTimeoutMs: 20, fallbackTimeoutMs: 300 });
    await vi.waitFor(() => expect(room.localParticipant.published).toHaveLength(1));
    const id = parseRequest(room.localParticipant.published[0]!.data, { origin: "client" }).id;
    const ack = (rid: string): string =>
      JSON.stringify({ type: "end.ack", v: 1, id: rid, status: "accepted", end_id: "e", reason: "customer-ended-call", drain_ms: 0 });
    room.receiveData("agent-1", ack("someone-else"), "end_interview.ack");
    room.receiveData("intruder", ack(id), "end_interview.ack");
    room.receiveData("agent-1", ack(id), "other-topic");
    room.receiveData("agent-1", "garbage", "end_interview.ack");
    const outcome = await running;
    expect(outcome.status).toBe("unacknowledged");
  });

  it("a malformed RPC answer is an error and the fallback runs", async () => {
    const agent = new FakeAgent(room, { data: "ack" });
    room.localParticipant.rpcHandlers.set(agent.identity, async () => "{not json");
    const outcome = await endCall(room, fast);
    expect(outcome.via).toBe("data");
    expect(outcome.errors[0]).toMatchObject({ channel: "rpc", code: "bad_request" });
  });

  it("RpcError RECIPIENT_NOT_FOUND (agent gone) falls back", async () => {
    const agent = new FakeAgent(room);
    room.localParticipant.rpcHandlers.set(agent.identity, () =>
      Promise.reject(new FakeRpcError(RpcErrorCode.RECIPIENT_NOT_FOUND, "Recipient not found")),
    );
    const outcome: EndCallOutcome = await endCall(room, { ...fast, fallbackUrl: server.url });
    expect(outcome.via).toBe("data");
    expect(outcome.errors[0]).toMatchObject({ code: "rpc_error", status: 1401 });
  });

  it("no timer is left behind (fake timers)", async () => {
    vi.useFakeTimers();
    try {
      new FakeAgent(room, { rpc: "silent", data: "silent" });
      const running = endCall(room, { ackTimeoutMs: 100, fallbackTimeoutMs: 200 });
      await vi.advanceTimersByTimeAsync(100);
      await vi.advanceTimersByTimeAsync(200);
      const outcome = await running;
      expect(outcome.status).toBe("unacknowledged");
      expect(vi.getTimerCount()).toBe(0);
      expectClean(room);
    } finally {
      vi.useRealTimers();
    }
  });

  it("waitForAgentMs: the agent leaving (without saying ended) also ends the wait", async () => {
    const agent = new FakeAgent(room);
    const running = endCall(room, { waitForAgentMs: 10_000 });
    await vi.waitFor(() => expect(agent.received).toHaveLength(1));
    room.removeParticipant(agent.identity);
    expect((await running).status).toBe("accepted");
    expect(room.disconnectCalls).toBe(1);
  });
});

describe("onAgentEnded", () => {
  it("reports agent-side ends once per change, never customer ends", () => {
    const agent = new FakeAgent(room);
    const seen: AgentEndState[] = [];
    const stop = onAgentEnded(room, (s) => seen.push(s));
    room.setAttributes(agent.identity, { "endcall.state": "ending", "endcall.reason": "customer-ended-call" });
    expect(seen).toEqual([]);
    room.setAttributes(agent.identity, { "endcall.reason": "silence-timed-out", "endcall.end_id": "e2" });
    room.setAttributes(agent.identity, { unrelated: "x" });
    room.setAttributes(agent.identity, { "endcall.state": "ended" });
    expect(seen).toEqual([
      { state: "ending", reason: "silence-timed-out", endId: "e2" },
      { state: "ended", reason: "silence-timed-out", endId: "e2" },
    ]);
    stop();
    expectClean(room);
  });
});

describe("installEndBeacon", () => {
  it("is a no-op outside a browser (no window)", () => {
    const stop = installEndBeacon(room, { fallbackUrl: "/v1/end", token: "t" });
    expect(typeof stop).toBe("function");
    stop();
  });
});
