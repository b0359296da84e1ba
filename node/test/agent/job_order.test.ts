/** The Node job's own shutdown order, replayed on the fakes (ipc/job_proc_lazy_main.js):
 * close event → entrypoint → `session.close()` (user_initiated) → `onSessionEnd` →
 * `room.disconnect()` → shutdown callbacks. */
import { EventEmitter } from "node:events";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseReport } from "endcall";
import { EndCall } from "../../src/agent/end_call.js";
import { jobIpc } from "../../src/agent/job_lifecycle.js";
import { run, setup } from "./harness.js";

class FakeIpc extends EventEmitter {
  send = (): boolean => true;
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

async function jobShutsDown(s: ReturnType<typeof setup>, wired: boolean): Promise<string[]> {
  const order: string[] = [];
  s.session.close("user_initiated"); // finalizeSession: session.close()
  if (wired) {
    const hook = EndCall.onSessionEnd(s.ctx).then(() => order.push("onSessionEnd done"));
    await run(30_000);
    await hook;
  }
  order.push(`report=${s.local.attributes["endcall.report"]}`);
  s.room.disconnect(1); // room.disconnect() (CLIENT_INITIATED)
  const callbacks = s.ctx.runShutdownCallbacks().then(() => order.push("callbacks done"));
  await run(30_000);
  await callbacks;
  return order;
}

describe("the Node job's order", () => {
  it("worker shutdown with onSessionEnd wired: delivered and the room deleted while connected", async () => {
    const s = setup();
    const ipc = new FakeIpc();
    vi.spyOn(jobIpc, "source").mockReturnValue(ipc);
    await s.end.start();
    ipc.emit("message", { case: "shutdownRequest", value: { reason: "SIGTERM" } });
    const order = await jobShutsDown(s, true);
    expect(order).toEqual(["onSessionEnd done", "report=delivered", "callbacks done"]);
    expect(parseReport(s.sink.stored[0]!.body).ended_reason).toBe("worker-shutdown");
    expect(s.ctx.roomsDeleted).toBe(1);
    expect(s.ctx.shutdownReasons).toEqual([]);
  });

  it("user code's ctx.shutdown() without onSessionEnd: the shutdown callback still hands the report over, the room is left alone", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    vi.spyOn(console, "info").mockImplementation(() => undefined);
    const s = setup();
    await s.end.start();
    s.ctx.shutdown("interview over");
    const order = await jobShutsDown(s, false);
    expect(order.at(-1)).toBe("callbacks done");
    const r = parseReport(s.sink.stored[0]!.body);
    expect(r).toMatchObject({ ended_reason: "server-ended-call" });
    expect(r.end).toMatchObject({ channel: "job", job_shutdown_reason: "interview over" });
    expect(s.sink.deliveries).toHaveLength(1);
    // the agent left the room before it could delete it, and cannot check the room's sid here
    expect(s.ctx.roomsDeleted).toBe(0);
    expect(errors.mock.calls.some((c) => String(c[0]).includes("onSessionEnd is not wired"))).toBe(true);
  });
});
