/** The RPC, data and server-attribute channels against the fake room, with the protocol
 * vectors (tests/vectors/request.json) and the exact error codes (protocol.md §2.3). */
import { readFileSync } from "node:fs";
import { RpcError } from "@livekit/rtc-node";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseAck, parseError, rpcCode } from "endcall";
import { CUSTOMER, request, run, setup } from "./harness.js";

interface Vector {
  name: string;
  origin: "client" | "server";
  input?: string;
  input_b64?: string;
  expect: { ok: boolean; code?: string };
}
const vectors = JSON.parse(readFileSync(new URL("../../../tests/vectors/request.json", import.meta.url), "utf8")) as Vector[];
const bytes = (v: Vector): Uint8Array => (v.input_b64 !== undefined ? Buffer.from(v.input_b64, "base64") : new TextEncoder().encode(v.input ?? ""));

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

async function rpcError(p: Promise<string>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    return e as RpcError;
  }
  throw new Error("the RPC did not fail");
}

describe("RPC channel", () => {
  it("acks the customer's request before draining, the same ack for the same id", async () => {
    const { end, local, session } = setup({ drainTimeout: 10, closeTimeout: 5 });
    session.closeDelayMs = null; // the close never comes: the ack must not wait for it
    await end.start();
    const ack = parseAck(await local.call("end_interview", CUSTOMER, request("r1", { meta: { button: "end" } })));
    expect(ack).toMatchObject({ id: "r1", status: "accepted", end_id: end.endId, reason: "customer-ended-call", drain_ms: 21_000 }); // drain 10 + close 5 + deleteRoomAfter 5 + settle 1
    expect(end.state).toBe("ending");
    const again = await local.call("end_interview", CUSTOMER, request("r1"));
    expect(parseAck(again)).toEqual(ack);
    const other = parseAck(await local.call("end_interview", CUSTOMER, request("r2", { reason: "customer-tab-closed" })));
    expect(other).toMatchObject({ status: "already_ending", reason: "customer-ended-call", end_id: end.endId });
    expect(end.record.meta).toEqual({ button: "end" });
  });

  it("refuses anyone but the customer with RpcError 4403 and the end.error as data", async () => {
    const { end, local, room } = setup();
    room.join("intruder");
    await end.start();
    const e = await rpcError(local.call("end_interview", "intruder", request("r9")));
    expect(e).toBeInstanceOf(RpcError);
    expect(e.code).toBe(4403);
    expect(parseError(e.data!)).toMatchObject({ id: "r9", code: "forbidden" });
    expect(end.state).toBe("active");
  });

  it("lets a custom allow() decide", async () => {
    const { end, local, room } = setup({ allow: (identity) => identity === "recruiter" });
    room.join("recruiter");
    await end.start();
    expect((await rpcError(local.call("end_interview", CUSTOMER, request("r1")))).code).toBe(4403);
    expect(parseAck(await local.call("end_interview", "recruiter", request("r2"))).status).toBe("accepted");
    expect(end.record.initiator).toEqual({ kind: "customer", identity: "recruiter" });
  });

  it("a throwing allow() refuses", async () => {
    const { end, local } = setup({ allow: () => { throw new Error("boom"); } });
    await end.start();
    expect((await rpcError(local.call("end_interview", CUSTOMER, request("r1")))).code).toBe(4403);
  });

  it("before RoomIO links anyone, any standard participant is the customer", async () => {
    const { end, local, room, session } = setup();
    delete session._roomIO.linkedParticipant;
    room.join("agent-2", 4);
    await end.start();
    expect((await rpcError(local.call("end_interview", "agent-2", request("r1")))).code).toBe(4403);
    expect(parseAck(await local.call("end_interview", CUSTOMER, request("r2"))).status).toBe("accepted");
  });

  it("uses the configured method name", async () => {
    const { end, local } = setup({ method: "hang_up" });
    await end.start();
    expect(local.rpc.has("end_interview")).toBe(false);
    expect(parseAck(await local.call("hang_up", CUSTOMER, request("r1"))).status).toBe("accepted");
  });

  const clientVectors = vectors.filter((v) => v.origin === "client" && v.input !== undefined);
  it.each(clientVectors.map((v) => [v.name, v] as const))("vector over RPC: %s", async (_name, v) => {
    const { end, local } = setup();
    await end.start();
    const call = local.call("end_interview", CUSTOMER, v.input!);
    if (v.expect.ok) {
      expect(parseAck(await call).status).toBe("accepted");
    } else {
      const e = await rpcError(call);
      expect(e.code).toBe(rpcCode(v.expect.code!));
      expect(e.code).toBe(v.expect.code === "bad_request" ? 4400 : 4426);
      expect(e.message.length).toBeLessThanOrEqual(256);
      expect(parseError(e.data!).code).toBe(v.expect.code);
      expect(end.state).toBe("active");
    }
  });
});

