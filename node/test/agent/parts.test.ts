/** The small parts: the attribute writer (ordered, coalescing, never blocking or throwing),
 * goodbyes per reason, bounded waits. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AttributeWriter } from "../../src/agent/attributes.js";
import { DurableEnd } from "../../src/agent/durable_end.js";
import { Goodbyes } from "../../src/agent/goodbye.js";
import { silenceConflicts } from "../../src/agent/timers.js";
import { withTimeout } from "../../src/agent/waits.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("AttributeWriter", () => {
  it("writes in order, merges what queued meanwhile, skips what is already written", async () => {
    const writes: Record<string, string>[] = [];
    let release!: () => void;
    const target = {
      setAttributes: vi.fn(async (a: Record<string, string>) => {
        writes.push({ ...a });
        if (writes.length === 1) await new Promise<void>((r) => (release = r));
      }),
    };
    const w = new AttributeWriter(target);
    w.update({ "endcall.state": "active" });
    await vi.advanceTimersByTimeAsync(0);
    w.update({ "endcall.state": "ending", "endcall.reason": "x" });
    w.update({ "endcall.state": "ended" });
    release();
    await vi.advanceTimersByTimeAsync(0);
    expect(await w.waitIdle(1_000)).toBe(true);
    expect(writes).toEqual([{ "endcall.state": "active" }, { "endcall.state": "ended", "endcall.reason": "x" }]);
    w.update({ "endcall.state": "ended" });
    await vi.advanceTimersByTimeAsync(0);
    expect(writes).toHaveLength(2);
    expect(w.written).toEqual({ "endcall.state": "ended", "endcall.reason": "x" });
  });

  it("a failing or hanging target logs once and never blocks or throws", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const w = new AttributeWriter({ setAttributes: () => new Promise<void>(() => undefined) }, 100);
    w.update({ a: "1" });
    w.update({ b: "2" });
    await vi.advanceTimersByTimeAsync(500);
    expect(await w.waitIdle(10)).toBe(true);
    expect(warn).toHaveBeenCalledTimes(1);
    const f = new AttributeWriter({ setAttributes: async () => { throw new Error("no permission"); } });
    f.update({ a: "1" });
    await vi.advanceTimersByTimeAsync(10);
    f.update({ a: "2" });
    await vi.advanceTimersByTimeAsync(10);
    expect(warn).toHaveBeenCalledTimes(2); // once per writer
    expect(f.written).toEqual({});
  });

  it("a write that gets no answer is tried again with what queued meanwhile, never dropped", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const calls: Record<string, string>[] = [];
    const w = new AttributeWriter(
      {
        setAttributes: (a) => {
          calls.push({ ...a });
          return calls.length === 1 ? new Promise<void>(() => undefined) : Promise.resolve();
        },
      },
      100,
    );
    w.update({ "endcall.state": "ending", "endcall.end_id": "e_1", "endcall.report": "pending" });
    await vi.advanceTimersByTimeAsync(50);
    w.update({ "endcall.state": "ended", "endcall.report": "stored" });
    await vi.advanceTimersByTimeAsync(100);
    expect(await w.waitIdle(10)).toBe(true);
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual({ "endcall.state": "ended", "endcall.end_id": "e_1", "endcall.report": "stored" });
    expect(w.written).toEqual({ "endcall.state": "ended", "endcall.end_id": "e_1", "endcall.report": "stored" });
    expect(warn).not.toHaveBeenCalled();
    // a target that never answers: `attempts` calls, then one warning
    const hung: unknown[] = [];
    const h = new AttributeWriter({ setAttributes: (a) => (hung.push(a), new Promise<void>(() => undefined)) }, 100, 3);
    h.update({ a: "1" });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(hung).toHaveLength(3);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toContain("3 times");
    warn.mockRestore();
  });

  it("holds writes until a gate settles (bounded), coalesces on request", async () => {
    const writes: Record<string, string>[] = [];
    const w = new AttributeWriter({ setAttributes: async (a) => void writes.push(a) });
    w.holdUntil(new Promise(() => undefined), 1_000);
    w.update({ a: "1" }, 20);
    w.update({ b: "2" });
    await vi.advanceTimersByTimeAsync(999);
    expect(writes).toEqual([]);
    await vi.advanceTimersByTimeAsync(30);
    expect(writes).toEqual([{ a: "1", b: "2" }]);
    w.close();
    w.update({ c: "3" });
    await vi.advanceTimersByTimeAsync(10);
    expect(writes).toHaveLength(1);
  });
});

describe("Goodbyes", () => {
  it("one text, per reason with '*', or none", () => {
    expect(new Goodbyes("Bye").for("exceeded-max-duration")).toBe("Bye");
    const g = new Goodbyes({ "exceeded-max-duration": "Time is up", "*": "Bye" });
    expect(g.for("exceeded-max-duration")).toBe("Time is up");
    expect(g.for("assistant-ended-call")).toBe("Bye");
    expect(new Goodbyes({ "silence-timed-out": "Still there?" }).for("assistant-ended-call")).toBeNull();
    expect(new Goodbyes(null).for("x")).toBeNull();
    expect(new Goodbyes("").for("x")).toBeNull();
  });
});

describe("waits and settings", () => {
  it("withTimeout says whether the work settled, never rejects", async () => {
    const never = withTimeout(new Promise(() => undefined), 50);
    await vi.advanceTimersByTimeAsync(60);
    expect(await never).toEqual({ done: false });
    expect(await withTimeout(Promise.reject(new Error("x")), 50)).toMatchObject({ done: true, ok: false });
    expect(await withTimeout(Promise.resolve(3), null)).toEqual({ done: true, ok: true, value: 3 });
  });

  it("names silenceTimeout settings that conflict", () => {
    expect(silenceConflicts(60, 30, null)[0]).toMatch(/maxDuration/);
    expect(silenceConflicts(10, null, 15)[0]).toMatch(/userAwayTimeout/);
    expect(silenceConflicts(60, 1800, 15)).toEqual([]);
  });
});

describe("the hooks' delivery wait", () => {
  it("is the webhook's window + timeout + 5 s when the sink says them", async () => {
    const { deliveryWaitMs, DELIVERY_WAIT_MS } = await import("../../src/agent/end_path.js");
    expect(deliveryWaitMs({ webhook: { inProcessWindow: 60, timeout: 15 } })).toBe(80_000);
    expect(deliveryWaitMs({ webhook: { inProcessWindow: 10, timeout: 5 } })).toBe(20_000);
    expect(deliveryWaitMs({})).toBe(DELIVERY_WAIT_MS);
    expect(deliveryWaitMs(null)).toBe(DELIVERY_WAIT_MS);
  });
});

describe("DurableEnd", () => {
  const record = (endId: string) =>
    ({ endId, reason: "customer-ended-call", initiator: { kind: "customer", identity: "c" }, requestId: "r1", meta: null }) as never;

  it("waits for the accepted end's write at most its timeout; once known, answers without a timer", async () => {
    let finish!: (ok: boolean) => void;
    const sink = { markEnding: vi.fn(() => new Promise<boolean>((r) => (finish = r))) } as never;
    const d = new DurableEnd(1_000);
    expect(await d.wait()).toBe(false); // nothing accepted yet
    d.begin(sink, record("e1"), () => new Uint8Array());
    const first = d.wait();
    await vi.advanceTimersByTimeAsync(999);
    finish(true);
    expect(await first).toBe(true);
    const timers = vi.getTimerCount();
    const again = d.wait();
    expect(vi.getTimerCount()).toBe(timers); // no timeout armed for a known outcome
    expect(await again).toBe(true);
  });

  it("a write slower than the timeout lets the ack go (false); a failed write stays false", async () => {
    const slow = new DurableEnd(1_000);
    slow.begin({ markEnding: () => new Promise<boolean>(() => undefined) } as never, record("e2"), () => new Uint8Array());
    const w = slow.wait();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await w).toBe(false);
    const failed = new DurableEnd(1_000);
    failed.begin({ markEnding: () => Promise.reject(new Error("disk full")) } as never, record("e3"), () => new Uint8Array());
    expect(await failed.wait()).toBe(false);
    expect(await failed.wait()).toBe(false);
  });
});
