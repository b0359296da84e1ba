/** The real `@livekit/agents` / rtc-node objects satisfy EndCall's structural surface (a
 * compile-time check: `tsc --noEmit` fails when the SDK's shape drifts). */
import { defineAgent, type JobContext, type voice } from "@livekit/agents";
import type { Room } from "@livekit/rtc-node";
import { describe, expect, it } from "vitest";
import type { JobContextLike, RoomLike, SessionLike } from "../../src/agent/surface.js";
import { EndCall } from "../../src/index.js";

function accepts(ctx: JobContext, session: voice.AgentSession, room: Room): [JobContextLike, SessionLike, RoomLike] {
  return [ctx, session, room];
}

describe("surface", () => {
  it("takes the real JobContext and AgentSession", () => {
    const construct = (ctx: JobContext, session: voice.AgentSession) => new EndCall(ctx, session, { sink: null as never });
    expect(typeof accepts).toBe("function");
    expect(typeof construct).toBe("function");
  });

  it("EndCall.onSessionEnd fits defineAgent's onSessionEnd", () => {
    const agent = defineAgent({ entry: async () => undefined, onSessionEnd: EndCall.onSessionEnd });
    const wrapped = defineAgent({ entry: async () => undefined, onSessionEnd: EndCall.wrapSessionEnd(async (_ctx: JobContext) => undefined) });
    expect(agent.onSessionEnd).toBe(EndCall.onSessionEnd);
    expect(typeof wrapped.onSessionEnd).toBe("function");
  });
});
