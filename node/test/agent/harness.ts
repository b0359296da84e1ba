/** Builds an EndCall on the fakes (room, session, job context, MemorySink). */
import { vi } from "vitest";
import { EndCall, type EndCallOptions } from "../../src/agent/end_call.js";
import { FakeJobContext, FakeRoom, FakeSession } from "../../src/testing/fakes.js";
import { MemorySink, type MemorySinkOptions } from "../../src/testing/memory_sink.js";

export const CUSTOMER = "cand-1";

export function request(id: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ type: "end.request", v: 1, id, ...extra });
}

export function setup(options: Partial<EndCallOptions> = {}, sinkOptions: MemorySinkOptions = {}) {
  const room = new FakeRoom();
  const ctx = new FakeJobContext(room);
  const session = new FakeSession();
  const sink = new MemorySink(sinkOptions);
  room.join(CUSTOMER);
  session.link(CUSTOMER);
  const end = new EndCall(ctx, session, { sink, ...options });
  const local = room.localParticipant!;
  return { room, ctx, session, sink, end, local };
}

/** Let timers and promises run for `ms` of fake time. */
export async function run(ms = 0): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
}

/** Run fake time until the end path has handed the report over. */
export async function untilEnded(end: EndCall, maxMs = 60_000): Promise<void> {
  for (let t = 0; t < maxMs && end.state !== "ended"; t += 100) await run(100);
}