describe("data channel", () => {
  const clientVectors = vectors.filter((v) => v.origin === "client");
  it.each(clientVectors.map((v) => [v.name, v] as const))("vector over data: %s", async (_name, v) => {
    const { end, local, room } = setup();
    await end.start();
    room.emit("dataReceived", bytes(v), room.remoteParticipants.get(CUSTOMER), 0, "end_interview");
    await run(10);
    expect(local.published).toHaveLength(1);
    const sent = local.published[0]!;
    expect(sent.topic).toBe("end_interview.ack");
    expect(sent.destinations).toEqual([CUSTOMER]);
    if (v.expect.ok) expect(parseAck(sent.data).status).toBe("accepted");
    else expect(parseError(sent.data).code).toBe(v.expect.code);
  });

  it("answers the sender only, and the same ack for the same id", async () => {
    const { end, local, room } = setup();
    await end.start();
    room.data(CUSTOMER, "end_interview", request("d1"));
    room.data(CUSTOMER, "end_interview", request("d1"));
    await run(10);
    expect(local.published.map((p) => p.data)).toHaveLength(2);
    expect(local.published[0]!.data).toBe(local.published[1]!.data);
    expect(end.record.channel).toBe("data");
  });

  it("ignores other topics and packets without a named sender (never the server channel)", async () => {
    const { end, local, room } = setup();
    await end.start();
    room.data(CUSTOMER, "chat", request("d1"));
    room.data(undefined, "end_interview", request("d2", { reason: "server-ended-call" }));
    await run(10);
    expect(local.published).toHaveLength(0);
    expect(end.state).toBe("active");
  });

  it("a stranger gets forbidden over data", async () => {
    const { end, local, room } = setup();
    room.join("stranger");
    await end.start();
    room.data("stranger", "end_interview", request("d3"));
    await run(10);
    expect(parseError(local.published[0]!.data)).toMatchObject({ id: "d3", code: "forbidden" });
  });
});

describe("server channel (endcall.request attribute)", () => {
  it("a backend's request is trusted with any reason and acked through the attributes", async () => {
    const { end, local } = setup();
    await end.start();
    local.serverWrites({ "endcall.request": request("s1", { reason: "server-ended-call" }) });
    await run(10);
    expect(end.record).toMatchObject({ reason: "server-ended-call", channel: "server", requestId: "s1" });
    expect(end.record.initiator).toEqual({ kind: "server", identity: null });
    expect(local.attributeWrites.find((w) => w["endcall.state"] === "ending")).toMatchObject({
      "endcall.state": "ending",
      "endcall.reason": "server-ended-call",
      "endcall.end_id": end.endId,
      "endcall.request_id": "s1",
      "endcall.report": "pending",
    });
  });

  it("a request made for a participant gets the customer policy; a refusal goes to endcall.error", async () => {
    const { end, local } = setup();
    await end.start();
    local.serverWrites({ "endcall.request": request("r_beacon", { reason: "customer-tab-closed", initiator: "someone-else" }) });
    await run(10);
    expect(end.state).toBe("active");
    expect(parseError(local.attributes["endcall.error"]!)).toMatchObject({ id: "r_beacon", code: "forbidden" });
    local.serverWrites({ "endcall.request": request("r_beacon2", { reason: "customer-tab-closed", initiator: CUSTOMER }) });
    await run(10);
    expect(end.record).toMatchObject({ reason: "customer-tab-closed", channel: "server" });
    expect(end.record.initiator).toEqual({ kind: "customer", identity: CUSTOMER });
  });

  it("reads a request written before start()", async () => {
    const { end, local } = setup();
    local.attributes["endcall.request"] = request("early", { reason: "server-ended-call" });
    await end.start();
    expect(end.record.requestId).toBe("early");
  });

  it("ignores attribute changes of other participants and repeats of the same value", async () => {
    const { end, local, room } = setup();
    await end.start();
    room.emit("participantAttributesChanged", { "endcall.request": request("x1", { reason: "server-ended-call" }) }, { identity: CUSTOMER, attributes: {} });
    await run(10);
    expect(end.state).toBe("active");
    const value = request("bad", { v: 7 });
    local.serverWrites({ "endcall.request": value });
    local.serverWrites({ "endcall.request": value });
    await run(10);
    expect(end.state).toBe("active");
  });

  const serverVectors = vectors.filter((v) => v.origin === "server" && v.input !== undefined);
  it.each(serverVectors.map((v) => [v.name, v] as const))("vector over the attribute: %s", async (_name, v) => {
    const { end, local } = setup();
    await end.start();
    local.serverWrites({ "endcall.request": v.input! });
    await run(10);
    if (v.expect.ok) expect(end.state).not.toBe("active");
    else {
      expect(end.state).toBe("active");
      const err = local.attributes["endcall.error"];
      if (err !== undefined) expect(parseError(err).code).toBe(v.expect.code);
    }
  });
});
